"""Issue 22, "the restore screen and messages", against real processes: what the operator
reads after a restore failed or was interrupted, and on the terminal while typing the name.

- psql's own error line, with the dump's line number, is in the job log; its set_config
  result rows are not, and neither is the password the failing statement held;
- a failed step's time is its own: the rollback that followed is timed apart;
- the services an interrupted restore names as stopped are those Docker says are stopped now
  (one started by hand is not named), in the engine's words, the CLI's and the TUI's;
- the progress bar is not redrawn under "Type the database name": the name typed follows
  the prompt on its line.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from support.hold import start_held_restore
from support.tui import asynctest, wait_for
from test_restore_integrity import REPO, direct, run_cli  # noqa: F401 - the fixture is used by name

from fovea_tui.config import save_settings
from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.infra.stack import Stack


def dump_failing_at(dump: Path, statement: str) -> tuple[Path, int]:
    """A well-formed gzip dump (no manifest) whose SQL fails at `statement`, inserted before
    the first COPY; returns it and the 1-based line the statement is on."""
    sql = gzip.decompress(dump.read_bytes()).decode()
    cut = sql.index("COPY public.")
    line = sql[:cut].count("\n") + 1
    out = dump.parent / "fovea-20200101T000000Z.sql.gz"
    out.write_bytes(gzip.compress((sql[:cut] + statement + "\n" + sql[cut:]).encode()))
    return out, line


def test_the_log_names_psqls_error_line_not_its_result_rows_nor_the_password(direct):  # noqa: F811 - pytest\'s fixture by name
    settings, config, backup, db = direct
    dump = backup.path
    assert "$q$" not in db.password
    bad, line = dump_failing_at(dump, f"INSERT INTO no_such_table VALUES ($q${db.password}$q$);")
    assert "set_config" in gzip.decompress(bad.read_bytes()).decode()  # pg_dump's SELECTs are there

    proc = run_cli(["--config", str(config), "restore", bad.name, "--yes", "--json"])
    assert proc.returncode == 1, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["status"] == "rolled_back", result["message"]
    log = Path(result["log"]).read_text()
    assert f'psql:<stdin>:{line}: ERROR:  relation "no_such_table" does not exist' in log, log
    restore = next(s for s in result["steps"] if s["name"] == "restore")
    assert f"psql:<stdin>:{line}: ERROR" in restore["detail"]
    assert "set_config" not in log and "(1 row)" not in log
    state = (jobs.jobs_dir(settings) / f"{result['job']}.json").read_text()
    for text in (log, state, proc.stdout, proc.stderr):
        assert db.password not in text

    # the failed step's time is its own; the rollback that followed has its own
    data = jobs.read_state(jobs.jobs_dir(settings), result["job"])
    rec = next(r for r in data["steps"] if r["name"] == "restore")
    assert rec["ended_at"] <= data["rollback"]["started_at"]
    assert rec["undo"]["status"] == "ok" and rec["undo"]["duration_s"] > 0
    assert restore["undo"]["duration_s"] == rec["undo"]["duration_s"]
    text = run_cli(["--config", str(config), "restore", "--follow", result["job"]]).stdout
    assert f"undo ({rec['undo']['duration_s']:.1f} s): ok:" in text, text


# ------------------------------------------------------------------ the prompt on a terminal


def _read_until(fd: int, wanted: bytes, timeout: float) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while wanted not in out and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def _controlling_tty() -> None:
    """In the child: a session of its own whose controlling terminal is the pty on stdin, so
    ^C typed there is a SIGINT, as over SSH."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_the_typed_name_follows_the_prompt_on_a_terminal(direct):  # noqa: F811 - pytest\'s fixture by name
    """On a terminal (a pty, as over SSH) the bar of the steps before the question is stopped:
    nothing is drawn while the operator types, and the name lands right after the prompt."""
    from fovea_tui.engine.backups.pipeline import run_backup

    settings, config, _small, db = direct
    # a dump big enough that the runner waits for its pre-flight read (1-2 s) and draws the bar
    # before the question, even on a loaded machine (at 4,000,000 rows a full run met the read
    # begun by the CLI already done when the runner asked: nothing to draw)
    db.psql("CREATE TABLE ballast AS SELECT g AS id, md5(g::text) AS t FROM generate_series(1, 10000000) g;")
    dump = run_backup(settings, offsite=False).path
    master, slave = os.openpty()
    os.set_blocking(master, True)
    env = {**os.environ, "COLUMNS": "100", "LINES": "30", "TERM": "xterm-256color"}
    proc = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", dump.name],
                            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=env, start_new_session=True)
    os.close(slave)
    try:
        prompt = f"Type the database name ({db.name}) to go ahead, anything else to cancel: ".encode()
        before = _read_until(master, prompt, 120)
        assert prompt in before, before.decode(errors="replace")[-2000:]
        assert "━" in before.decode(errors="replace")  # the bar was drawn
        assert before.endswith(prompt), before[-300:]  # nothing drawn after the question
        time.sleep(1.5)  # a live bar refreshes 10 times a second: it would draw here
        ready, _, _ = select.select([master], [], [], 0)
        assert not ready, os.read(master, 4096)
        os.write(master, db.name.encode() + b"\n")
        after = _read_until(master, b"\n", 10)
        assert after.startswith(db.name.encode() + b"\r\n"), after  # the terminal's echo, on the prompt's line
        rest = _read_until(master, b"\x00never", 180)  # to the end: the report
        assert proc.wait(timeout=60) == 0, (before + after + rest).decode(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    seen = (before + after + rest).decode()
    assert re.search(r"\d+ checks passed, 1 warning\b", seen)  # the missing videos: one warning
    assert "warning(s)" not in seen
    assert "still to check by hand:" in seen and "A user can log in (in a browser;" in seen
    assert "below" not in seen  # the CLI has no login check under its checklist


def test_ctrl_c_at_the_question_cancels_at_once_and_says_so_once(direct):  # noqa: F811 - pytest\'s fixture by name
    """Ctrl-C while the CLI asks for the name: the restore is cancelled there and then (it
    used to wait on for a line), and "nothing was changed" is said once."""
    settings, config, backup, db = direct
    dump = backup.path
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", dump.name],
                            stdin=slave, stdout=slave, stderr=slave, cwd=REPO, preexec_fn=_controlling_tty)
    os.close(slave)
    try:
        assert b"to cancel: " in _read_until(master, b"to cancel: ", 120)
        os.write(master, b"\x03")  # the terminal turns it into SIGINT
        rest = _read_until(master, b"\x00never", 20)
        assert proc.wait(timeout=20) == 1
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    seen = rest.decode()
    assert "Nothing was changed: the restore was cancelled at its confirmation." in seen, seen
    assert seen.lower().count("nothing was changed") == 1, seen
    assert "Traceback" not in seen
    # nothing was renamed: no safety copy is reported (it once read "safety copy: None: None holds...")
    assert "safety copy" not in seen and "None" not in seen, seen
    job = json.loads(run_cli(["--config", str(config), "restore", "--follow",
                              jobs.latest_job(settings, "restore")["id"], "--json"]).stdout)
    assert job["status"] == "cancelled" and db.psql("SELECT count(*) FROM users").strip() != "0"
    assert job["safety_copy"] is None, job["safety_copy"]


