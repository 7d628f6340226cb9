"""S3 faults, against moto's real S3 server and a small fault-injecting HTTP proxy in front
of it (tests/support/faultproxy.py): 5xx answers, a slow store, the store stopped mid-upload,
mid-listing and mid-download, wrong credentials, a bucket that does not exist, and what
the volume sync sends when it trusts its listing snapshot (or cannot check it).

What must hold every time: a clear one-line message naming the store, exit 1, the local
backup complete and kept, nothing deleted on a partial picture, no temp file left behind.
Covered elsewhere: the store stopped before an upload (test_backup_docker_offsite.py), the
store stopped half-way through a prune's deletions (test_prune.py), an unreachable store in
the inventory (test_inventory.py).
"""

from __future__ import annotations

import json
import os
import secrets as _random
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.backup_history import History, make_settings, mirror
from support.faultproxy import FaultProxy
from support.services import free_port, unavailable, wait_port
from test_backup_helpers import direct_config, run_cli, settings_and_config, write_env

from fovea_tui.engine.backups import inventory as inventory_mod
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.stores import S3Store

FAST = {"FOVEA_TUI_S3_TIMEOUT": "2", "FOVEA_TUI_S3_MAX_ATTEMPTS": "2"}
T0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def small_db(direct_pg):
    name = direct_pg.create_database(direct_pg.unique_name("fovea_s3f"))
    yield direct_pg.url_for(name)
    direct_pg.drop_database(name)


@pytest.fixture
def proxy(s3):
    p = FaultProxy(s3.endpoint_url).start()
    yield p
    p.stop()


def _install(tmp_path, url, offsite, endpoint):
    env_file, _ = write_env(tmp_path)
    data = direct_config(tmp_path, url, env_file, backups={"offsite": offsite},
                         s3={"endpoint_url": endpoint, "region": "us-east-1"})
    return settings_and_config(tmp_path, data)


def _keys(s3, bucket, prefix=""):
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))


def _local_backup_is_whole(settings, result):
    dump = Path(result["path"])
    assert dump.is_file() and verify_dump(dump).status == "verified"
    assert sorted(p.name for p in settings.backups_dir.iterdir() if p.is_file()) == sorted(
        [dump.name, dump.name + ".manifest.json", dump.name.removesuffix(".sql.gz") + ".env"])


def test_transient_503s_and_500s_are_retried(small_db, tmp_path, s3, s3_bucket, proxy):
    settings, cfg = _install(tmp_path, small_db, f"s3://{s3_bucket}/db/", proxy.endpoint_url)
    proxy.add("PUT", ".sql.gz", status=503, times=2)
    proxy.add("PUT", ".manifest.json", status=500, times=1)
    r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert [s for _, _, s in proxy.seen if s >= 500] == [503, 503, 500]
    assert len(result["offsite"]["keys"]) == 3
    assert _keys(s3, s3_bucket) == sorted("db/" + k for k in result["offsite"]["keys"])


def test_persistent_500s_keep_the_local_backup_and_exit_1(small_db, tmp_path, s3, s3_bucket, proxy):
    settings, cfg = _install(tmp_path, small_db, f"s3://{s3_bucket}/db/", proxy.endpoint_url)
    proxy.add("PUT", "", status=500)
    r = run_cli("--config", str(cfg), "backup", "--json", env=FAST)
    assert r.returncode == 1, r.stderr
    assert "off-site copy to s3://" in r.stderr and "InternalError" in r.stderr
    assert "is complete and kept" in r.stderr and "Traceback" not in r.stderr
    result = json.loads(r.stdout)
    assert result["ok"] is False and result["offsite_error"]
    _local_backup_is_whole(settings, result)
    assert _keys(s3, s3_bucket) == []  # nothing half-written is visible off-site
    assert audit.read(settings, action="backup")[-1]["outcome"] == "failed"


def test_a_slow_store_times_out_with_a_clear_message(small_db, tmp_path, s3, s3_bucket, proxy):
    settings, cfg = _install(tmp_path, small_db, f"s3://{s3_bucket}/db/", proxy.endpoint_url)
    proxy.add(None, "", delay=4)
    env = {"FOVEA_TUI_S3_TIMEOUT": "0.5", "FOVEA_TUI_S3_MAX_ATTEMPTS": "1"}
    t0 = time.monotonic()
    r = run_cli("--config", str(cfg), "backup", "--json", env=env)
    assert r.returncode == 1
    assert "did not answer within 0.5 s" in r.stderr and "is complete and kept" in r.stderr, r.stderr
    _local_backup_is_whole(settings, json.loads(r.stdout))
    r = run_cli("--config", str(cfg), "list", "--json", env=env)
    assert r.returncode == 1 and "did not answer within 0.5 s" in " ".join(json.loads(r.stdout)["errors"])
    assert len(json.loads(r.stdout)["backups"]) == 1  # the local copy is still listed
    assert time.monotonic() - t0 < 30


