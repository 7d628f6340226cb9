"""The guided restore against the real compose-labelled test stack (docker mode) and a real
PostgreSQL cluster (direct mode): whole runs, refusals, rollback, crash and resume."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fovea_tui.config import save_settings, settings_from_dict
from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import audit, jobs

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="session")
def fixture_dump(test_stack, tmp_path_factory):
    """One real backup of the seeded stack database, made by the backup engine (reused)."""
    from fovea_tui.engine.backups.pipeline import run_backup

    test_stack.ensure_running()
    test_stack.reset_database()
    base = tmp_path_factory.mktemp("restore-fixture")
    settings = test_stack.settings(base)
    result = run_backup(settings, offsite=False)
    return result.path


def place_dump(dump: Path, settings) -> Path:
    """Copy the fixture dump (and its manifest and env copy) into this test's backups dir."""
    target = settings.backups_dir
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    for src in dump.parent.iterdir():
        if src.name.startswith(dump.name[: -len(".sql.gz")]):
            shutil.copy2(src, target / src.name)
    return target / dump.name


def rows(stack, table: str) -> int:
    return int(stack.psql(f'SELECT count(*) FROM "{table}"').strip())


def running(stack, service: str) -> bool:
    c = stack.container(service)
    c.reload()
    return c.status == "running"


def mutate(stack) -> None:
    """Make the live database differ from the dump: a marker table and fewer annotations."""
    stack.psql("CREATE TABLE restore_marker (id int); INSERT INTO restore_marker VALUES (1);"
               "DELETE FROM annotations WHERE ctid IN (SELECT ctid FROM annotations LIMIT 3);")


def marker_present(stack) -> bool:
    return stack.psql("SELECT to_regclass('public.restore_marker') IS NOT NULL").strip() == "t"


@pytest.fixture
def restore_env(stack, fixture_dump, tmp_path):
    settings = stack.settings(tmp_path, stack={"health_url": stack.health_url})
    dump = place_dump(fixture_dump, settings)
    return settings, dump


def step_status(result: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in result["steps"]}


