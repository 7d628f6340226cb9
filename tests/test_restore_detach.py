"""The CLI's runner is a fork of the CLI (the engine is imported already: less time with the
application down). It must still be what the exec'd runner was: in its own session, so a
dropped SSH connection (SIGHUP to the terminal's process group, then the CLI killed) does not
stop a restore half-way; holding none of the CLI's descriptors, so whoever reads the CLI's
output sees its end when the CLI ends; writing its output to the job's log."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

from support.hold import HOLD_DIR
from test_restore_integrity import REPO, direct  # noqa: F401 - pytest's fixture by name

from fovea_tui.engine.infra import jobs


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_dropped_terminal_does_not_stop_the_forked_runner(direct):  # noqa: F811 - pytest's fixture by name
    settings, config, backup, db = direct
    db.psql("CREATE TABLE written_after_the_backup (id int);")
    env = {**os.environ, "FOVEA_TEST_HOLD_STEP": "restore:4",
           "PYTHONPATH": os.pathsep.join(filter(None, [HOLD_DIR, os.environ.get("PYTHONPATH")]))}
    # its own process group, as a login shell's job: the drop signals the whole group
    cli = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", backup.name, "--yes"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env,
                           start_new_session=True)
    try:
        def held() -> dict | None:
            data = jobs.latest_job(settings, "restore")
            steps = {s["name"]: s["status"] for s in (data or {}).get("steps", [])}
            return data if steps.get("restore") == "running" else None

        data = _wait_for(held, 120, "the restore step to run")
        runner = int(data["pid"])
        assert runner != cli.pid
        assert os.getsid(runner) == runner != os.getsid(cli.pid)  # a session of its own
        os.killpg(cli.pid, signal.SIGHUP)
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(timeout=10)
        # the CLI's output ends with the CLI: the runner holds no copy of its pipes
        assert select.select([cli.stdout], [], [], 5)[0], "the CLI's stdout stayed open after it died"
        cli.stdout.read()
        assert jobs.is_alive(jobs.jobs_dir(settings), data["id"])  # the restore goes on
    finally:
        if cli.poll() is None:
            cli.kill()
        cli.stdout.close()
        cli.stderr.close()
    _wait_for(lambda: not jobs.is_alive(jobs.jobs_dir(settings), data["id"]), 180,
              "the runner to end (the restore, then the safety dump of the renamed database)")
    done = jobs.load_job(settings, data["id"])
    assert done["status"] == "ok", done.get("message")
    assert done["facts"]["safety_copy"]["status"] == "verified", done["facts"]["safety_copy"]
    # pre-flight took the read of the dump the CLI began before it forked the runner
    dump_check = next(c for c in done["facts"]["preflight"] if c["name"] == "dump")
    assert dump_check["ok"] and dump_check["data"]["read_ahead"] is True, dump_check
    assert "written_after_the_backup" not in db.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public';")
    log = (jobs.jobs_dir(settings) / f"{data['id']}.log").read_text()
    assert "[prepare] renaming database" in log and f"{data['id']}: ok" in log  # the runner's lines went to the job's log
    follow = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", "--follow",
                             data["id"], "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert follow.returncode == 0 and json.loads(follow.stdout)["status"] == "ok", follow.stderr