# ------------------------------------------------------------------ which services are still stopped


@pytest.fixture
def interrupted(stack, tmp_path):
    """A docker-mode restore killed (SIGKILL) in its restore step: every service it stopped is
    still stopped, its runner gone. Rolled back at the end, so the stack runs again."""
    from test_restore import place_dump

    from fovea_tui.engine.backups.pipeline import run_backup

    settings = stack.settings(tmp_path, stack={"health_url": stack.health_url})
    dump = place_dump(run_backup(stack.settings(tmp_path / "src"), offsite=False).path, settings)
    job = start_held_restore(settings, dump.name, "restore")
    data = jobs.load_job(settings, job)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = jobs.load_job(settings, job)
        # killed once every service it stopped is down: those that do not use the database
        # finish their stop beside the restore step (steps.stop_services)
        if next(r for r in data["steps"] if r["name"] == "restore")["status"] == "running" and not any(
                s.running for s in Stack(stack.client, stack.project).services() if s.name in data["facts"]["was_running"]):
            break
        assert data["status"] not in jobs.FINAL, data.get("message")
        time.sleep(0.1)
    os.kill(data["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while jobs.is_alive(jobs.jobs_dir(settings), job) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield settings, job
    engine.rollback_restore(settings, job, detach=False)
    engine.run_inline(settings, job, "rollback")


@pytest.mark.docker
def test_a_service_started_by_hand_is_no_longer_named_as_stopped(stack, interrupted, tmp_path):
    settings, job = interrupted
    data = jobs.load_job(settings, job)
    assert jobs.effective_status(data) == "interrupted"
    stopped = data["facts"]["was_running"]
    assert "redis" in stopped and "backend" in stopped
    words = engine.describe_status(engine.check_services(settings, jobs.load_job(settings, job)))
    assert f"Stopped by the restore and not yet started again: {', '.join(stopped)}." in words

    stack.container("redis").start()  # the operator, by hand
    stack.wait_redis_ready()
    checked = engine.check_services(settings, jobs.load_job(settings, job))
    assert checked["still_stopped"] == [s for s in stopped if s != "redis"]
    words = engine.describe_status(checked)
    assert f"not yet started again: {', '.join(s for s in stopped if s != 'redis')}." in words
    assert "redis" not in words and "--resume" in words

    # the CLI and `status` say the same
    config = save_settings(settings, tmp_path / "cli.toml")
    shown = json.loads(run_cli(["--config", str(config), "restore", "--follow", job, "--json"]).stdout)
    assert "redis" not in shown["message"] and "backend" in shown["message"]
    status = json.loads(run_cli(["--config", str(config), "status", "--json"]).stdout)
    assert "redis" not in json.dumps(status["restore"]["state"])
    assert "backend" in status["restore"]["state"]


@pytest.mark.docker
@asynctest
async def test_the_restore_screen_follows_a_service_started_by_hand(stack, interrupted):
    from support import tui as support_tui
    from textual.widgets import Static

    settings, job = interrupted
    app = support_tui.make_app(settings, watch_stack=True)  # Docker events, as the operator has them
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("R")
        await wait_for(pilot, lambda: bool(app.screen.query("#job-status")))
        status = app.screen.query_one("#job-status", Static)

        def shown() -> str:
            return str(status.render())

        await wait_for(pilot, lambda: job in shown())
        await wait_for(pilot, lambda: "not yet started again" in shown() and "redis" in shown())
        stack.container("redis").start()
        await wait_for(pilot, lambda: "not yet started again" in shown() and "redis" not in shown(), timeout=30)
        assert "backend" in shown()

