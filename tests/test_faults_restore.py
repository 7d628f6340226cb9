"""Restore faults: psql killed mid-stream during the restore step (step 7), its session
terminated by the server, and the Postgres container stopped mid-restore. Against the real
compose-labelled test stack (docker mode) and a real PostgreSQL cluster (direct mode), driven
through the CLI as an operator would: the runner is detached, the fault hits its psql.

What must hold: step 7 fails with a one-line reason saying what happened; the restore rolls
back to the safety dump (rows as before, the marker table back); the services that were
running run again; exit 1; the message says what state the install is in; no job is left
"running". When the database cannot be brought back, the message says so and names
`fovea-tui restore --rollback JOB`, which then puts the database back as it was.

Covered elsewhere (not repeated here): the restore runner SIGKILLed mid-step then resumed, a
SQL error in the dump rolled back, `--no-rollback` (test_restore.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.services import local_psql_pids
from test_backup_helpers import direct_config, settings_and_config, write_env
from test_restore import REPO, marker_present, mutate, place_dump, rows, running, step_status

from fovea_tui.config import save_settings
from fovea_tui.engine.infra import jobs

SERVICES_BEFORE = ("redis", "backend", "frontend", "model-service")
FILLER_ROWS = 1_500_000  # one COPY block long enough that psql is mid-stream for seconds


def _add_filler(psql) -> None:
    psql(f"CREATE TABLE filler AS SELECT i, md5(i::text) AS t, md5((i * 7)::text) AS u "
         f"FROM generate_series(1, {FILLER_ROWS}) i;")


@pytest.fixture(scope="module")
def big_dump(test_stack, tmp_path_factory):
    """A backup of the seeded stack database plus a big table: step 7 takes seconds."""
    from fovea_tui.engine.backups.pipeline import run_backup

    test_stack.ensure_running()
    test_stack.reset_database()
    _add_filler(test_stack.psql)
    base = tmp_path_factory.mktemp("restore-faults")
    result = run_backup(test_stack.settings(base), offsite=False)
    test_stack.reset_database()
    return result.path


@pytest.fixture
def docker_restore(stack, big_dump, tmp_path):
    settings = stack.settings(tmp_path, stack={"health_url": stack.health_url})
    dump = place_dump(big_dump, settings)
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    mutate(stack)
    return settings, config, dump


def _start_cli(config: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def _wait_streaming(settings, cli: subprocess.Popen, timeout: float = 180) -> str:
    """The job id once step 7 has streamed some of the dump into psql (and not all of it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert cli.poll() is None, cli.communicate()
        data = jobs.latest_job(settings, "restore")
        if data is not None:
            assert data["status"] not in jobs.FINAL, data.get("message")
            rec = next(r for r in data["steps"] if r["name"] == "restore")
            progress = rec.get("progress") or {}
            if rec["status"] == "running" and 0 < progress.get("done", 0) < (progress.get("total") or 0):
                return data["id"]
        time.sleep(0.05)
    raise AssertionError("step 7 never started streaming")


def _finish(cli: subprocess.Popen, timeout: float = 300) -> tuple[int, dict, str]:
    out, err = cli.communicate(timeout=timeout)
    try:
        return cli.returncode, json.loads(out), err
    except ValueError:
        raise AssertionError(f"exit {cli.returncode}, not JSON: {out!r} {err!r}") from None


def _settled(settings, job_id: str) -> dict:
    """The job after its runner is gone: a final status, never left "running"."""
    data = jobs.load_job(settings, job_id)
    assert not data["alive"], data
    assert data["status"] in jobs.FINAL, data["status"]
    assert jobs.effective_status(data) == data["status"]
    return data


def _psql_restore_pids(container) -> list[int]:
    """Host pids of the restoring psql in the postgres container (`docker top`)."""
    top = container.top(ps_args="-eo pid,args")
    pid_col = top["Titles"].index("PID")
    return [int(p[pid_col]) for p in top["Processes"]
            if "psql" in p[-1] and "--single-transaction" in p[-1]]


def _assert_rolled_back(result: dict, code: int, why: str) -> None:
    assert code == 1, result
    assert result["ok"] is False and result["status"] == "rolled_back", result
    statuses = step_status(result)
    assert statuses["restore"] == "failed", result["steps"]
    detail = result["steps"][6]["detail"]
    assert "\n" not in detail and why in detail, detail
    assert statuses["migrate"] == statuses["start"] == statuses["verify"] == "skipped"
    undo = {s["name"]: s.get("undo", {}).get("status") for s in result["steps"]}
    assert undo["restore"] == "ok" and undo["stop"] == "ok", result["steps"]
    assert "Rolled back" in result["message"] and "as it was before" in result["message"], result["message"]
    assert "safety dump" in result["message"]


# ---------------------------------------------------------------- psql killed mid-stream


@pytest.mark.docker
@pytest.mark.parametrize("how", ["sigkill", "terminate_backend"])
def test_docker_psql_killed_mid_stream_rolls_back(stack, docker_restore, how):
    settings, config, dump = docker_restore
    annotations = rows(stack, "annotations")
    cli = _start_cli(config, dump.name, "--yes", "--json")
    job_id = _wait_streaming(settings, cli)
    if how == "sigkill":
        pids = _psql_restore_pids(stack.container("postgres"))
        assert pids, pids  # the dump loads over several sessions: one of them is killed
        os.kill(pids[0], signal.SIGKILL)
        why = "psql was killed"
    else:
        out = stack.psql("SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE datname = "
                         "'fovea' AND application_name = 'psql' AND pid <> pg_backend_pid() LIMIT 1) one", db="postgres")
        assert out.split() == ["t"], out
        why = "terminating connection due to administrator command"
    code, result, err = _finish(cli)
    _assert_rolled_back(result, code, why)
    assert _settled(settings, job_id)["status"] == "rolled_back"
    assert marker_present(stack)
    assert rows(stack, "annotations") == annotations
    assert stack.psql("SELECT to_regclass('public.filler') IS NULL").strip() == "t"
    assert all(running(stack, s) for s in ("postgres", *SERVICES_BEFORE))
    assert stack.health()[0] == 200
    assert _psql_restore_pids(stack.container("postgres")) == []


@pytest.mark.parametrize("how", ["sigkill", "terminate_backend"])
def test_direct_psql_killed_mid_stream_rolls_back(fresh_direct_db, tmp_path, how):
    env_file, _ = write_env(tmp_path)
    settings, config = settings_and_config(tmp_path, direct_config(
        tmp_path, fresh_direct_db.url, env_file, install={"compose_project": "fovea-no-such-project"}))
    env = {"FOVEA_TUI_PG_BIN": str(fresh_direct_db.bin_dir)}
    _add_filler(fresh_direct_db.psql)
    proc = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), "backup", "--no-offsite",
                           "--json"], capture_output=True, text=True, cwd=REPO, env={**os.environ, **env},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    dump = json.loads(proc.stdout)["name"]
    fresh_direct_db.psql("DROP TABLE filler; CREATE TABLE restore_marker (id int);"
                         "DELETE FROM annotations WHERE ctid IN (SELECT ctid FROM annotations LIMIT 3);")
    annotations = fresh_direct_db.psql("SELECT count(*) FROM annotations").strip()

    cli = _start_cli(config, dump, "--yes", "--json", env=env)
    job_id = _wait_streaming(settings, cli)
    if how == "sigkill":
        pids = local_psql_pids(fresh_direct_db.name, b"--single-transaction")
        assert pids, pids  # the dump loads over several sessions: one of them is killed
        os.kill(pids[0], signal.SIGKILL)
        why = "psql was killed"
    else:
        out = fresh_direct_db.psql(
            "SELECT pg_terminate_backend(pid) FROM (SELECT pid FROM pg_stat_activity WHERE datname = "
            f"'{fresh_direct_db.name}' AND application_name = 'fovea-tui' AND pid <> pg_backend_pid() LIMIT 1) one",
            db="postgres")
        assert out.split() == ["t"], out
        why = "terminating connection due to administrator command"
    code, result, err = _finish(cli)
    assert code == 1, result
    assert result["status"] == "rolled_back", result
    detail = result["steps"][6]["detail"]
    assert step_status(result)["restore"] == "failed" and "\n" not in detail and why in detail, detail
    assert result["steps"][6]["undo"]["status"] == "ok"
    assert "as it was before" in result["message"], result["message"]
    assert _settled(settings, job_id)["status"] == "rolled_back"
    assert fresh_direct_db.psql("SELECT to_regclass('public.restore_marker') IS NOT NULL").strip() == "t"
    assert fresh_direct_db.psql("SELECT to_regclass('public.filler') IS NULL").strip() == "t"
    assert fresh_direct_db.psql("SELECT count(*) FROM annotations").strip() == annotations
    assert local_psql_pids(fresh_direct_db.name, b"--single-transaction") == []


