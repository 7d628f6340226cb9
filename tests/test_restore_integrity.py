"""Issue 14, restore side, against real processes: a finished restore is not rolled back
without the confirmation a restore needs (and its live database is saved first); the job's
state file never holds the database password; rows are compared before migrate, so a
migration's SQL never decides a rollback."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from fovea_tui.config import save_settings, settings_from_dict
from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs

REPO = Path(__file__).resolve().parent.parent


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fovea_tui", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


def direct_settings(fresh_direct_db, tmp_path, monkeypatch):
    """Direct-mode settings for this cluster's database, saved in a config file: (settings, path)."""
    env_file = tmp_path / ".env"
    env_file.write_text("STORAGE_PATH=/videos\n")
    (tmp_path / "videos").mkdir()
    settings = settings_from_dict({
        "install": {"compose_project": "fovea-no-such-project", "env_file": str(env_file)},
        "database": {"mode": "direct", "url": fresh_direct_db.url},
        "backups": {"dir": str(tmp_path / "backups")},
        "volume": {"path": str(tmp_path / "videos")},
    })
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    settings.source = config
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    return settings, config


@pytest.fixture
def direct(fresh_direct_db, tmp_path, monkeypatch):
    """Direct mode on a real cluster: settings saved in a config file, one backup taken."""
    from fovea_tui.engine.backups.pipeline import run_backup

    settings, config = direct_settings(fresh_direct_db, tmp_path, monkeypatch)
    backup = run_backup(settings, offsite=False)
    return settings, config, backup, fresh_direct_db


def files_holding(directory: Path, password: str) -> list[str]:
    """Files under `directory` holding the password, as typed or as it is quoted in a URL."""
    forms = {password.encode(), quote(password, safe="").encode()}
    return [str(p) for p in directory.rglob("*") if p.is_file() and any(f in p.read_bytes() for f in forms)]


