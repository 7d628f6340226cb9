"""A backup never reports more than it made (issue 14, items 6-8): a missing env copy, a
late ENOSPC and a half-finished off-site upload are each said plainly, with exit 1, and
leave nothing that looks like a backup when there is none. Real PostgreSQL, the real CLI in
a subprocess, strace for the late fault, moto behind the fault proxy for the upload."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.verify import verify_dump

from support.services import unavailable
from test_backup_helpers import REPO, direct_config, dump_files, run_cli, settings_and_config, write_env


def _cli(cfg: Path, *args: str, prefix: list[str] | None = None, env: dict | None = None):
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FOVEA_TUI_CONFIG", None)
    return subprocess.run([*(prefix or []), sys.executable, "-m", "fovea_tui", "--config", str(cfg), *args],
                          capture_output=True, text=True, env=full_env, cwd=REPO, timeout=300)


# -- item 7: the env file is configured but cannot be copied ------------------------------

def _no_caps() -> list[str]:
    """Run as root without the capabilities that bypass file modes (so 0000 means unreadable)."""
    if shutil.which("setpriv") is None:
        unavailable("setpriv is not installed")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


@pytest.mark.parametrize("how", ["missing", "unreadable"])
def test_an_env_file_that_cannot_be_copied_makes_an_incomplete_backup(tmp_path, fresh_direct_db, how):
    env_file, _ = write_env(tmp_path)
    prefix: list[str] = []
    if how == "missing":
        env_file.unlink()
    else:
        os.chmod(env_file, 0)
        prefix = _no_caps()
    settings, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))

    r = _cli(cfg, "backup", prefix=prefix)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "backup incomplete" in r.stderr and str(env_file) in r.stderr
    assert ("does not exist" if how == "missing" else "not readable") in r.stderr
    assert "env copy FAILED" in r.stdout and str(env_file) in r.stdout

    r = _cli(cfg, "backup", "--json", prefix=prefix)
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert result["ok"] is False and result["env_copy"] is None and str(env_file) in result["env_error"]
    dump = Path(result["path"])
    assert verify_dump(dump).status == "verified"  # the dump is kept, and it is good
    assert mf.read_for(dump).env_file is None
    assert not mf.env_copy_path(dump).exists()

    r = run_cli("--config", str(cfg), "list", "--json")
    entry = next(e for e in json.loads(r.stdout)["backups"] if e["name"] == dump.name)
    assert any("env" in w for w in entry["warnings"])


def test_no_env_file_configured_is_not_an_incomplete_backup(tmp_path, fresh_direct_db):
    data = direct_config(tmp_path, fresh_direct_db.url, Path("/unused"))
    data["install"]["env_file"] = ""
    settings, cfg = settings_and_config(tmp_path, data)
    r = _cli(cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["env_error"] is None


# -- item 8: a late ENOSPC ------------------------------------------------------------------

def _strace() -> str:
    path = shutil.which("strace")
    if path is None:
        unavailable("strace is not installed (apt-get install strace)")
    return path


def test_enospc_on_the_directory_fsync_after_the_manifest_rename_leaves_nothing(tmp_path, fresh_direct_db):
    """The last durable step of a backup is the directory fsync after the manifest's rename.
    strace makes exactly that fsync fail with ENOSPC (counting fsyncs of the backups directory
    only): the run must remove the dump, the env copy and the manifest, and say so truly."""
    strace = _strace()
    env_file, _ = write_env(tmp_path)

    # A clean run first, traced, to count the backups directory's fsyncs: the last is the one.
    probe = tmp_path / "probe"
    probe.mkdir()
    data = direct_config(probe, fresh_direct_db.url, env_file)
    _, probe_cfg = settings_and_config(probe, data)
    log = tmp_path / "strace.log"
    r = _cli(probe_cfg, "backup", prefix=[strace, "-f", "-qq", "-o", str(log), "-P", str(probe / "backups"),
                                          "-e", "trace=fsync"])
    assert r.returncode == 0, r.stderr
    count = sum(1 for line in log.read_text().splitlines() if "fsync(" in line)
    assert count >= 2, log.read_text()
    assert len(dump_files(probe / "backups")) == 3

    settings, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))
    settings.backups_dir.mkdir(mode=0o700)
    r = _cli(cfg, "backup", "--json", prefix=[strace, "-f", "-qq", "-o", "/dev/null", "-P", str(settings.backups_dir),
                                               "-e", "trace=fsync", "-e", f"inject=fsync:error=ENOSPC:when={count}"])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert "no space left" in r.stderr and "manifest" in r.stderr and "nothing was kept" in r.stderr
    assert json.loads(r.stdout)["ok"] is False
    assert dump_files(settings.backups_dir) == []  # no orphan manifest, no dump, no env copy
    assert not [p for p in settings.backups_dir.iterdir() if p.name.endswith(".partial")]

    # and the next run is a normal one
    r = _cli(cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    assert len(dump_files(settings.backups_dir)) == 3
