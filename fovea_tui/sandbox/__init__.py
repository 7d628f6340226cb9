"""A Fovea-shaped sandbox: schema migrations, deterministic seed data and video blobs.

Used by the test suite, `fovea-tui demo` and the benchmarks. Plain SQL text only: callers
pipe it into psql themselves.
"""

from fovea_tui.sandbox.schema import (
    NEXT_MIGRATION,
    PRISMA_MIGRATIONS_TABLE_SQL,
    SCHEMA_MIGRATIONS,
    TABLES,
    migration_checksum,
    record_migrations_sql,
    schema_sql,
)
from fovea_tui.sandbox.seed import (
    ADMIN_USERNAME,
    USER_PASSWORD_TEMPLATE,
    counts,
    make_video_files,
    password_hash,
    seed_sql,
    verify_password,
)

__all__ = [
    "ADMIN_USERNAME",
    "NEXT_MIGRATION",
    "PRISMA_MIGRATIONS_TABLE_SQL",
    "SCHEMA_MIGRATIONS",
    "TABLES",
    "USER_PASSWORD_TEMPLATE",
    "counts",
    "make_video_files",
    "migration_checksum",
    "password_hash",
    "record_migrations_sql",
    "schema_sql",
    "seed_sql",
    "verify_password",
]