# ---------------------------------------------------------------- the postgres container stopped


@pytest.mark.docker
def test_postgres_container_stopped_mid_restore_rolls_back(stack, docker_restore):
    settings, config, dump = docker_restore
    annotations = rows(stack, "annotations")
    cli = _start_cli(config, dump.name, "--yes", "--json")
    job_id = _wait_streaming(settings, cli)
    stack.container("postgres").stop(timeout=10)
    code, result, err = _finish(cli)
    _assert_rolled_back(result, code, "postgres stopped")
    assert _settled(settings, job_id)["status"] == "rolled_back"
    # the rollback brought postgres up again, then the safety dump back into it
    assert running(stack, "postgres")
    assert marker_present(stack)
    assert rows(stack, "annotations") == annotations
    assert all(running(stack, s) for s in SERVICES_BEFORE)
    assert stack.health()[0] == 200


@pytest.mark.docker
def test_postgres_kept_down_mid_restore_then_rollback_by_hand(stack, docker_restore):
    """The container is stopped mid-stream and again whenever the rollback starts it: the
    report says where the database as it was is (renamed aside, or already renamed back) and how
    to finish the rollback; then, with the container left alone, `restore --rollback JOB` puts
    everything back."""
    settings, config, dump = docker_restore
    annotations = rows(stack, "annotations")
    container = stack.container("postgres")
    cli = _start_cli(config, dump.name, "--yes", "--json")
    job_id = _wait_streaming(settings, cli)
    done = threading.Event()
    stops = []

    def keep_down() -> None:
        while not done.is_set():
            try:
                container.reload()
                if container.status in ("running", "restarting"):
                    container.stop(timeout=1)
                    stops.append(time.monotonic())
            except Exception:  # noqa: BLE001 - a conflict with a start under way: try again
                pass
            time.sleep(0.05)

    keeper = threading.Thread(target=keep_down, daemon=True)
    keeper.start()
    try:
        code, result, err = _finish(cli)
    finally:
        done.set()
        keeper.join(30)
    assert stops, "the container was never stopped"
    assert code == 1, result
    assert result["ok"] is False and result["status"] == "rollback_failed", result
    detail = result["steps"][6]["detail"]
    assert step_status(result)["restore"] == "failed" and "\n" not in detail and "postgres stopped" in detail, detail
    message = result["message"]
    assert "rollback failed" in message and f"fovea-tui restore --rollback {job_id}" in message, message
    # where the old database is, is known. The keeper usually stops postgres before the rename
    # back: the database as it was is kept aside, and the words say how to rename it by hand. When
    # the rename back lands between two stops, only the services are left: no DROP is asked for,
    # and the words ask to start those still stopped, or (when every one got going, and the
    # rollback failed on the backend's health, postgres being down again) only to retry.
    restore_undo = next(s.get("undo", {}).get("status") for s in result["steps"] if s["name"] == "restore")
    assert _settled(settings, job_id)["status"] == "rollback_failed"
    if "is kept as fovea_pre_restore_" in message or "unknown state" in message:
        assert "DROP DATABASE" in message or "safety dump" in message, message
        assert restore_undo != "ok", result["steps"]
        assert "backend" in message and not running(stack, "backend")  # names what is still stopped
    else:
        assert "The database is back as it was (renamed back)." in message, message
        assert "DROP DATABASE" not in message, message
        assert ("needs nothing more" in message) != ("are running again" in message), message
        assert restore_undo == "ok" and result["rollback"]["failed_step"] != "restore", result
        # the start that failed may have got some services going: the runner's words (in its
        # record, its log and the alert) name as stopped only those Docker said were not running
        recorded = jobs.load_job(settings, job_id)
        again, said = recorded["facts"].get("started_again"), recorded["message"]
        assert again is not None, "the runner did not ask Docker which services run"
        stopped = said.split("not yet started again: ", 1)[1].split(".", 1)[0].split(", ") \
            if "not yet started again: " in said else []
        assert not set(stopped) & set(again), (stopped, again, said)
        assert stopped or "are running again" in said, said

    proc = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", "--rollback",
                           job_id, "--json"], capture_output=True, text=True, cwd=REPO, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stderr  # a rolled-back restore is not a successful one
    after = json.loads(proc.stdout)
    assert after["status"] == "rolled_back", after
    assert "as it was before" in after["message"], after["message"]
    assert _settled(settings, job_id)["status"] == "rolled_back"
    assert running(stack, "postgres")
    assert marker_present(stack)
    assert rows(stack, "annotations") == annotations
    assert all(running(stack, s) for s in SERVICES_BEFORE)
    assert stack.health()[0] == 200
