"""Bad input, tried on purpose: each gets a clear message, the contract's exit code, and
nothing lost or overwritten.

Covered elsewhere (not repeated): a truncated gzip, a whole gzip of a cut dump, a dump that
differs from its manifest, manifests that are not JSON or lack keys (test_verify.py); the
legacy name with an impossible date in the inventory (test_inventory.py); wrong config types
and invalid TOML (test_config.py); quotes, exports and comments in the env file and bad
DATABASE_URLs (test_envfile.py, test_secrets.py); a DATABASE_URL password with @ : / # % & " '
and a space (the test cluster's own password, used by every direct-mode test).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w
from support.backup_history import History, dump_bytes, make_settings
from support.services import unavailable
from test_backup_helpers import run_cli

from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.infra.stores import DirectoryStore, StoreError, safe_relative_key

T0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


@pytest.fixture
def history(tmp_path):
    settings = make_settings(tmp_path, keep_daily=3, keep_weekly=0)
    h = History(settings)
    h.daily(T0, 2)
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    return settings, h, cfg


def _snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir() if p.is_file()}


@pytest.mark.parametrize("kind", ["empty", "no-completion-line", "not-gzip", "manifest-mismatch"])
def test_bad_dumps_are_corrupt_never_restored_never_counted(history, kind):
    settings, h, cfg = history
    name = "fovea-20260105T020000Z.sql.gz"
    data = {"empty": b"", "no-completion-line": dump_bytes(complete=False),
            "not-gzip": b"-- PostgreSQL database dump\n" * 10}.get(kind, dump_bytes())
    path = h.add(name, data=data, verify=False, manifest=kind.startswith("manifest") or kind == "empty")
    if kind == "manifest-mismatch":
        path.write_bytes(dump_bytes(padding=100))
    before = _snapshot(settings.backups_dir)

    # A whole dump that is not the one its manifest describes is "mismatch" (exit 1), not corrupt:
    # restore still refuses it, and prune keeps it for the operator to decide (issue 14, item 3).
    mismatch = kind == "manifest-mismatch"
    r = run_cli("--config", str(cfg), "verify", "--json", name)
    assert r.returncode == (1 if mismatch else 3) and "Traceback" not in r.stderr
    [entry] = json.loads(r.stdout)["dumps"]
    assert entry["status"] == ("mismatch" if mismatch else "corrupt") and entry["reasons"]

    r = run_cli("--config", str(cfg), "restore", name, "--yes", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 3 and report["ok"] is False and report["status"] == "refused", r.stderr
    assert report["safety_dump"] is None

    plan = json.loads(run_cli("--config", str(cfg), "prune", "--dry-run", "--json").stdout)
    assert name not in {k["name"] for k in plan["keep"]
                        if "corrupt" not in " ".join(k["reasons"]) and "manifest says" not in " ".join(k["reasons"])}
    if mismatch:
        assert name not in {f["name"] for f in plan["forget"]}
    assert _snapshot(settings.backups_dir) == before  # nothing overwritten by looking


def test_a_whole_dump_with_a_garbled_manifest_is_unverified_not_corrupt(history):
    """The dump is sound; only its manifest is not. It must not be deleted as corrupt,
    nor restored on the word of a manifest nobody can read."""
    settings, h, cfg = history
    name = "fovea-20260105T020000Z.sql.gz"
    path = h.add(name, data=dump_bytes(), verify=False, manifest=True)
    mf.manifest_path(path).write_text("{ not json")
    before = _snapshot(settings.backups_dir)

    r = run_cli("--config", str(cfg), "verify", "--json", name)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    [entry] = json.loads(r.stdout)["dumps"]
    assert entry["status"] == "unverified" and "not valid JSON" in " ".join(entry["reasons"])

    r = run_cli("--config", str(cfg), "restore", name, "--yes", "--json")
    assert r.returncode == 3 and json.loads(r.stdout)["status"] == "refused", r.stderr

    plan = json.loads(run_cli("--config", str(cfg), "prune", "--dry-run", "--json").stdout)
    forgotten_as_corrupt = [k for k in plan["forget"] if k["name"] == name and k.get("status") == "corrupt"]
    assert not forgotten_as_corrupt
    assert _snapshot(settings.backups_dir) == before


def test_odd_file_names_spaces_non_ascii_and_impossible_dates(history):
    settings, h, cfg = history
    odd = ["fovea-my dump.sql.gz", "fovea-ünïcødé.sql.gz", "fovea-2026-02-30.sql.gz",
           "fovea-20261399T250000Z.sql.gz", "fovea- 20260101T020000Z.sql.gz"]
    for name in odd:
        (settings.backups_dir / name).write_bytes(dump_bytes())
    before = _snapshot(settings.backups_dir)
    r = run_cli("--config", str(cfg), "list", "--json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    assert {s["name"] for s in listing["unrecognised"]} == set(odd)
    assert len(listing["backups"]) == 2
    r = run_cli("--config", str(cfg), "list")
    assert r.returncode == 0 and "fovea-ünïcødé.sql.gz" in r.stdout
    r = run_cli("--config", str(cfg), "prune", "--json")
    assert r.returncode == 0, r.stderr
    for name in odd:  # never a retention candidate: never deleted
        assert (settings.backups_dir / name).exists()
    r = run_cli("--config", str(cfg), "verify", "--json", "fovea-my dump.sql.gz")
    assert r.returncode == 0 and json.loads(r.stdout)["dumps"][0]["status"] == "verified"
    r = run_cli("--config", str(cfg), "restore", "fovea-ünïcødé.sql.gz", "--yes", "--json")
    assert r.returncode == 3 and "not named like a fovea dump" in r.stdout
    assert _snapshot(settings.backups_dir) == {**before, **{k: v for k, v in _snapshot(settings.backups_dir).items()
                                                            if k not in before}}


@pytest.mark.parametrize("key", ["../escape.sql.gz", "/etc/passwd", "a/../../b", "..", "C:/x",
                                 "back\\slash", "nul\x00byte", ""])
def test_object_keys_that_would_leave_the_destination_are_refused(tmp_path, key):
    assert safe_relative_key(key) is None
    store = DirectoryStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(StoreError, match="refusing object key"):
        store.put_file(src, key)
    with pytest.raises(StoreError):
        store.get_file(key, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "store"]


def test_offsite_keys_with_dot_dot_are_never_fetched_outside_backups_dir(tmp_path, s3, s3_bucket):
    """An object key like `../x` in the bucket must not write outside backups.dir on restore."""
    settings = make_settings(tmp_path, offsite=f"s3://{s3_bucket}/db/", endpoint_url=s3.endpoint_url)
    client = s3.client()
    for key in ("db/../fovea-20260101T020000Z.sql.gz", "db/fovea-x/../../fovea-20260102T020000Z.sql.gz",
                "db//fovea-20260103T020000Z.sql.gz"):
        client.put_object(Bucket=s3_bucket, Key=key, Body=dump_bytes())
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    r = run_cli("--config", str(cfg), "list", "--json")
    assert r.returncode == 0, r.stderr
    for name in ("fovea-20260101T020000Z.sql.gz", "../fovea-20260101T020000Z.sql.gz"):
        r = run_cli("--config", str(cfg), "restore", name, "--yes", "--json")
        # 2: no dump of that name anywhere (the hostile keys are not dumps); 1/3: refused on the way
        assert r.returncode in (1, 2, 3) and json.loads(r.stdout)["ok"] is False
    assert not (tmp_path / "fovea-20260101T020000Z.sql.gz").exists()
    assert not any(p.name.startswith("fovea-") for p in tmp_path.iterdir())


@pytest.mark.parametrize("text,key", [
    ('[backups]\ndir = 5\n', "backups.dir"),
    ('[retention]\nkeep_daily = "14"\n', "retention.keep_daily"),
    ('[retention]\nkeep_daily = -1\n', "retention.keep_daily"),
    ('[volume]\ndelete = "yes"\n', "volume.delete"),
    ('[stack]\nmigrate_command = "npx prisma migrate deploy"\n', "stack.migrate_command"),
    ('[notify]\nwebhooks = ["ftp://x"]\n', "notify.webhooks"),
    ('[database]\nmode = "ssh"\n', "database.mode"),
    ('[backups]\noffsite = "s3://"\n', "backups.offsite"),
    ('backups = 3\n', "backups"),
])
def test_config_with_wrong_types_names_the_key_exit_2(tmp_path, text, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    for args in (["backup", "--json"], ["list"], ["prune", "--dry-run"]):
        r = run_cli("--config", str(cfg), *args)
        assert r.returncode == 2, (args, r.stderr)
        assert key in r.stderr and "Traceback" not in r.stderr


def test_read_only_backups_dir(tmp_path, fresh_direct_db):
    """A backups directory this run cannot write: exit 1 with the reason, the dumps there untouched."""
    import subprocess

    from test_backup_helpers import direct_config, settings_and_config, write_env

    env_file, _ = write_env(tmp_path)
    settings, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))
    History(settings).daily(T0, 1)
    before = _snapshot(settings.backups_dir)
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(settings.backups_dir), str(ro)], capture_output=True)
    if r.returncode != 0:
        unavailable(f"cannot bind-mount read-only here: {r.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, capture_output=True)
        cfg.write_text(cfg.read_text().replace(str(settings.backups_dir), str(ro)))
        r = run_cli("--config", str(cfg), "backup", "--json")
        assert r.returncode == 1, r.stderr
        assert "Read-only file system" in r.stderr and "Traceback" not in r.stderr
        r = run_cli("--config", str(cfg), "prune", "--json", "--keep-last", "1")
        assert r.returncode in (0, 1) and "Traceback" not in r.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
    assert _snapshot(settings.backups_dir) == before
