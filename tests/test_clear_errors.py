"""Operator mistakes and hostile files end in one clear line and the contract's exit code,
never "unexpected error" or a traceback (issue 14). Every case runs the real CLI in a
subprocess, as cron or a person at the terminal would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w
from support.backup_history import History, make_settings
from support.services import unavailable
from test_backup_helpers import direct_config, run_cli, settings_and_config, write_env

from fovea_tui.engine.backups import manifest as mf

T0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


def _clean(r: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in r.stderr and "unexpected error" not in r.stderr, r.stderr
    assert "RecursionError" not in r.stderr + r.stdout


# -- config ---------------------------------------------------------------------------

@pytest.mark.parametrize("text,needle", [
    (b'[s3]\nendpoint_url = "not a url"\n', "s3.endpoint_url"),
    (b'[s3]\nendpoint_url = "http://127.0.0.1:port/"\n', "s3.endpoint_url"),
    (b'[s3]\nendpoint_url = "ftp://127.0.0.1/"\n', "s3.endpoint_url"),
    (b'[backups]\ndir = "caf\xe9"\n', "not UTF-8"),
    (b"a = " + b"[" * 200_000 + b"]" * 200_000 + b"\n", "nests"),
    (b"a = " + b"{b=" * 5_000 + b"1" + b"}" * 5_000 + b"\n", "nests"),
    (b"[drill]\ninterval_days = 100000000\n", "drill.interval_days"),
    (b"[drill]\ninterval_days = 0\n", "drill.interval_days"),
    (b"[volume]\nfull_listing_hours = 999999999999\n", "volume.full_listing_hours"),
    (b'[backups]\ndir = ""\n', "backups.dir"),
    (b'[backups]\ndir = "backups"\n', "backups.dir"),
    (b'[backups]\ndir = "./b"\n', "backups.dir"),
    (b'[backups]\ndir = "/b"\noffsite = "offsite-copies"\n', "backups.offsite"),
    (b'[volume]\ntarget = "mirror"\n', "volume.target"),
], ids=lambda v: v.decode("latin-1")[:40] if isinstance(v, bytes) else v)
def test_bad_config_exit_2_naming_what_is_wrong(tmp_path, text, needle):
    cfg = tmp_path / "c.toml"
    cfg.write_bytes(text)
    for args in (["list"], ["status", "--json"], ["backup", "--json"]):
        r = run_cli("--config", str(cfg), *args)
        _clean(r)
        assert r.returncode == 2, (args, r.stderr)
        assert needle in r.stderr
    # nothing written where the working directory happens to be
    assert not any(p.name.startswith("fovea-") for p in tmp_path.iterdir())


def test_a_relative_backups_dir_writes_nothing_into_the_working_directory(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[backups]\ndir = ""\n')
    r = subprocess.run([str(Path(os.sys.executable).parent / "fovea-tui"), "--config", str(cfg), "backup"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and "backups.dir" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_config_that_is_a_directory_says_so(tmp_path):
    r = run_cli("--config", str(tmp_path), "list")
    assert r.returncode == 2 and "is a directory" in r.stderr and "does not exist" not in r.stderr
    r = subprocess.run([os.sys.executable, "-m", "fovea_tui", "list"], capture_output=True, text=True,
                       env={**os.environ, "FOVEA_TUI_CONFIG": str(tmp_path)})
    assert r.returncode == 2 and "is a directory" in r.stderr and "FOVEA_TUI_CONFIG" in r.stderr
    r = run_cli("--config", str(tmp_path / "nope.toml"), "list")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_good_values_still_load(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps({
        "backups": {"dir": str(tmp_path / "b"), "offsite": "s3://bucket/db/"},
        "s3": {"endpoint_url": "http://[::1]:9000"},
        "drill": {"interval_days": 3650},
        "stack": {"migrate_command": ["sh", "-c", "echo [[[ ]]]"]},
    }))
    r = run_cli("--config", str(cfg), "list", "--no-offsite")
    assert r.returncode == 0, r.stderr


# -- a hostile manifest ------------------------------------------------------------------

HOSTILE = b"[" * 200_000


@pytest.fixture
def hostile(tmp_path, fresh_direct_db):
    env_file, _ = write_env(tmp_path)
    settings, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))
    h = History(settings)
    good, bad = h.daily(T0, 2)
    mf.manifest_path(bad).write_bytes(HOSTILE)
    return settings, cfg, good, bad


def test_a_manifest_nested_200k_deep_is_its_own_dumps_problem(hostile):
    settings, cfg, good, bad = hostile

    r = run_cli("--config", str(cfg), "list", "--json")
    _clean(r)
    assert r.returncode == 0, r.stderr
    entries = {e["name"]: e for e in json.loads(r.stdout)["backups"]}
    assert entries[good.name]["status"] == "verified"
    assert entries[bad.name]["status"] != "verified"
    assert any("manifest" in w and "unreadable" in w for w in entries[bad.name]["warnings"]), entries[bad.name]

    r = run_cli("--config", str(cfg), "verify", "--json")
    _clean(r)
    statuses = {d["name"]: d for d in json.loads(r.stdout)["dumps"]}
    assert statuses[good.name]["status"] == "verified"
    assert statuses[bad.name]["status"] == "unverified"
    assert "unreadable" in " ".join(statuses[bad.name]["reasons"])
    assert r.returncode == 1

    r = run_cli("--config", str(cfg), "prune", "--dry-run", "--json")
    _clean(r)
    assert r.returncode == 0, r.stderr

    r = run_cli("--config", str(cfg), "status", "--json")
    _clean(r)
    assert r.returncode in (0, 1)
    json.loads(r.stdout)

    r = run_cli("--config", str(cfg), "backup", "--json")
    _clean(r)
    assert r.returncode == 0, r.stderr

    r = run_cli("--config", str(cfg), "restore", bad.name, "--yes", "--json")
    _clean(r)
    assert r.returncode == 3 and "unreadable" in r.stdout, r.stdout
    r = run_cli("--config", str(cfg), "restore", good.name, "--yes", "--json")  # another dump: not its problem
    _clean(r)
    assert "unreadable" not in r.stdout and json.loads(r.stdout)["dump"] == good.name, r.stdout
    assert bad.exists() and good.exists()


def test_a_hostile_manifest_off_site_is_unreadable_too(tmp_path, s3, s3_bucket):
    from fovea_tui.engine.backups.inventory import load_inventory
    from fovea_tui.engine.infra.stores import open_store

    settings = make_settings(tmp_path, offsite=f"s3://{s3_bucket}/db/", endpoint_url=s3.endpoint_url)
    h = History(settings)
    [path] = h.daily(T0, 1)
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key=f"db/{path.name}", Body=path.read_bytes())
    client.put_object(Bucket=s3_bucket, Key=f"db/{mf.manifest_path(path).name}", Body=HOSTILE)
    path.unlink()
    mf.manifest_path(path).unlink()
    inv = load_inventory(settings, store=open_store(settings.backups.offsite, settings.s3))
    entry = inv.find(path.name)
    assert inv.load_manifest(entry) is None
    assert "unreadable" in entry.manifest_error


# -- what is a dump ------------------------------------------------------------------------

def test_names_with_a_trailing_newline_and_symlinks_are_not_dumps(tmp_path):
    """Only a regular file whose whole name is a dump name is a dump: a name ending in a newline
    (`$` matches before it) and a symlink named like a dump are listed as unrecognised, never
    counted, never a retention slot, never deleted by prune."""
    settings = make_settings(tmp_path, keep_daily=0, keep_weekly=0)
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    h = History(settings)
    paths = h.daily(T0, 3)
    newest = paths[-1]
    newline = settings.backups_dir / "fovea-20260110T020000Z.sql.gz\n"
    newline.write_bytes(newest.read_bytes())
    link = settings.backups_dir / "fovea-20260111T020000Z.sql.gz"
    link.symlink_to(newest)
    outside = tmp_path / "elsewhere.sql.gz"
    outside.write_bytes(newest.read_bytes())
    link_out = settings.backups_dir / "fovea-20260112T020000Z.sql.gz"
    link_out.symlink_to(outside)

    r = run_cli("--config", str(cfg), "list", "--json")
    _clean(r)
    listing = json.loads(r.stdout)
    assert [b["name"] for b in listing["backups"]] == [p.name for p in reversed(paths)]
    strays = {s["name"]: s["reason"] for s in listing["unrecognised"]}
    assert set(strays) == {newline.name, link.name, link_out.name}
    assert "symlink" in strays[link.name]

    r = run_cli("--config", str(cfg), "verify", "--json")
    _clean(r)
    assert {d["name"] for d in json.loads(r.stdout)["dumps"]} == {p.name for p in paths}

    r = run_cli("--config", str(cfg), "prune", "--json", "--keep-last", "1")
    _clean(r)
    assert r.returncode == 0, r.stderr
    assert newest.exists() and not paths[0].exists() and not paths[1].exists()
    assert newline.exists() and link.is_symlink() and link_out.is_symlink() and outside.exists()

    r = run_cli("--config", str(cfg), "status", "--json")
    assert json.loads(r.stdout)["backups"]["count"] == 1, r.stdout

    r = run_cli("--config", str(cfg), "restore", link_out.name, "--yes", "--json")
    _clean(r)
    assert r.returncode in (2, 3) and json.loads(r.stdout)["ok"] is False


def test_no_warning_on_stderr_when_cron_leaves_xdg_runtime_dir_unset(tmp_path, fresh_direct_db):
    """cron mails whatever lands on stderr: finding the client tools must not import the
    pgserver wheel (it warns about XDG_RUNTIME_DIR on import)."""
    env_file, _ = write_env(tmp_path)
    _, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "FOVEA_TUI_PG_BIN")}
    for args in (["backup", "--json", "--no-offsite"], ["status", "--json"], ["verify", "--json"]):
        r = subprocess.run([os.sys.executable, "-m", "fovea_tui", "--config", str(cfg), *args],
                           capture_output=True, text=True, env=env)
        assert "Warning" not in r.stderr and "XDG_RUNTIME_DIR" not in r.stderr, (args, r.stderr)
        assert r.returncode in (0, 1), (args, r.stderr)
    assert json.loads(r.stdout)["dumps"][0]["status"] == "verified"


# -- a read-only backups directory -------------------------------------------------------

@pytest.fixture(params=["with-state", "no-state"])
def read_only_backups(request, tmp_path, fresh_direct_db):
    """A tmpfs holding a real history, remounted read-only: every write fails with EROFS, the
    lock file's open first (with-state), or creating the state directory (no-state)."""
    env_file, _ = write_env(tmp_path)
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        data = direct_config(tmp_path, fresh_direct_db.url, env_file, backups={"dir": str(mnt)})
        settings, cfg = settings_and_config(tmp_path, data)
        History(settings).daily(T0, 2)
        r = run_cli("--config", str(cfg), "prune", "--keep-last", "5")  # leaves its lock file behind
        assert r.returncode == 0, r.stderr
        assert any(p.suffix == ".lock" for p in settings.state_dir.iterdir())
        if request.param == "no-state":
            shutil.rmtree(settings.state_dir)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        yield settings, cfg
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_read_only_backups_dir_is_one_clear_line(read_only_backups):
    settings, cfg = read_only_backups
    before = sorted(p.name for p in settings.backups_dir.iterdir())
    for args in (["backup"], ["prune", "--keep-last", "1"], ["verify"], ["run-nightly"],
                 ["restore", next(n for n in before if n.endswith(".sql.gz")), "--yes"]):
        for extra in ([], ["--json"]):
            r = run_cli("--config", str(cfg), *args, *extra)
            _clean(r)
            assert r.returncode == 1, (args, r.stderr)
            assert "read-only" in r.stderr.lower() and str(settings.backups_dir) in r.stderr, (args, r.stderr)
    r = run_cli("--config", str(cfg), "list", "--json")
    assert r.returncode == 0 and len(json.loads(r.stdout)["backups"]) == 2, r.stderr
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == before


