"""Backups in docker mode (pg_dump exec'd in the compose `postgres` service) and off-site
copies to moto's S3 server, including an outage."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from test_backup_helpers import DUMP_RE, direct_config, run_cli, settings_and_config, write_env

from fovea_tui.cli.main import main
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.offsite import OffsiteFailed
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.backups.verify import verify_dump


@pytest.mark.docker
def test_docker_mode_backup_matches_the_live_database(stack, tmp_path):
    settings = stack.settings(tmp_path)
    result = run_backup(settings)
    assert DUMP_RE.match(result.name) and result.mode == "docker"
    live = {}
    for table in stack.psql("SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1").split():
        live[table] = int(stack.psql(f'SELECT count(*) FROM "{table}"').strip())
    assert result.tables == live
    assert result.prisma_migrations == stack.applied_migrations
    manifest = mf.read_for(result.path)
    assert manifest.mode == "docker" and manifest.server_version.startswith("16")
    assert stat.S_IMODE(result.env_copy.stat().st_mode) == 0o600
    assert result.env_copy.read_bytes() == stack.env_file.read_bytes()
    assert verify_dump(result.path).status == "verified"
    # No value of the stack's env file in the manifest or the JSON result.
    text = mf.manifest_path(result.path).read_text() + json.dumps(result.as_dict(), default=str)
    for value in stack.env.values():
        if len(value) >= 6:
            assert value not in text


@pytest.mark.docker
def test_docker_mode_stopped_postgres_fails_cleanly(stack, tmp_path, capsys):
    settings = stack.settings(tmp_path)
    stack.container("postgres").stop(timeout=10)
    cfg = tmp_path / "c.toml"
    from fovea_tui.config import render_toml
    cfg.write_text(render_toml(settings))
    assert main(["--config", str(cfg), "backup", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and "postgres" in out["error"]
    assert not [p for p in settings.backups_dir.iterdir() if p.is_file()]


@pytest.fixture
def offsite(fresh_direct_db, tmp_path, s3):
    bucket = s3.make_bucket()
    env_file, values = write_env(tmp_path)
    data = direct_config(tmp_path, fresh_direct_db.url, env_file,
                         backups={"offsite": f"s3://{bucket}/fovea/db/"},
                         s3={"endpoint_url": s3.endpoint_url, "region": s3.region})
    settings, cfg = settings_and_config(tmp_path, data)
    return settings, cfg, s3, bucket, values


@pytest.mark.s3
def test_offsite_copy_of_dump_env_and_manifest(offsite, capsys):
    settings, cfg, s3, bucket, _ = offsite
    r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    dump = Path(result["path"])
    assert result["offsite"]["url"] == settings.backups.offsite
    stem = dump.name[: -len(".sql.gz")]
    assert result["offsite"]["keys"] == [dump.name, f"{stem}.env", f"{dump.name}.manifest.json"]
    client = s3.client()
    for key in result["offsite"]["keys"]:
        body = client.get_object(Bucket=bucket, Key=f"fovea/db/{key}")["Body"].read()
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256((dump.parent / key).read_bytes()).hexdigest()
    # --no-offsite keeps the next one local.
    r = run_cli("--config", str(cfg), "backup", "--json", "--no-offsite")
    assert r.returncode == 0 and json.loads(r.stdout)["offsite"] is None


@pytest.mark.s3
def test_offsite_outage_keeps_the_local_backup_and_exits_1(offsite):
    settings, cfg, s3, bucket, values = offsite
    s3.stop()
    try:
        r = run_cli("--config", str(cfg), "backup", "--json", env={"AWS_MAX_ATTEMPTS": "1"})
    finally:
        s3.start()
    assert r.returncode == 1, r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] is False and result["offsite_error"]
    assert "off-site copy" in r.stderr and "is complete and kept" in r.stderr
    dump = Path(result["path"])
    assert dump.exists() and mf.manifest_path(dump).exists()
    assert verify_dump(dump).status == "verified"
    for value in values.values():
        assert value not in r.stdout + r.stderr


@pytest.mark.s3
def test_wrong_endpoint_is_an_offsite_failure(fresh_direct_db, tmp_path):
    env_file, _ = write_env(tmp_path)
    data = direct_config(tmp_path, fresh_direct_db.url, env_file, backups={"offsite": "s3://nobucket/x/"},
                         s3={"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1"})
    settings, _ = settings_and_config(tmp_path, data)
    with pytest.raises(OffsiteFailed) as info:
        run_backup(settings)
    assert info.value.exit_code == 1
    assert info.value.result.path.exists()
    offsite = info.value.result.offsite  # nothing went up: every piece is reported missing
    assert offsite["status"] == "failed" and offsite["keys"] == [] and len(offsite["missing"]) == 3


def test_offsite_directory_store(fresh_direct_db, tmp_path):
    env_file, _ = write_env(tmp_path)
    target = tmp_path / "offsite"
    data = direct_config(tmp_path, fresh_direct_db.url, env_file, backups={"offsite": str(target)})
    settings, _ = settings_and_config(tmp_path, data)
    result = run_backup(settings)
    assert (target / result.name).read_bytes() == result.path.read_bytes()
    assert (target / mf.manifest_path(result.path).name).exists()
    assert result.offsite["keys"][-1].endswith(".manifest.json")