def run_cli(args: list[str], *, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fovea_tui", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL)


# ------------------------------------------------------------------ whole runs


def test_cli_restore_docker_mode_whole_run(stack, restore_env, tmp_path):
    """Headless in a subprocess: every step ok, the pending migration applied, the frontend
    (stopped before) still stopped, everything else running, report and audit written."""
    settings, dump = restore_env
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    expected_annotations = rows(stack, "annotations")
    mutate(stack)
    stack.container("frontend").stop(timeout=5)

    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["ok"] is True
    assert [s["name"] for s in result["steps"]] == ["choose", "preflight", "safety_dump", "confirm", "stop",
                                                      "prepare", "restore", "migrate", "videos", "start", "verify"]
    assert set(step_status(result).values()) == {"ok"}, result["steps"]
    assert all(set(s) >= {"name", "status", "detail"} for s in result["steps"])
    # the database is the dump again, plus the migration the backend bundles
    assert not marker_present(stack)
    assert rows(stack, "annotations") == expected_annotations
    applied = stack.psql("SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL").split()
    assert stack.pending_migration in applied
    assert stack.pending_migration in result["steps"][7]["detail"]
    # the new database was created during pre-flight and renamed into place, not left beside it
    assert "(created empty during pre-flight) to fovea" in result["steps"][5]["detail"], result["steps"][5]
    assert "_restore_new_" not in stack.psql("SELECT string_agg(datname, ',') FROM pg_database")
    # services: those running before run again; the frontend stays stopped
    assert not running(stack, "frontend")
    for service in ("postgres", "redis", "backend", "model-service"):
        assert running(stack, service), service
    assert stack.health()[0] == 200
    # pre-flight told about the queues and the pending migration
    pre = {c["name"]: c for c in result["preflight"]}
    assert "1 job active and 3 waiting" in pre["queues"]["detail"]
    assert stack.pending_migration in pre["migrations"]["detail"]
    assert "vector" in pre["server"]["detail"]
    # verification: rows equal, the migration's tables named not failed, health answered
    checks = {c["name"]: c for c in result["verification"]["checks"]}
    assert checks["rows"]["ok"] and checks["migrations"]["ok"] and checks["health"]["ok"]
    assert checks["videos"]["ok"], checks["videos"]
    assert result["verification"]["checklist"]
    # a safety dump outside retention, and the audit line
    safety = Path(result["safety_dump"])
    assert safety.name.endswith("-pre-restore.sql.gz") and safety.is_file()
    entries = audit.read(settings, action="restore")
    assert entries and entries[-1]["outcome"] == "ok"


def test_restore_in_process(stack, restore_env):
    """The same steps with the runner's body in this process (no subprocess)."""
    settings, dump = restore_env
    mutate(stack)
    job_id = engine.start_restore(settings, str(dump), confirmed=True, detach=False)
    data = engine.run_inline(settings, job_id)
    result = engine.report({**data, "alive": False})
    assert result["ok"], result
    assert not marker_present(stack)
    assert jobs.load_job(settings, job_id)["status"] == "ok"


def test_skip_migrate(stack, restore_env):
    settings, dump = restore_env
    job_id = engine.start_restore(settings, str(dump), confirmed=True, skip_migrate=True, detach=False)
    result = engine.report({**engine.run_inline(settings, job_id), "alive": False})
    assert result["ok"], result
    assert step_status(result)["migrate"] == "skipped"
    applied = stack.psql("SELECT migration_name FROM _prisma_migrations").split()
    assert stack.pending_migration not in applied


# ------------------------------------------------------------------ refusals and rollback


def test_corrupt_dump_refused_database_untouched(stack, restore_env, tmp_path):
    settings, dump = restore_env
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    mutate(stack)
    data = dump.read_bytes()
    dump.write_bytes(data[: len(data) // 2])  # cut short: the manifest's size and sha256 no longer match
    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
    assert proc.returncode == 3, proc.stderr
    result = json.loads(proc.stdout)
    assert result["ok"] is False and result["status"] == "refused"
    statuses = step_status(result)
    assert statuses["preflight"] == "failed"
    assert all(statuses[s] == "skipped" for s in ("safety_dump", "stop", "prepare", "restore"))
    assert "Nothing was changed" in result["message"]
    assert marker_present(stack)
    assert all(running(stack, s) for s in ("backend", "frontend", "redis"))
    # the new database pre-flight created beside its checks is dropped with the refusal
    assert "_restore_new_" not in stack.psql("SELECT string_agg(datname, ',') FROM pg_database")


def _dump_with_sql_error(dump: Path, target_dir: Path) -> Path:
    """A complete, well-formed gzip dump (no manifest) whose SQL fails half-way."""
    sql = gzip.decompress(dump.read_bytes()).decode()
    cut = sql.index("COPY public.")
    broken = sql[:cut] + "INSERT INTO no_such_table VALUES (1);\n" + sql[cut:]
    out = target_dir / "fovea-20200101T000000Z.sql.gz"
    out.write_bytes(gzip.compress(broken.encode()))
    return out


def test_sql_error_fails_at_restore_and_rolls_back(stack, restore_env):
    settings, dump = restore_env
    mutate(stack)
    annotations = rows(stack, "annotations")
    bad = _dump_with_sql_error(dump, settings.backups_dir)
    job_id = engine.start_restore(settings, bad.name, confirmed=True, detach=False)
    data = engine.run_inline(settings, job_id)
    result = engine.report({**data, "alive": False})
    assert result["status"] == "rolled_back", result
    statuses = step_status(result)
    assert statuses["restore"] == "failed"
    assert "no_such_table" in result["steps"][6]["detail"]
    assert statuses["migrate"] == statuses["start"] == statuses["verify"] == "skipped"
    undo = {s["name"]: s.get("undo", {}).get("status") for s in result["steps"]}
    assert undo["restore"] == "ok" and undo["stop"] == "ok"
    assert "as it was before" in result["message"]
    # the database is the safety dump's: the marker and the row counts of before
    assert marker_present(stack)
    assert rows(stack, "annotations") == annotations
    assert all(running(stack, s) for s in ("backend", "frontend", "redis", "model-service"))


def test_no_rollback_leaves_state_and_says_so(stack, restore_env, tmp_path):
    settings, dump = restore_env
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    bad = _dump_with_sql_error(dump, settings.backups_dir)
    proc = run_cli(["--config", str(config), "restore", bad.name, "--yes", "--json", "--no-rollback"])
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    assert "not rolled back" in result["message"] and "--rollback" in result["message"]
    assert "backend" in result["message"]  # names what is still stopped
    assert not running(stack, "backend")
    # and the way back still works afterwards
    proc = run_cli(["--config", str(config), "restore", "--rollback", result["job"], "--json"])
    assert proc.returncode == 1, proc.stderr  # a rolled-back restore is not a successful one
    after = json.loads(proc.stdout)
    assert after["status"] == "rolled_back", after
    assert running(stack, "backend") and stack.health()[0] == 200


# ------------------------------------------------------------------ crash and resume


def kill_runner_in_stop_step(stack, settings, dump_name: str) -> str:
    """Start a restore and kill -9 its runner while the stop step waits for the frontend, a
    Node PID 1 deaf to SIGTERM with a 20 s stop_grace_period, once the backend has stopped.
    The frontend is declared a database client here (stack.database_clients): the stop step
    waits only for those; the others stop beside the restore (test_restore_stack)."""
    settings = dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, database_clients=["frontend"]))
    with stack.changed("frontend", stop_timeout=20):
        job_id = engine.start_restore(settings, dump_name, confirmed=True)
        deadline = time.monotonic() + 120
        data = jobs.load_job(settings, job_id)
        while time.monotonic() < deadline:
            data = jobs.load_job(settings, job_id)
            stop = next(r for r in data["steps"] if r["name"] == "stop")
            counting = any("frontend: stopping, SIGKILL in" in line for line in stop.get("waiting") or [])
            if stop["status"] == "running" and counting and not running(stack, "backend"):
                break
            assert data["status"] not in jobs.FINAL, data.get("message")
            time.sleep(0.1)
        assert stop["status"] == "running" and counting, stop  # the countdown, in the job's state
        os.kill(data["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while jobs.is_alive(jobs.jobs_dir(settings), job_id) and time.monotonic() < deadline:
            time.sleep(0.05)
    return job_id


def test_sigkill_mid_step_then_resume(stack, restore_env, tmp_path):
    settings, dump = restore_env
    mutate(stack)
    job_id = kill_runner_in_stop_step(stack, settings, dump.name)
    data = jobs.load_job(settings, job_id)
    assert jobs.effective_status(data) == "interrupted"
    assert "--resume" in engine.describe_status(data)
    assert not running(stack, "backend")  # stopped, half-way
    assert marker_present(stack)  # the database not touched yet

    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    proc = run_cli(["--config", str(config), "restore", "--resume", job_id, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(step_status(result).values()) == {"ok"}
    assert not marker_present(stack)
    assert running(stack, "backend") and running(stack, "frontend")


def test_second_restore_refused_while_lock_held(stack, restore_env):
    from fovea_tui.engine.infra.locks import acquire
    from fovea_tui.errors import LockHeld

    settings, dump = restore_env
    with acquire(settings, "backups", purpose="backup"):
        with pytest.raises(LockHeld):
            engine.start_restore(settings, dump.name, confirmed=True)


# ------------------------------------------------------------------ direct mode


def test_direct_mode_whole_run(fresh_direct_db, tmp_path, monkeypatch):
    from fovea_tui.engine.backups.pipeline import run_backup

    env_file = tmp_path / ".env"
    env_file.write_text("STORAGE_PATH=/videos\n")
    (tmp_path / "videos").mkdir()
    settings = settings_from_dict({
        "install": {"compose_project": "fovea-no-such-project", "env_file": str(env_file)},
        "database": {"mode": "direct", "url": fresh_direct_db.url},
        "backups": {"dir": str(tmp_path / "backups")},
        "volume": {"path": str(tmp_path / "videos")},
    })
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    backup = run_backup(settings, offsite=False)
    before = fresh_direct_db.psql("SELECT count(*) FROM users").strip()
    fresh_direct_db.psql("DELETE FROM annotations; CREATE TABLE restore_marker (id int);")

    job_id = engine.start_restore(settings, backup.name, confirmed=True, detach=False)
    result = engine.report({**engine.run_inline(settings, job_id), "alive": False})
    assert result["ok"], result
    statuses = step_status(result)
    assert statuses["stop"] == statuses["migrate"] == statuses["start"] == "skipped"
    assert "no Docker" in result["steps"][7]["detail"]
    assert fresh_direct_db.psql("SELECT to_regclass('public.restore_marker') IS NULL").strip() == "t"
    assert fresh_direct_db.psql("SELECT count(*) FROM users").strip() == before
    checks = {c["name"]: c for c in result["verification"]["checks"]}
    assert checks["rows"]["ok"]



def test_direct_mode_with_a_compose_stack_stops_and_starts_its_services(stack, restore_env, tmp_path):
    """Direct mode (the database at a URL) beside a compose project that has containers: the
    engine is asked on its socket first, finds the project, and the restore manages the
    services as in docker mode: stopped before, started again after, the health answered."""
    settings, dump = restore_env
    settings.database.mode, settings.database.url = "direct", stack.database_url_host
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    expected = rows(stack, "annotations")
    mutate(stack)
    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    stopped = result["steps"][4]["detail"]
    assert result["steps"][4]["status"] == "ok" and "backend" in stopped, result["steps"][4]
    assert result["steps"][9]["status"] == "ok" and "backend" in result["steps"][9]["detail"], result["steps"][9]
    assert not marker_present(stack) and rows(stack, "annotations") == expected
    for service in ("postgres", "redis", "backend", "frontend", "model-service"):
        assert running(stack, service), service
    assert stack.health()[0] == 200


def test_docker_mode_restore_onto_a_dropped_database_creates_it(stack, restore_env, tmp_path):
    """`DROP DATABASE fovea` by mistake, in docker mode: nothing to save, the database created
    in step 6 (statements inside the database service), the dump loaded, the stack back up."""
    settings, dump = restore_env
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    expected = rows(stack, "annotations")
    stack.psql("DROP DATABASE fovea WITH (FORCE);", db="postgres")
    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    statuses = step_status(result)
    assert statuses["safety_dump"] == "skipped" and statuses["prepare"] == "ok", result["steps"]
    assert "created empty (there was none before the restore)" in result["steps"][5]["detail"], result["steps"][5]
    assert rows(stack, "annotations") == expected
    assert "_restore_new_" not in stack.psql("SELECT string_agg(datname, ',') FROM pg_database", db="postgres")
    for service in ("postgres", "redis", "backend", "model-service"):
        assert running(stack, service), service
    assert stack.health()[0] == 200


def test_the_engine_is_asked_about_a_project_without_the_docker_sdk(stack):
    """One request on the engine's socket tells whether a compose project has containers;
    where it cannot tell (a TCP host, no socket), the answer is None and the SDK asks."""
    from fovea_tui.engine.infra.stack import project_on_engine

    assert project_on_engine(stack.project) is True
    assert project_on_engine(stack.project + "-not-here") is False
    assert project_on_engine('fovea"; DROP') is False  # quoted into the filter, never a broken request
    probe = ("import sys; from fovea_tui.engine.infra.stack import import_sdk, project_on_engine; "
             "print(project_on_engine(sys.argv[1])); import_sdk(sys.argv[1]); print('docker' in sys.modules)")
    for host, want in (("unix:///nonexistent/docker.sock", ["None", "False"]),
                       ("tcp://127.0.0.1:1", ["None", "True"])):
        out = subprocess.run([sys.executable, "-c", probe, stack.project], capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "DOCKER_HOST": host}, check=True).stdout.split()
        assert out == want, (host, out)
    # with no container of the project, a direct-mode runner never imports the SDK
    out = subprocess.run([sys.executable, "-c", probe, stack.project + "-not-here"], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split()
    assert out == ["False", "False"], out
    out = subprocess.run([sys.executable, "-c", probe, stack.project], capture_output=True, text=True,
                         cwd=REPO, check=True).stdout.split()
    assert out == ["True", "True"], out


def test_a_restore_that_does_not_end_ok_alerts_a_person_once_a_day(fresh_direct_db, tmp_path, monkeypatch):
    import threading

    from support.receivers import HttpReceiver

    from fovea_tui.engine.backups.pipeline import run_backup
    from fovea_tui.engine.infra.locks import acquire

    receiver = HttpReceiver()
    env_file = tmp_path / ".env"
    env_file.write_text("STORAGE_PATH=/videos\n")
    (tmp_path / "videos").mkdir()
    settings = settings_from_dict({
        "install": {"compose_project": "fovea-no-such-project", "env_file": str(env_file)},
        "database": {"mode": "direct", "url": fresh_direct_db.url},
        "backups": {"dir": str(tmp_path / "backups")},
        "volume": {"path": str(tmp_path / "videos")},
        "notify": {"urls": [receiver.url("/apprise/restore-channel-token", scheme="json")]},
    })
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    backup = run_backup(settings, offsite=False)
    held, release = threading.Event(), threading.Event()

    def holder():
        with acquire(settings, "backups", purpose="a backup someone else runs"):
            held.set()
            release.wait(60)

    # Two restores prepared, then a backup takes the lock before their runners start.
    job_ids = [engine.start_restore(settings, backup.name, confirmed=True, detach=False) for _ in range(2)]
    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        outcomes = [engine.report({**engine.run_inline(settings, job_id), "alive": False})["status"]
                    for job_id in job_ids]
    finally:
        release.set()
        t.join(10)
        receiver.close()
    assert outcomes == ["refused", "refused"]
    (sent,) = [json.loads(r.body) for r in receiver.requests]  # the second is held back: same alert, same day
    assert sent["title"].startswith("fovea-tui on ") and f"CRITICAL: restore of {backup.name} ended refused" in sent["title"]
    assert "Restore screen" in sent["message"]
    assert [e["outcome"] for e in audit.read(settings, action="alerts")] == ["sent", "held_back"]


def test_cli_asks_for_the_name_on_a_terminal(stack, restore_env, tmp_path):
    """Without --yes, on a terminal: the runner waits after the safety step until the name is typed."""
    import pty

    settings, dump = restore_env
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    mutate(stack)
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on a terminal
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", dump.name])
    seen = b""
    deadline = time.monotonic() + 180
    answered = False
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"Type the database name" in seen:
            # the way back was decided before asking: the database is renamed aside once stopped
            assert b"rename aside" in seen
            assert running(stack, "backend")       # and nothing was stopped yet
            os.write(fd, b"fovea\n")
            answered = True
    _, status = os.waitpid(pid, 0)
    text = seen.decode(errors="replace")
    assert answered, text
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert not marker_present(stack)
