"""End to end: the real `fovea-tui demo` binary in a real terminal (tmux)."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from support.services import unavailable
from test_restore import fixture_dump, place_dump  # noqa: F401

from fovea_tui.config import save_settings
from fovea_tui.engine.infra import jobs

REPO = Path(__file__).resolve().parent.parent


def _command() -> list[str]:
    binary = Path(sys.executable).with_name("fovea-tui")
    return [str(binary)] if binary.exists() else [sys.executable, "-m", "fovea_tui"]


class Tmux:
    def __init__(self, width: int, height: int, command: str) -> None:
        self.name = f"fovea-e2e-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height),
                        command], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name], capture_output=True,
                              text=True).stdout

    def send(self, *keys: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, *keys], check=True)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.25)
        raise AssertionError(f"{text!r} never appeared; the terminal shows:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.mark.timeout(240)
def test_demo_binary_shows_the_demo_database(tmp_path):
    if shutil.which("tmux") is None:
        unavailable("tmux is not installed")
    pytest.importorskip("pgserver")
    demo_dir = tmp_path / "demo"
    env = {"FOVEA_TUI_DEMO_DIR": str(demo_dir), "PYTHONPATH": str(REPO), "TERM": "xterm-256color",
           "HOME": os.environ.get("HOME", str(tmp_path)), "PATH": os.environ.get("PATH", "")}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = " ".join(shlex.quote(c) for c in _command())
    term = Tmux(120, 36, f"cd {shlex.quote(str(tmp_path))} && env {exports} {cmd} demo; "
                          f"echo FOVEA-EXITED-$?; sleep 60")
    try:
        screen = term.wait_for("Application database", timeout=120)
        screen = term.wait_for("tables ·", timeout=60)  # the database card filled from the live database
        assert "rows" in screen and "FINE" in screen
        assert "not managed" in screen               # no Docker in the demo
        assert "Back up now" in screen                # footer
        term.send("?")
        term.wait_for("Every piece of state in the runbook")  # the help overlay (its top; it scrolls)
        term.send("a")
        term.wait_for("audit.jsonl")
        term.send("d")
        term.wait_for("Application database")
        term.send("q")
        term.wait_for("FOVEA-EXITED-0", timeout=30)
    finally:
        term.kill()
    assert (demo_dir / "fovea-tui.toml").exists()


@pytest.mark.docker
@pytest.mark.timeout(400)
def test_restore_escape_quit_and_the_lock_in_a_real_terminal(stack, fixture_dump, tmp_path):  # noqa: F811
    """At 80x24 on the compose-labelled stack: escape at the confirmation cancels the waiting
    restore and frees the backups lock (B then backs up); a confirmed restore that runs (its
    stop step waits for a SIGTERM-deaf frontend, with the countdown on screen) is not left by
    escape or q without a question, and q prints the job and how to follow it."""
    if shutil.which("tmux") is None:
        unavailable("tmux is not installed")
    settings = stack.settings(tmp_path)
    # the frontend declared a database client: the stop step waits for it (the others stop
    # beside the restore, steps.stop_services), so its countdown is on screen for a minute
    settings = dataclasses.replace(settings, stack=dataclasses.replace(settings.stack, database_clients=["frontend"]))
    place_dump(fixture_dump, settings)
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    env = {"PYTHONPATH": str(REPO), "TERM": "xterm-256color",
           "HOME": os.environ.get("HOME", str(tmp_path)), "PATH": os.environ.get("PATH", "")}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    cmd = " ".join(shlex.quote(c) for c in _command())
    term = Tmux(80, 24, f"cd {shlex.quote(str(tmp_path))} && env {exports} {cmd} --config {shlex.quote(str(config))}; "
                        f"echo FOVEA-EXITED-$?; sleep 60")
    with stack.changed("frontend", stop_timeout=60):  # the stop step holds for its grace period
        try:
            term.wait_for("tables ·", timeout=120)
            term.send("R")
            term.wait_for("Check and restore")
            term.send("Enter")
            term.wait_for("Type 'fovea' to go ahead", timeout=60)
            term.send("Escape")
            screen = term.wait_for("CANCELLED")
            # the database is renamed aside only after the confirmation: nothing was touched
            assert re.search(r"Nothing\s+was\s+changed", screen), screen
            assert "pre-restore.sql.gz" not in screen
            term.send("d")
            term.wait_for("Back up now")
            term.send("B")
            screen = term.wait_for("Back up now: done", timeout=60)  # the lock was released
            assert "lock is held" not in screen
            term.send("R")
            term.wait_for("New restore")
            term.send("n")
            term.wait_for("Check and restore")
            term.send("Enter")
            term.wait_for("Type 'fovea' to go ahead", timeout=60)
            term.send("fovea")
            term.send("Enter")
            screen = term.wait_for("SIGKILL in", timeout=90)  # the stop step's countdown
            assert "frontend: stopping" in screen
            term.send("Escape")
            term.wait_for("The restore is running")  # the question's title (its text wraps)
            term.send("n")  # stay
            time.sleep(0.5)
            term.send("q")
            term.wait_for("Restore running")
            term.send("y")
            screen = term.wait_for("FOVEA-EXITED-0", timeout=30)
            assert "fovea-tui restore --follow restore-" in screen and "still running" in screen
        finally:
            term.kill()
        # the runner carries on after the TUI quit: let it finish before the stack is reused
        job_id = re.search(r"--follow (restore-\S+)", screen).group(1)
        deadline = time.monotonic() + 240
        while jobs.effective_status(jobs.load_job(settings, job_id)) not in jobs.FINAL:
            assert time.monotonic() < deadline, "the restore never ended"
            time.sleep(1)
        assert jobs.effective_status(jobs.load_job(settings, job_id)) == "ok"