# -- a pull that meets a key no file system can hold ------------------------------------------

@pytest.mark.parametrize("long_key", ["v/" + "x" * 300 + ".mp4", "d" * 300 + "/clip.mp4"])
def test_a_pull_reports_a_key_too_long_for_the_file_system_and_pulls_the_rest(tmp_path, s3, s3_bucket, long_key):
    from fovea_tui.config import BackupSettings, S3Settings, Settings, VolumeSettings

    client = s3.client()
    good = {"a.mp4": b"a" * 1000, "v/b.mp4": b"b" * 2000, "z/c.jpg": b"c" * 10}
    for key, body in good.items():
        client.put_object(Bucket=s3_bucket, Key="videos/" + key, Body=body)
    client.put_object(Bucket=s3_bucket, Key="videos/" + long_key, Body=b"long")
    settings = Settings(backups=BackupSettings(dir=str(tmp_path / "backups")),
                        volume=VolumeSettings(path=str(tmp_path / "videos"), target=f"s3://{s3_bucket}/videos/"),
                        s3=S3Settings(endpoint_url=s3.endpoint_url, region="us-east-1"))
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    dest = tmp_path / "pulled"
    for extra in ([], ["--json"]):
        r = run_cli("--config", str(cfg), "sync", "--pull", "--to", str(dest), *extra)
        _clean(r)
        assert r.returncode == 1, r.stderr
        assert long_key[:40] in r.stdout + r.stderr and "too long" in (r.stdout + r.stderr).lower()
    errors = json.loads(r.stdout)["errors"]
    assert len(errors) == 1 and long_key[:40] in errors[0]
    for key, body in good.items():
        assert (dest / key).read_bytes() == body
    assert not [p for p in dest.rglob("*") if p.name.startswith(".fovea-tmp-")]
