"""The test services are the real thing: PostgreSQL 16 + pgvector, Docker containers with
compose labels, an HTTP backend, a migration runner, and an S3 server."""

from __future__ import annotations

import gzip
import json
import subprocess
import urllib.error
import urllib.request

import botocore.config
import botocore.exceptions
import pytest
from dotenv import dotenv_values

from fovea_tui.sandbox import SCHEMA_MIGRATIONS, counts


def _pg_dump(direct_pg, db: str) -> str:
    env = direct_pg.tcp_env()
    env["PGDATABASE"] = db
    r = subprocess.run([str(direct_pg.bin_dir / "pg_dump"), "--no-owner"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_direct_pg_is_pg16_with_vector_and_password_auth(direct_pg):
    assert direct_pg.psql("SHOW server_version_num").strip().startswith("16")
    assert "p@ss" in direct_pg.password and "%40" in direct_pg.url  # special chars, URL-encoded
    dump = _pg_dump(direct_pg, "fovea")  # over TCP, scram, password from PGPASSWORD
    assert "CREATE EXTENSION IF NOT EXISTS vector" in dump
    assert "vector(3)" in dump
    assert "-- PostgreSQL database dump complete" in dump[-200:]
    # A wrong password is refused: the TCP path really checks it.
    env = direct_pg.tcp_env()
    env["PGPASSWORD"] = "wrong"
    r = subprocess.run([str(direct_pg.bin_dir / "psql"), "-c", "select 1"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "password authentication failed" in r.stderr


def test_direct_pg_seeded(direct_pg):
    rows = dict(line.split("|") for line in direct_pg.psql(
        "SELECT 'users', count(*) FROM users UNION ALL SELECT 'annotations', count(*) FROM annotations "
        "UNION ALL SELECT 'claims', count(*) FROM claims").split())
    expected = counts(1, 0)
    assert int(rows["users"]) == expected["users"]
    assert int(rows["annotations"]) == expected["annotations"]
    names = direct_pg.psql("SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL "
                           "ORDER BY 1").split()
    assert names == [n for n, _ in SCHEMA_MIGRATIONS]


def test_fresh_direct_db_is_isolated(fresh_direct_db, direct_pg):
    fresh_direct_db.psql("DELETE FROM annotations")
    assert fresh_direct_db.psql("SELECT count(*) FROM annotations").strip() == "0"
    assert direct_pg.psql("SELECT count(*) FROM annotations").strip() != "0"
    assert fresh_direct_db.url.endswith("/" + fresh_direct_db.name)


def test_stack_containers_have_compose_labels_and_are_healthy(stack, docker_client):
    containers = docker_client.containers.list(
        filters={"label": f"com.docker.compose.project={stack.project}"})
    by_service = {c.labels["com.docker.compose.service"]: c for c in containers}
    assert set(by_service) == {"postgres", "redis", "backend", "frontend", "model-service"}
    for service, c in by_service.items():
        assert c.name == f"{stack.project}-{service}-1"
        assert c.labels["com.docker.compose.container-number"] == "1"
        assert c.labels["com.docker.compose.oneoff"] == "False"
    assert by_service["backend"].labels["com.docker.compose.depends_on"] == \
        "postgres:service_healthy:false,redis:service_healthy:false"
    for service in ("postgres", "redis", "backend"):
        assert stack.health_status(service) == "healthy"
    # the model service loads its weights slowly, as Fovea's does: its healthcheck says so
    assert stack.health_status("model-service") in ("starting", "healthy")


def test_stack_env_file(stack):
    assert (stack.env_file.stat().st_mode & 0o777) == 0o600
    values = dotenv_values(stack.env_file)
    assert values["POSTGRES_PASSWORD"] == stack.password
    assert values["DATABASE_URL"].startswith("postgresql://fovea:") and "@postgres:5432/fovea" in values["DATABASE_URL"]
    secrets = [values[k] for k in ("POSTGRES_PASSWORD", "SESSION_SECRET", "API_KEY_ENCRYPTION_KEY", "ADMIN_PASSWORD")]
    assert len(set(secrets)) == len(secrets)


def test_docker_exec_pg_dump_inside_postgres_container(stack):
    rc, out = stack.container("postgres").exec_run(["pg_dump", "-U", "fovea", "fovea"])
    text = out.decode()
    assert rc == 0, text
    assert "CREATE EXTENSION IF NOT EXISTS vector" in text
    assert "PostgreSQL database dump complete" in text
    rc, out = stack.container("postgres").exec_run(["psql", "-U", "fovea", "fovea", "-Atc", "select count(*) from videos"])
    assert rc == 0 and int(out) == len(stack.video_files)
    # The seeded videos are the files on the volume.
    filenames = set(stack.psql("SELECT filename FROM videos").split())
    assert filenames == {fn for fn, _, _ in stack.video_files}
    assert all((stack.videos_dir / fn).is_file() for fn in filenames)


def test_exec_stdin_streams_a_gzip_restore(stack):
    """A dump piped through docker exec stdin into psql, as a restore does."""
    rc, dump = stack.container("postgres").exec_run(["pg_dump", "-U", "fovea", "fovea"])
    assert rc == 0
    stack.psql("CREATE DATABASE scratch_smoke OWNER fovea", db="postgres")
    try:
        rc, _, err = stack.exec("postgres", ["sh", "-c", "gunzip -c | psql -X -q -v ON_ERROR_STOP=1 -U fovea scratch_smoke"],
                                gzip.compress(dump))
        assert rc == 0, err.decode()
        assert stack.psql("SELECT count(*) FROM annotations", db="scratch_smoke").strip() == \
            stack.psql("SELECT count(*) FROM annotations").strip()
    finally:
        stack.drop_database("scratch_smoke")


def test_backend_health_and_login(stack):
    status, body = stack.health()
    assert status == 200 and json.loads(body)["status"] == "healthy"
    req = urllib.request.Request(f"{stack.base_url}/api/auth/login", method="POST",
                                 data=json.dumps({"username": "admin", "password": stack.admin_password}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read())["user"]["isAdmin"] is True
    bad = urllib.request.Request(f"{stack.base_url}/api/auth/login", method="POST",
                                 data=json.dumps({"username": "admin", "password": "nope"}).encode())
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(bad, timeout=5)
    assert exc.value.code == 401


def test_health_follows_postgres_and_services_restart(stack):
    stack.container("postgres").stop(timeout=10)
    status, body = stack.health()
    assert status == 503 and json.loads(body)["status"] == "unhealthy"
    stack.container("postgres").start()
    stack.wait_pg_ready()
    stack.wait_healthy(["postgres", "backend"])
    assert stack.health()[0] == 200
    assert int(stack.psql("SELECT count(*) FROM users")) == counts(1, 0)["users"]


def test_redis_queues(stack):
    assert stack.redis_cli("LLEN", "bull:video-summarization:wait").strip() == "3"
    assert stack.redis_cli("LLEN", "bull:claim-extraction:active").strip() == "1"


def test_migrate_applies_pending_once_and_is_idempotent(stack):
    cmd = stack.migrate_command
    rc, out = stack.container("backend").exec_run(cmd)
    text = out.decode()
    assert rc == 0, text
    assert f"Applying migration `{stack.pending_migration}`" in text
    assert "All migrations have been successfully applied." in text
    assert stack.psql("SELECT count(*) FROM information_schema.columns "
                      "WHERE table_name = 'videos' AND column_name = 'checksum'").strip() == "1"
    rc, out = stack.container("backend").exec_run(cmd)
    assert rc == 0 and "No pending migrations to apply." in out.decode()
    assert stack.psql("SELECT count(*) FROM _prisma_migrations WHERE migration_name = "
                      f"'{stack.pending_migration}'").strip() == "1"
    stack.reset_database()
    assert stack.psql("SELECT count(*) FROM _prisma_migrations WHERE migration_name = "
                      f"'{stack.pending_migration}'").strip() == "0"


def test_stack_settings(stack, tmp_path):
    s = stack.settings(tmp_path, backups={"offsite": "s3://bucket/prefix/"})
    assert s.install.compose_project == stack.project
    assert s.database.mode == "docker"
    assert s.stack.health_url == stack.health_url
    assert s.stack.migrate_command == ["python3", "/app/migrate.py"]
    assert s.backups.offsite == "s3://bucket/prefix/"
    assert s.volume.path == str(stack.videos_dir)


def test_s3_round_trip_and_outage(s3, s3_bucket):
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"hello"
    s3.stop()
    fast = s3.client(config=botocore.config.Config(retries={"max_attempts": 1}, connect_timeout=1, read_timeout=2))
    with pytest.raises(botocore.exceptions.EndpointConnectionError):
        fast.list_objects_v2(Bucket=s3_bucket)
    s3.start()
    assert client.get_object(Bucket=s3_bucket, Key="a/b.txt")["Body"].read() == b"hello"


def test_every_service_stops_promptly_and_comes_back(stack):
    import time

    for service in ("frontend", "model-service", "backend", "redis", "postgres"):
        t0 = time.monotonic()
        # no timeout given: Docker uses the container's own StopTimeout (compose's
        # stop_grace_period), 1 s for the SIGTERM-deaf frontend, 10 s for the others
        stack.container(service).stop()
        assert time.monotonic() - t0 < 8, f"{service} ignored its stop signal (docker waited for SIGKILL)"
        stack.container(service).reload()
        assert stack.container(service).status == "exited"
    stack.ensure_running()
    assert stack.health()[0] == 200
    assert stack.redis_cli("LLEN", "bull:video-summarization:wait").strip() == "3"
