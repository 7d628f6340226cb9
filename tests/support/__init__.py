"""Test support: real services (PostgreSQL, Docker test stack, moto S3) behind pytest fixtures.

Import as `from support.services import ...` / `from support.teststack import TestStack`
(tests/conftest.py puts the tests directory on sys.path).
"""
