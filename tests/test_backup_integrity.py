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
from support.services import unavailable
from test_backup_helpers import REPO, direct_config, dump_files, run_cli, settings_and_config, write_env

from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.verify import verify_dump


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


# -- item 6: an off-site upload that stopped half-way ----------------------------------------

@pytest.fixture
def proxy(s3):
    from support.faultproxy import FaultProxy

    p = FaultProxy(s3.endpoint_url).start()
    yield p
    p.stop()


def _offsite_install(tmp_path, db_url, bucket, endpoint):
    env_file, _ = write_env(tmp_path)
    data = direct_config(tmp_path, db_url, env_file, backups={"offsite": f"s3://{bucket}/db/"},
                         s3={"endpoint_url": endpoint, "region": "us-east-1"})
    return settings_and_config(tmp_path, data)


@pytest.mark.parametrize("refused", [".env", ".manifest.json"])
def test_a_half_finished_upload_says_failed_for_each_missing_piece(tmp_path, fresh_direct_db, s3, s3_bucket,
                                                                    proxy, refused):
    settings, cfg = _offsite_install(tmp_path, fresh_direct_db.url, s3_bucket, proxy.endpoint_url)
    proxy.add("PUT", "", path_end=refused, status=403)  # the dump goes up; then the store refuses
    fast = {"FOVEA_TUI_S3_TIMEOUT": "2", "FOVEA_TUI_S3_MAX_ATTEMPTS": "1"}

    r = _cli(cfg, "backup", env=fast)
    assert r.returncode == 1, r.stdout + r.stderr
    dump = next(p for p in settings.backups_dir.iterdir() if p.name.endswith(".sql.gz"))
    names = {"dump": dump.name, ".env": mf.env_copy_path(dump).name, ".manifest.json": mf.manifest_path(dump).name}
    missing = [names[".manifest.json"]] if refused == ".manifest.json" else [names[".env"], names[".manifest.json"]]
    lines = r.stdout.splitlines()
    assert any("off-site copy FAILED" in line for line in lines), r.stdout
    assert not any(line.strip().startswith("off-site s3://") for line in lines), r.stdout  # no line of success
    not_uploaded = next(line for line in lines if "NOT uploaded" in line)
    assert not_uploaded.split(":", 1)[1].strip().split(", ") == missing
    assert "not uploaded" in r.stderr and all(name in r.stderr for name in missing)

    r = _cli(cfg, "backup", "--json", env=fast)
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert result["ok"] is False and result["offsite"]["status"] == "failed"
    assert result["offsite"]["complete"] is False
    assert Path(result["path"]).name in result["offsite"]["keys"]
    assert len(result["offsite"]["missing"]) == len(missing)

    # What `list` says of those off-site copies: incomplete, not "local+offsite verified".
    proxy.rules.clear()
    r = run_cli("--config", str(cfg), "list", "--json")
    assert r.returncode == 0, r.stderr
    entries = json.loads(r.stdout)["backups"]
    assert len(entries) == 2
    for entry in entries:
        assert entry["locations"] == ["local", "offsite"]
        expected = ["manifest"] if refused == ".manifest.json" else ["manifest", "env copy"]
        assert entry["incomplete"] == {"offsite": expected}
        assert any("off-site copy incomplete" in w for w in entry["warnings"])
    r = run_cli("--config", str(cfg), "list")
    rows = [line for line in r.stdout.splitlines() if line.startswith("fovea-")]
    assert rows and all("incomplete" in row for row in rows), r.stdout

    # A whole upload is listed as whole.
    r = _cli(cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    whole = json.loads(r.stdout)
    assert whole["offsite"]["status"] == "ok" and whole["offsite"]["missing"] == []
    r = run_cli("--config", str(cfg), "list", "--json")
    entry = next(e for e in json.loads(r.stdout)["backups"] if e["name"] == Path(whole["path"]).name)
    assert entry["incomplete"] == {} and not any("incomplete" in w for w in entry["warnings"])


def test_an_offsite_only_dump_without_its_manifest_is_incomplete(tmp_path, fresh_direct_db, s3, s3_bucket):
    settings, cfg = _offsite_install(tmp_path, fresh_direct_db.url, s3_bucket, s3.endpoint_url)
    r = _cli(cfg, "backup", "--json")
    assert r.returncode == 0, r.stderr
    dump = Path(json.loads(r.stdout)["path"])
    s3.client().delete_object(Bucket=s3_bucket, Key=f"db/{mf.manifest_path(dump).name}")
    for path in (dump, mf.manifest_path(dump), mf.env_copy_path(dump)):
        path.unlink()
    r = run_cli("--config", str(cfg), "list")
    row = next(line for line in r.stdout.splitlines() if line.startswith(dump.name))
    assert "offsite (incomplete)" in row, r.stdout
