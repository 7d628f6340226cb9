"""Shared fixtures: real services, started once per session.

- direct_pg        (session)  a PostgreSQL 16 + pgvector cluster on 127.0.0.1, seeded `fovea` db
- fresh_direct_db  (function) a new seeded database in that cluster, dropped afterwards
- docker_client    (session)  a docker SDK client for a live engine
- test_stack       (session)  the compose-labelled Fovea stack (postgres, redis, backend, ...)
- stack            (function) test_stack, restarted where a test stopped it, fovea db reset
- s3_server        (session)  moto's S3 server; stop()/start() for outage tests
- s3_bucket        (function) a fresh bucket name on s3_server
- schedule_dirs    (function) (systemd dir, cron dir) under tmp_path, set in the env for `schedule`

When a service cannot be provided the test is skipped, or fails under CI=true.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from support.services import (  # noqa: E402
    FAKE_AWS_ENV,
    PgCluster,
    S3Server,
    docker_client_or_fail,
    pg_bin_dir_or_fail,
    unavailable,
)


# ---------------------------------------------------------------- PostgreSQL, direct mode
@pytest.fixture(scope="session")
def direct_pg():
    bin_dir = pg_bin_dir_or_fail()
    cluster = PgCluster(bin_dir)
    try:
        cluster.start()
        cluster.bootstrap(scale=1)
    except Exception as exc:  # noqa: BLE001
        cluster.destroy()
        unavailable(f"could not start the direct-mode PostgreSQL cluster: {exc}")
    yield cluster
    cluster.destroy()


@dataclass
class FreshDB:
    cluster: PgCluster
    name: str

    @property
    def url(self) -> str:
        return self.cluster.url_for(self.name)

    @property
    def password(self) -> str:
        return self.cluster.password

    @property
    def port(self) -> int:
        return self.cluster.port

    @property
    def bin_dir(self) -> Path:
        return self.cluster.bin_dir

    def psql(self, sql: str, db: str | None = None) -> str:
        return self.cluster.psql(sql, db or self.name)


@pytest.fixture
def fresh_direct_db(direct_pg):
    name = direct_pg.create_database(direct_pg.unique_name())
    try:
        yield FreshDB(direct_pg, name)
    finally:
        direct_pg.drop_database(name)


# ---------------------------------------------------------------- Docker test stack
@pytest.fixture(scope="session")
def docker_client():
    client = docker_client_or_fail()
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_stack(docker_client):
    from support.services import pg_install_dir
    from support.teststack import TestStack

    prefix = pg_install_dir()
    if prefix is None:
        unavailable("the pgserver wheel (PostgreSQL 16 + pgvector) is not installed")
    if not os.path.exists("/usr/bin/redis-server"):
        unavailable("/usr/bin/redis-server is missing; run scripts/ensure-services.sh")
    stack = TestStack(docker_client, prefix)
    try:
        stack.start()
    except Exception as exc:  # noqa: BLE001
        stack.close()
        if os.environ.get("CI", "").lower() == "true":
            raise
        unavailable(f"could not start the test stack: {exc}")
    yield stack
    stack.close()


@pytest.fixture
def stack(test_stack):
    """The session stack with every service running, `fovea` and the Redis queues in their
    seeded state (whatever an earlier test did to them)."""
    test_stack.ensure_running()
    test_stack.reset_database()
    test_stack.seed_redis()
    yield test_stack


# ---------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="session")
def aws_env():
    saved = {k: os.environ.get(k) for k in FAKE_AWS_ENV}
    os.environ.update(FAKE_AWS_ENV)
    yield FAKE_AWS_ENV
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def s3_server(aws_env):
    try:
        server = S3Server().start()
    except Exception as exc:  # noqa: BLE001
        unavailable(f"could not start moto's S3 server: {exc}")
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server):
    """s3_server, guaranteed running (a test may have stopped it for an outage)."""
    s3_server.start()
    yield s3_server
    s3_server.start()


@pytest.fixture
def s3_bucket(s3):
    return s3.make_bucket()


# ---------------------------------------------------------------- schedule
@pytest.fixture
def schedule_dirs(tmp_path, monkeypatch):
    """Where `schedule` writes units and cron files: temp dirs, never the real system."""
    from fovea_tui.engine.ops import schedule

    sd, cron = tmp_path / "systemd", tmp_path / "cron.d"
    monkeypatch.setenv(schedule.SYSTEMD_DIR_ENV, str(sd))
    monkeypatch.setenv(schedule.CRON_DIR_ENV, str(cron))
    return sd, cron


@pytest.fixture
def read_only_dir(tmp_path):
    """A tmpfs remounted read-only, holding an empty directory `existing`: root's bypass of
    file modes does not help here."""
    import subprocess

    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        (mnt / "existing").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# ---------------------------------------------------------------- the fast tier

_SERVICE_FIXTURES = {"direct_pg", "fresh_direct_db", "docker_client", "test_stack", "stack", "s3_server",
                     "s3", "s3_bucket"}


def pytest_collection_modifyitems(items):
    """Mark every test that needs a real service, so `make test-fast` can leave them out."""
    for item in items:
        if _SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