def test_bad_s3_timeout_settings_name_the_variable(monkeypatch):
    from fovea_tui.engine.infra.stores import s3_timeouts
    from fovea_tui.errors import ConfigError

    monkeypatch.setenv("FOVEA_TUI_S3_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="FOVEA_TUI_S3_TIMEOUT"):
        s3_timeouts()
    monkeypatch.setenv("FOVEA_TUI_S3_TIMEOUT", "0.5")
    monkeypatch.setenv("FOVEA_TUI_S3_MAX_ATTEMPTS", "0")
    with pytest.raises(ConfigError, match="FOVEA_TUI_S3_MAX_ATTEMPTS"):
        s3_timeouts()
    monkeypatch.setenv("FOVEA_TUI_S3_MAX_ATTEMPTS", "3")
    assert s3_timeouts() == (0.5, 3)


def test_store_stopped_mid_upload_then_the_next_run_works(small_db, tmp_path, s3, s3_bucket, proxy):
    settings, cfg = _install(tmp_path, small_db, f"s3://{s3_bucket}/db/", proxy.endpoint_url)
    proxy.add("PUT", ".env", call=s3.stop, times=1)  # the dump went up; the store dies on the env copy
    r = run_cli("--config", str(cfg), "backup", "--json", env=FAST)
    assert r.returncode == 1, r.stderr
    assert "off-site copy" in r.stderr and "is complete and kept" in r.stderr and "Traceback" not in r.stderr
    first = json.loads(r.stdout)
    _local_backup_is_whole(settings, first)
    assert first["offsite"]["complete"] is False and first["offsite"]["keys"] == [Path(first["path"]).name]
    s3.start()
    # The manifest never went up, so the off-site dump is not taken for a verified backup.
    inv = json.loads(run_cli("--config", str(cfg), "list", "--json").stdout)
    [entry] = inv["backups"]
    assert entry["copies"]["offsite"]["status"] != "corrupt" and entry["siblings"]["manifest"] == ["local"]
    r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 0, r.stderr


def test_store_stopped_mid_listing_prune_deletes_nothing(tmp_path, s3, s3_bucket, proxy, monkeypatch, capsys):
    import tomli_w

    from fovea_tui.cli.main import main

    url = f"s3://{s3_bucket}/db/"
    settings = make_settings(tmp_path, offsite=url, endpoint_url=s3.endpoint_url, keep_daily=2, keep_weekly=0)
    History(settings).daily(T0, 6)
    mirror(settings, S3Store(url, settings.s3))
    before_local = sorted(p.name for p in settings.backups_dir.iterdir())
    before_remote = _keys(s3, s3_bucket)
    settings.s3.endpoint_url = proxy.endpoint_url
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    monkeypatch.setattr(inventory_mod, "S3_PAGE_SIZE", 3)
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    proxy.add("GET", "continuation-token", call=s3.stop, times=1)  # the second page never comes
    code = main(["--config", str(cfg), "prune", "--json"])
    out, err = capsys.readouterr()
    assert code == 1, err
    assert "cannot list" in err and "s3://" + s3_bucket in err
    s3.start()
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == before_local
    assert _keys(s3, s3_bucket) == before_remote


def test_store_stopped_mid_download_leaves_nothing_behind(tmp_path, s3, s3_bucket, proxy):
    import tomli_w

    url = f"s3://{s3_bucket}/db/"
    settings = make_settings(tmp_path, offsite=url, endpoint_url=s3.endpoint_url)
    paths = History(settings).daily(T0, 1, data=os.urandom(300_000))
    mirror(settings, S3Store(url, settings.s3))
    for p in list(settings.backups_dir.iterdir()):
        if p.is_file():
            p.unlink()  # off-site only: verify and restore must download it
    settings.s3.endpoint_url = proxy.endpoint_url
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    name = paths[0].name

    # The download is cut after 50 kB and the store is gone when the client retries.
    proxy.add("GET", path_end="/" + name, drop_after=50_000, call=s3.stop, times=1)
    r = run_cli("--config", str(cfg), "verify", "--json", name, env=FAST)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"cannot download s3://{s3_bucket}/db/{name}" in r.stderr and "Traceback" not in r.stderr
    s3.start()
    proxy.add("GET", path_end="/" + name, drop_after=50_000, call=s3.stop, times=1)
    r = run_cli("--config", str(cfg), "restore", name, "--yes", "--json", env=FAST)
    report = json.loads(r.stdout)
    assert r.returncode in (1, 3) and report["ok"] is False
    assert report["steps"][0]["status"] == "failed" and "download" in report["steps"][0]["detail"]
    leftovers = [p for p in settings.backups_dir.rglob("*") if p.is_file() and (
        p.name.startswith(("fovea-", ".fovea-tmp-")) or "verify-" in str(p.parent))]
    assert leftovers == []


def test_a_bucket_that_does_not_exist(small_db, tmp_path, s3):
    settings, cfg = _install(tmp_path, small_db, "s3://no-such-bucket-here/db/", s3.endpoint_url)
    r = run_cli("--config", str(cfg), "backup", "--json", env=FAST)
    assert r.returncode == 1
    assert "NoSuchBucket" in r.stderr and "create the bucket or fix the URL" in r.stderr
    _local_backup_is_whole(settings, json.loads(r.stdout))
    r = run_cli("--config", str(cfg), "list", "--json", env=FAST)
    assert r.returncode == 1 and "NoSuchBucket" in " ".join(json.loads(r.stdout)["errors"])


@pytest.fixture(scope="module")
def strict_s3():
    """A second moto server that checks credentials (its IAM knows no keys but its root's)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    moto = Path(sys.executable).parent / "moto_server"
    if not moto.exists():
        unavailable("moto_server is not installed")
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if not wait_port(port, 20):
            unavailable("the strict moto server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_wrong_credentials(small_db, tmp_path, strict_s3):
    settings, cfg = _install(tmp_path, small_db, "s3://some-bucket/db/", strict_s3)
    secret = "wrong-" + _random.token_hex(16)
    r = run_cli("--config", str(cfg), "backup", "--json",
                env={**FAST, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONG", "AWS_SECRET_ACCESS_KEY": secret})
    assert r.returncode == 1
    assert "InvalidAccessKeyId" in r.stderr and "check the AWS credentials" in r.stderr, r.stderr
    assert secret not in r.stdout + r.stderr
    _local_backup_is_whole(settings, json.loads(r.stdout))


# --- volume sync: the listing snapshot, seen from the wire


def _sync_settings(tmp_path, s3_bucket, endpoint):
    from test_sync import PREFIX, make_volume, settings_for

    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=endpoint)
    make_volume(Path(settings.volume.path))
    return settings


def test_a_noop_sync_from_the_snapshot_sends_no_listing_request(tmp_path, s3, s3_bucket, proxy):
    from fovea_tui.engine.volume.listing import MARKER_NAME, SAMPLE_SIZE
    from fovea_tui.engine.volume.sync import run_sync

    settings = _sync_settings(tmp_path, s3_bucket, proxy.endpoint_url)
    assert run_sync(settings).listing["mode"] == "full"
    assert any("list-type=2" in target for _, target, _ in proxy.seen)
    proxy.seen.clear()
    again = run_sync(settings)
    assert again.listing["mode"] == "snapshot" and again.exit_code == 0
    sent = [(method, target.split("?")[0]) for method, target, _ in proxy.seen]
    assert not any("list-type=2" in target for _, target, _ in proxy.seen), proxy.seen
    assert [m for m, t in sent if t.endswith(MARKER_NAME)] == ["GET"]
    assert sum(1 for m, _ in sent if m == "HEAD") == SAMPLE_SIZE
    assert not any(m in ("PUT", "POST", "DELETE") for m, _ in sent)  # nothing changed, nothing written


def test_a_marker_that_cannot_be_read_means_a_full_listing(tmp_path, s3, s3_bucket, proxy, monkeypatch):
    from test_sync import FILES

    from fovea_tui.engine.volume.listing import MARKER_NAME
    from fovea_tui.engine.volume.sync import run_sync

    settings = _sync_settings(tmp_path, s3_bucket, proxy.endpoint_url)
    run_sync(settings)
    proxy.add("GET", MARKER_NAME, status=403)  # credentials that may list and write, not read
    denied = run_sync(settings)
    assert denied.exit_code == 0 and denied.skipped == len(FILES) and denied.errors == []
    assert denied.listing["mode"] == "full"
    assert "cannot check the snapshot against the target" in denied.listing["reason"]
    assert "AccessDenied" in denied.listing["reason"]
    proxy.clear()
    proxy.add("HEAD", "", status=503)  # the sample cannot be checked: the store is struggling
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)
    struggling = run_sync(settings)
    assert struggling.exit_code == 0 and struggling.listing["mode"] == "full"
    assert "cannot inspect" in struggling.listing["reason"] and "503" in struggling.listing["reason"]