def test_state_file_never_holds_the_password(direct):
    settings, config, backup, db = direct
    assert db.password and quote(db.password, safe="") in settings.database.url
    proc = run_cli(["--config", str(config), "restore", backup.name, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    job = json.loads(proc.stdout)["job"]
    state = jobs.read_state(jobs.jobs_dir(settings), job)
    assert state["status"] == "ok"
    assert quote(db.password, safe="") not in json.dumps(state) and db.password not in json.dumps(state)
    assert state["settings"]["database"]["url"].endswith(f":{db.port}/{db.name}")
    assert files_holding(settings.state_dir, db.password) == []

    # settings that came from no file: the URL reaches the runner in memory, never on disk
    in_memory = settings_from_dict(settings.to_toml_dict())
    assert in_memory.source is None
    job = engine.start_restore(in_memory, backup.name, confirmed=True)
    data = jobs.follow(in_memory, job, lambda _d: None, timeout=180)
    assert data["status"] == "ok", data.get("message")
    assert files_holding(settings.state_dir, db.password) == []


def test_resume_after_the_config_lost_its_url_says_so(direct):
    """The runner reads database.url again: when the config no longer holds it, the job
    says what is missing instead of running with a URL it cannot have."""
    settings, config, backup, db = direct
    job = engine.start_restore(settings, backup.name, confirmed=True, detach=False)
    other = settings_from_dict({**settings.to_toml_dict(),
                                "database": {**settings.to_toml_dict()["database"], "url": ""}})
    save_settings(other, config)
    with pytest.raises(Exception) as info:
        jobs.run_job(jobs.jobs_dir(settings), job, "run")
    assert "database.url" in str(info.value) and db.password not in str(info.value)
    state = jobs.read_state(jobs.jobs_dir(settings), job)
    assert state["status"] == "failed" and "database.url" in state["message"]


def _finished_restore(settings, backup, db) -> str:
    db.psql("CREATE TABLE before_restore (id int); INSERT INTO before_restore VALUES (7);")
    job = engine.start_restore(settings, backup.name, confirmed=True)
    data = jobs.follow(settings, job, lambda _d: None, timeout=180)
    assert data["status"] == "ok", data.get("message")
    # the restored database goes live and takes writes
    db.psql("CREATE TABLE written_after (id int); INSERT INTO written_after VALUES (42);")
    return job


def has_table(db, name: str) -> bool:
    return db.psql(f"SELECT to_regclass('public.{name}') IS NOT NULL").strip() == "t"


def test_rollback_of_a_finished_restore_is_refused_without_confirmation(direct):
    settings, config, backup, db = direct
    job = _finished_restore(settings, backup, db)

    for extra in ([], ["--yes"], ["--json"]):
        proc = run_cli(["--config", str(config), "restore", "--rollback", job, *extra])
        assert proc.returncode == 3, proc.stderr + proc.stdout
        assert "has been live since" in proc.stderr and "--force-after-success" in proc.stderr
        assert "Traceback" not in proc.stderr
    proc = run_cli(["--config", str(config), "restore", "--force-after-success", backup.name, "--yes"])
    assert proc.returncode == 2 and "--force-after-success" in proc.stderr
    # nothing was changed: the writes made since the restore are all there
    assert has_table(db, "written_after") and not has_table(db, "before_restore")
    assert jobs.read_state(jobs.jobs_dir(settings), job)["status"] == "ok"


def test_rollback_of_a_finished_restore_confirmed_saves_the_live_database_first(direct):
    settings, config, backup, db = direct
    job = _finished_restore(settings, backup, db)
    before = {p.name for p in settings.backups_dir.glob("*-pre-restore.sql.gz")}

    proc = run_cli(["--config", str(config), "restore", "--rollback", job, "--yes", "--force-after-success",
                    "--json"])
    assert proc.returncode == 1, proc.stderr + proc.stdout  # a rollback is not a restore that succeeded
    report = json.loads(proc.stdout)
    assert report["status"] == "rolled_back"
    assert "Rolled back the finished restore" in report["message"] and "live" in report["message"]
    # the database is what it was before the restore ...
    assert has_table(db, "before_restore") and not has_table(db, "written_after")
    # ... and what it held when it was rolled back is a new safety dump, with the writes made since
    new = {p.name for p in settings.backups_dir.glob("*-pre-restore.sql.gz")} - before
    assert len(new) == 1, new
    assert new.pop() in report["message"]
    live = jobs.read_state(jobs.jobs_dir(settings), job)["facts"]["live_dump"]
    sql = gzip.decompress(Path(live).read_bytes())
    assert b"written_after" in sql and b"42" in sql


def test_rollback_of_a_finished_restore_by_typing_the_name(direct):
    """On a terminal: the question says how long the database has been live; a wrong name
    changes nothing, the right one rolls back."""
    import pty

    settings, config, backup, db = direct

    def answer(typed: str) -> tuple[int, str]:
        pid, fd = pty.fork()
        if pid == 0:
            os.chdir(REPO)
            os.execv(sys.executable, [sys.executable, "-m", "fovea_tui", "--config", str(config), "restore",
                                      "--rollback", job])
        seen = b""
        answered = False
        while True:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if not answered and b"to roll back" in seen:
                os.write(fd, typed.encode() + b"\n")
                answered = True
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")

    job = _finished_restore(settings, backup, db)
    code, out = answer("not-the-name")
    assert code == 3, out
    assert "has been live since" in out
    assert has_table(db, "written_after")
    code, out = answer(db.name)
    assert code == 1 and "Rolled back the finished restore" in out, out
    assert has_table(db, "before_restore") and not has_table(db, "written_after")


@pytest.mark.docker
def test_migration_with_unquoted_identifiers_does_not_roll_back(stack, tmp_path):
    """A bundled migration `CREATE TABLE marker (id int PRIMARY KEY)` (legal, unquoted):
    the restore is verified against the dump before migrate, and the migration's new table
    is reported as information, not a failure."""
    from fovea_tui.engine.backups.pipeline import run_backup

    settings = stack.settings(tmp_path, stack={"health_url": stack.health_url})
    backup = run_backup(settings, offsite=False)
    migration = stack.app_dir / "prisma" / "migrations" / "20991231000000_marker"
    migration.mkdir()
    try:
        (migration / "migration.sql").write_text(
            "CREATE TABLE marker (id int PRIMARY KEY);\nINSERT INTO marker VALUES (1), (2);\n")
        job = engine.start_restore(settings, backup.name, confirmed=True, detach=False)
        result = engine.report({**engine.run_inline(settings, job), "alive": False})
    finally:
        shutil.rmtree(migration)
    assert result["ok"], result["message"]
    checks = {c["name"]: c for c in result["verification"]["checks"]}
    assert checks["rows"]["ok"], checks["rows"]
    assert "marker" in checks["rows"]["detail"] and checks["rows"]["severity"] == "info"
    assert stack.psql("SELECT count(*) FROM marker").strip() == "2"
    restore_step = next(s for s in result["steps"] if s["name"] == "restore")
    assert restore_step["status"] == "ok"


def test_restore_step_fails_when_rows_differ_from_the_manifest(direct):
    """The comparison moved to step 7 still catches a dump that does not restore what its
    manifest says: the step fails and the restore is rolled back."""
    from fovea_tui.engine.backups import manifest as mf

    settings, config, backup, db = direct
    db.psql("CREATE TABLE before_restore (id int);")
    path = mf.manifest_path(backup.path)
    data = json.loads(path.read_text())
    table = sorted(data["tables"])[0]
    data["tables"][table] += 1
    path.write_text(json.dumps(data))
    job = engine.start_restore(settings, backup.name, confirmed=True, detach=False)
    result = engine.report({**engine.run_inline(settings, job), "alive": False})
    assert result["status"] == "rolled_back", result["message"]
    restore_step = next(s for s in result["steps"] if s["name"] == "restore")
    assert restore_step["status"] == "failed" and table in restore_step["detail"]
    assert has_table(db, "before_restore")


def test_a_mismatched_dump_is_restored_only_when_accepted(direct):
    """A whole dump whose manifest's sha256 was edited: the pre-flight refuses it (exit 3,
    nothing changed) unless --accept-mismatch; accepted, its own rows are what step 7 compares."""
    from fovea_tui.engine.backups import manifest as mf

    settings, config, backup, db = direct
    path = mf.manifest_path(backup.path)
    data = json.loads(path.read_text())
    data["sha256"] = "0" * 64
    path.write_text(json.dumps(data))
    db.psql("CREATE TABLE before_restore (id int);")

    proc = run_cli(["--config", str(config), "restore", backup.name, "--yes", "--json"])
    assert proc.returncode == 3, proc.stderr + proc.stdout
    report = json.loads(proc.stdout)
    preflight = {c["name"]: c for c in report["preflight"]}
    assert "--accept-mismatch" in preflight["dump"]["detail"] and "sha256" in preflight["dump"]["detail"]
    assert has_table(db, "before_restore")

    proc = run_cli(["--config", str(config), "restore", backup.name, "--yes", "--accept-mismatch", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert not has_table(db, "before_restore")
