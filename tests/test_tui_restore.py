"""The restore wizard (Pilot and snapshots).

Most tests drive the screen with job state files written here, exactly as the detached runner
writes them, so every wizard step can be reached and frozen; one test runs the whole wizard
against the real test stack.
"""

from __future__ import annotations

import html
import json
import re
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support import tui as support_tui
from support.backup_history import History, make_settings
from support.tui import asynctest, wait_for
from textual.widgets import Button, ContentSwitcher, DataTable, Input, Label, ProgressBar, RichLog, SelectionList

from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.engine.restore.runner import initial_records
from fovea_tui.tui.screens.restore import RestoreScreen

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 17, 2, 0, tzinfo=UTC)
JOB = "restore-20261120T092500Z-0a1b"
DUMP = "fovea-20261119T020000Z.sql.gz"
SAFETY = "fovea-20261120T092512Z-pre-restore.sql.gz"
SIZE = (130, 48)


def settings_for(tmp_path: Path):
    s = make_settings(tmp_path)
    s.source = Path("/etc/fovea-tui/config.toml")
    return s


def make_app(settings, **kw):
    return support_tui.make_app(settings, now=NOW, **kw)


def history(settings) -> None:
    h = History(settings)
    for i in range(3):
        h.add(T0 + timedelta(days=i))
    h.add(T0 + timedelta(days=2, hours=7), safety=True)
    h.add(T0 + timedelta(days=1, hours=5), data=b"")  # 0 bytes: corrupt, never offered


# ------------------------------------------------------------------ state files as the runner writes them

PREFLIGHT = [
    {"name": "dump", "ok": True, "fatal": True, "refuse": True, "data": {},
     "detail": f"{DUMP}: whole gzip stream, pg_dump's completion line, checksum equal to its manifest"},
    {"name": "disk", "ok": True, "fatal": True, "refuse": False, "data": {},
     "detail": "backups dir: 41.2 GiB free, safety dump needs about 64.5 MiB"},
    {"name": "engine", "ok": True, "fatal": True, "refuse": False, "data": {},
     "detail": "Docker engine answers; project fovea: postgres (running), redis (running), backend (running)"},
    {"name": "server", "ok": True, "fatal": True, "refuse": False, "data": {},
     "detail": "target PostgreSQL 16 (from PostgreSQL 16); extensions the dump needs: vector, all available"},
    {"name": "queues", "ok": True, "fatal": False, "refuse": False, "data": {},
     "detail": "1 job active and 3 waiting; stopping the stack interrupts them (users retry them from the UI)"},
    {"name": "migrations", "ok": True, "fatal": False, "refuse": False, "data": {},
     "detail": "1 migration bundled in the backend image that the dump lacks will be applied: "
               "20250401000000_video_checksums"},
]

DETAILS = {
    "choose": f"{DUMP} (local)",
    "preflight": "6 checks passed",
    "safety_dump": f"{SAFETY}: 463 rows in 13 tables, 47244 bytes",
    "confirm": "the operator typed 'fovea'",
    "stop": "stopped redis, backend, frontend, model-service (they will be started again)",
    "prepare": "database fovea dropped and created empty (owner fovea)",
    "restore": f"{DUMP} into fovea: 463 rows in 13 tables in 0.6 s",
    "migrate": "python3 /app/migrate.py succeeded; applied 20250401000000_video_checksums",
    "videos": "all 17 referenced videos present in /var/lib/fovea/videos",
    "start": "started and healthy: redis, backend, frontend, model-service",
    "verify": "4 checks passed",
}

VERIFICATION = {"ok": True, "checklist": list(engine.CHECKLIST), "checks": [
    {"name": "rows", "ok": True, "severity": "error",
     "detail": "13 tables, 463 rows as in the dump; changed by the applied migrations: _prisma_migrations: 6 rows, "
               "the dump has 5"},
    {"name": "migrations", "ok": True, "severity": "error", "detail": "6 migrations applied, none failed"},
    {"name": "health", "ok": True, "severity": "error", "detail": "http://127.0.0.1:3001/api/health answered 200 healthy"},
    {"name": "videos", "ok": False, "severity": "warning",
     "detail": "2 of 20 video files missing from /var/lib/fovea/videos: a.mp4, b.mp4"},
]}


def state(settings, *, upto: str, status: str = "running", running: str | None = None, **extra) -> dict:
    """A job state with steps before `upto` done, `upto` in `running` state."""
    records = initial_records()
    names = [r["name"] for r in records]
    for rec in records[: names.index(upto)]:
        rec.update(status="ok", detail=DETAILS[rec["name"]], duration_s=1.25, output_total=1,
                   output=[f"{rec['name']} output line"])
    if running:
        rec = records[names.index(upto)]
        rec.update(status=running, detail=DETAILS.get(upto, "") if running != "running" else "")
    facts = {"dump": DUMP, "dump_path": f"/var/backups/fovea/{DUMP}", "preflight": PREFLIGHT}
    if names.index(upto) > names.index("safety_dump"):
        facts["safety_dump"] = f"/var/backups/fovea/{SAFETY}"
    data = {"id": JOB, "kind": "restore", "status": status, "phase": "forward", "created_at": "2026-11-20T09:25:00+00:00",
            "updated_at": "2026-11-20T09:25:30+00:00", "pid": 4242, "settings": settings.to_toml_dict(),
            "config_source": None, "params": {"dump": DUMP, "confirmed": False, "database": "fovea"},
            "steps": records, "facts": facts, "message": "", "history": []}
    data.update(extra)
    return data


def write_state(settings, data: dict) -> None:
    directory = ensure_private_dir(jobs.jobs_dir(settings))
    jobs.write_json_atomic(jobs.state_path(directory, data["id"]), {k: v for k, v in data.items() if k != "alive"})


def final_ok(settings) -> dict:
    data = state(settings, upto="verify", status="ok", running="ok", message=f"Restored {DUMP} into database fovea; "
                 f"redis, backend, frontend, model-service running again; safety dump {SAFETY} kept.")
    data["facts"]["verification"] = VERIFICATION
    data["facts"]["was_running"] = ["redis", "backend", "frontend", "model-service"]
    return data


class AliveStates:
    """Make the screen see these jobs as alive (a runner holding the lock) or not."""

    def __init__(self, monkeypatch, alive: bool = True) -> None:
        self.alive = alive
        monkeypatch.setattr(jobs, "is_alive", lambda directory, job_id: self.alive)


def screen_of(app) -> RestoreScreen:
    assert isinstance(app.screen, RestoreScreen), type(app.screen)
    return app.screen


async def open_restore(pilot) -> RestoreScreen:
    await pilot.press("R")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, RestoreScreen))
    await pilot.pause(0.1)
    return screen_of(pilot.app)


# ------------------------------------------------------------------ Pilot: every wizard step


@asynctest
async def test_choose_offers_dumps_but_not_corrupt_ones(tmp_path):
    settings = settings_for(tmp_path)
    history(settings)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        table = screen.query_one("#dumps", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        assert screen.query_one("#switcher", ContentSwitcher).current == "choose-pane"
        names = [str(k.value) for k in table.rows]
        assert len(names) == 4
        assert "fovea-20261118T070000Z.sql.gz" not in names  # the corrupt one
        assert names[0] == "fovea-20261119T090000Z-pre-restore.sql.gz"  # newest first
        # the list has the keys (Down and Enter work at once) and the newest verified regular
        # dump is selected, not the safety dump of what the last restore replaced
        assert pilot.app.focused is table
        assert table.cursor_row == 1 and names[1] == "fovea-20261119T020000Z.sql.gz"
        assert [str(table.get_row_at(i)[1]) for i in range(4)] == ["pre-restore ⚑", "regular", "regular", "regular"]


@asynctest
async def test_start_preflight_confirm_by_typing_the_name(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    history(settings)
    started = {}
    monkeypatch.setattr(engine, "start_restore", _wrap(engine.start_restore, started))
    AliveStates(monkeypatch, alive=True)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        table = screen.query_one("#dumps", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        table.move_cursor(row=1)
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: "id" in started)
        assert started["dump"] == "fovea-20261119T020000Z.sql.gz"
        assert screen.query_one("#switcher", ContentSwitcher).current == "job-pane"
        job_id = started["id"]
        # the runner: pre-flight done, safety dump taken, waiting for the name
        data = jobs.read_state(jobs.jobs_dir(settings), job_id)
        template = state(settings, upto="confirm", status="waiting", running="running", awaiting="confirm")
        data.update(steps=template["steps"], facts=template["facts"], status="waiting", awaiting="confirm")
        write_state(settings, data)
        dialog = await _confirm_dialog(pilot)
        assert "queues: 1 job active" in str(screen.query_one("#preflight").render())
        assert isinstance(pilot.app.focused, Input)  # the name field, nothing else, has the keys
        go = dialog.query_one("#confirm-go", Button)
        assert go.disabled
        await pilot.press(*"fove")
        await pilot.pause(0.05)
        assert go.disabled  # not the name yet
        await pilot.press("enter")
        await pilot.pause(0.05)
        assert jobs.read_control(jobs.jobs_dir(settings), job_id, "confirm") is None
        await pilot.press("a")
        await pilot.pause(0.05)
        assert not go.disabled
        await pilot.press("enter")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert jobs.read_control(jobs.jobs_dir(settings), job_id, "confirm") == "fovea"
        # the focus moves to the steps that now run: the footer shows this screen's keys
        assert pilot.app.focused is screen.query_one("#steps")


async def _confirm_dialog(pilot):
    from fovea_tui.tui.screens.restore import ConfirmRestore

    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmRestore))
    await pilot.pause(0.05)
    return pilot.app.screen


def _wrap(real, record):
    def fake(settings_, dump, **kw):
        record["dump"] = dump
        job_id = real(settings_, dump, detach=False, **kw)
        record["id"] = job_id
        return job_id
    return fake


@asynctest
async def test_cancel_at_confirmation(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    write_state(settings, state(settings, upto="confirm", status="waiting", running="running", awaiting="confirm"))
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await _confirm_dialog(pilot)
        await pilot.click("#confirm-cancel")
        await pilot.pause(0.1)
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "cancel") == ""
        assert isinstance(pilot.app.screen, RestoreScreen)
        assert any("safety dump" in n.message and SAFETY in n.message for n in pilot.app._notifications)


@asynctest
async def test_escape_at_confirmation_cancels_the_waiting_job(tmp_path, monkeypatch):
    """Leaving before confirming must not leave a job waiting in the background (it holds the
    backups lock); the dialog goes, the job is told to cancel, the safety dump is named."""
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    write_state(settings, state(settings, upto="confirm", status="waiting", running="running", awaiting="confirm"))
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await _confirm_dialog(pilot)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RestoreScreen))
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "cancel") == ""
        await pilot.pause(0.6)  # polls go on: the dialog does not come back for the cancelled job
        assert isinstance(pilot.app.screen, RestoreScreen)


@asynctest
async def test_leaving_an_unconfirmed_restore_asks_and_cancels_it(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    write_state(settings, state(settings, upto="safety_dump", running="running"))  # before the question
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        await pilot.press("d")
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("enter")  # the default button is Stay
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "cancel") is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: pilot.app.current_mode == "dashboard")
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "cancel") == ""


@asynctest
async def test_escape_while_a_confirmed_restore_runs_asks_and_leaves_it_running(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    data = state(settings, upto="restore", running="running")
    data["params"]["confirmed"] = True
    write_state(settings, data)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        assert pilot.app.focused is screen.query_one("#steps")
        await pilot.press("escape")
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmDialog))
        assert "keeps running" in str(pilot.app.screen.query_one(".question").render())
        await pilot.press("y")
        await wait_for(pilot, lambda: pilot.app.current_mode == "dashboard")
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "cancel") is None
        await pilot.press("R")  # a mode switch without a question: the job is confirmed, it runs on
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        await pilot.press("d")
        await wait_for(pilot, lambda: pilot.app.current_mode == "dashboard")


@asynctest
async def test_live_steps_progress_and_streamed_output(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    data = state(settings, upto="restore", running="running")
    rec = data["steps"][6]
    rec.update(progress={"done": 30_000, "total": 100_000, "unit": "bytes"}, output_total=2,
               output=["SET", "CREATE EXTENSION"])
    write_state(settings, data)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        bar = screen.query_one("#progress", ProgressBar)
        await wait_for(pilot, lambda: not bar.has_class("hidden"))
        assert bar.progress == 30_000 and bar.total == 100_000
        steps = str(screen.query_one("#steps").render())
        assert "Restore the dump" in steps and "stopped redis, backend" in steps
        log = screen.query_one("#output", RichLog)
        assert any("CREATE EXTENSION" in line.text for line in log.lines)
        # the runner moves on: the bar goes, more output streams in
        rec.update(status="ok", detail=DETAILS["restore"], output_total=3, output=["SET", "CREATE EXTENSION", "COPY 12"])
        data["steps"][7].update(status="running", output_total=1, output=["Applying migration `x`"])
        write_state(settings, data)
        await wait_for(pilot, lambda: bar.has_class("hidden"))
        await wait_for(pilot, lambda: any("Applying migration" in line.text for line in log.lines))
        assert sum("CREATE EXTENSION" in line.text for line in log.lines) == 1  # never twice


@asynctest
async def test_final_report_checklist_and_login_check(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    server, url = _login_server()
    settings.stack.health_url = url + "/api/health"
    AliveStates(monkeypatch, alive=False)
    write_state(settings, final_ok(settings))
    app = make_app(settings)
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await open_restore(pilot)
            report = screen.query_one("#report-box")
            await wait_for(pilot, lambda: not report.has_class("hidden"))
            text = str(screen.query_one("#verification").render())
            assert "rows" in text and "videos" in text and "missing" in text
            checklist = screen.query_one("#checklist", SelectionList)
            assert checklist.option_count == len(engine.CHECKLIST)
            checklist.select(0)
            assert checklist.selected == [0]
            assert not screen.query_one("#new", Button).has_class("hidden")
            assert screen.query_one("#resume", Button).has_class("hidden")
            screen.query_one("#login-user", Input).value = "admin"
            screen.query_one("#login-pass", Input).value = "wrong"
            screen.query_one("#login-check", Button).press()
            result = screen.query_one("#login-result")
            await wait_for(pilot, lambda: "refused" in str(result.render()))
            assert screen.query_one("#login-pass", Input).value == ""  # never kept
            screen.query_one("#login-pass", Input).value = "s3cret"
            screen.query_one("#login-check", Button).press()
            await wait_for(pilot, lambda: "logged in" in str(result.render()))
            assert server.seen == [("admin", "wrong"), ("admin", "s3cret")]
            # nothing of the password lands in the job's state file
            assert "s3cret" not in jobs.state_path(jobs.jobs_dir(settings), JOB).read_text()
            await pilot.press("n")
            await wait_for(pilot, lambda: screen.query_one("#switcher", ContentSwitcher).current == "choose-pane")
            assert pilot.app.focused is screen.query_one("#dumps")  # Down and Enter work at once
    finally:
        server.shutdown()


def _login_server():
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self.server.seen.append((body["username"], body["password"]))
            ok = body["password"] == "s3cret"
            self.send_response(200 if ok else 401)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@asynctest
async def test_interrupted_job_offers_resume_and_rollback(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=False)
    data = state(settings, upto="restore", running="running")
    data["facts"].update(database_dropped=True, was_running=["redis", "backend"])
    write_state(settings, data)
    calls = []
    monkeypatch.setattr(engine, "resume_restore", lambda s, j, **kw: calls.append(("resume", j, kw)) or j)
    monkeypatch.setattr(engine, "rollback_restore", lambda s, j, **kw: calls.append(("rollback", j)) or j)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        resume = screen.query_one("#resume", Button)
        await wait_for(pilot, lambda: not resume.has_class("hidden"))
        status = str(screen.query_one("#job-status").render())
        assert "INTERRUPTED" in status and "--resume" in status and "empty or partly restored" in status
        keys = {key for key, b in pilot.app.active_bindings.items() if b.enabled and b.binding.show}
        assert {"u", "z", "n"} <= keys  # Resume and Roll back have keys, shown in the footer
        await pilot.press("u")
        await pilot.pause(0.1)
        assert calls == [("resume", JOB, {"confirmed": True})]
        await pilot.press("z")
        await pilot.pause(0.2)
        question = pilot.app.screen.question  # what this job's rollback does, from the engine
        assert question == "Roll back? " + engine.rollback_plan(data), question
        assert "then start redis, backend again" in question
        await pilot.click("#confirm")  # the ConfirmDialog's button
        await pilot.pause(0.1)
        assert calls[-1] == ("rollback", JOB)


def _newer(settings) -> dict:
    """A restore started after JOB (from the CLI, say), at its restore step."""
    data = state(settings, upto="restore", running="running")
    data.update(id="restore-20261120T101500Z-9c9d", created_at="2026-11-20T10:15:00+00:00")
    return data


@asynctest
async def test_reattaches_to_the_latest_restore_on_launch_and_never_leaves_it_at_work(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    write_state(settings, state(settings, upto="stop", running="running"))
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        assert screen.query_one("#switcher", ContentSwitcher).current == "job-pane"
        assert screen.job_id == JOB
        assert "Stop the stack" in str(screen.query_one("#steps").render())
        # a newer restore (from the CLI, say) does not take the screen from one at work
        write_state(settings, _newer(settings))

        def banner_on_the_newer() -> bool:
            app.refresh_restore()  # (a no-op while the launch's collection still runs)
            return app.restore.job == _newer(settings)["id"]

        await wait_for(pilot, banner_on_the_newer)
        await pilot.pause(0.3)
        assert screen.job_id == JOB


@asynctest
async def test_a_newer_restore_is_shown_once_the_one_shown_has_ended(tmp_path, monkeypatch):
    """Seen at 80x24: a restore the CLI started (then interrupted and rolled back from the
    banner) never showed; the screen kept the older, finished one."""
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=False)
    write_state(settings, final_ok(settings))
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        assert screen.job_id == JOB
        newer = _newer(settings)
        write_state(settings, newer)
        app.refresh_restore()
        await wait_for(pilot, lambda: screen.job_id == newer["id"])
        await wait_for(pilot, lambda: "Restore the dump" in str(screen.query_one("#steps").render()))


# ------------------------------------------------------------------ snapshots (frozen clock)


def _drawn_text(app) -> str:
    """What the screen shows now, as plain text (from the same export the snapshot takes)."""
    svg = app.export_screenshot()
    cells = re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)
    return "".join(html.unescape(re.sub(r"<[^>]+>", "", cell)) for cell in cells).replace("\xa0", " ")


def _snap(settings, setup=None):
    app = make_app(settings)

    async def run_before(pilot):
        if setup:
            setup()
        await pilot.pause()  # the app is up before the operator presses a key
        await pilot.press("R")
        await pilot.pause(0.5)
        screen = pilot.app.screen
        if isinstance(screen, RestoreScreen) and screen.query_one("#switcher", ContentSwitcher).current == "choose-pane":
            table = screen.query_one("#dumps", DataTable)
            await wait_for(pilot, lambda: table.row_count > 0)
            # capture only once the drawn screen shows the first row (time, then its kind)
            first = [str(cell) for cell in table.get_row_at(0)[:3]]
            await wait_for(pilot, lambda: all(cell in _drawn_text(pilot.app) for cell in first))
        await pilot.pause(0.3)

    return app, run_before


SNAP_SIZES = [(80, 24), (120, 36)]


def _interrupted(settings) -> dict:
    data = state(settings, upto="restore", running="running")
    data["facts"].update(database_dropped=True, was_running=["redis", "backend"])
    data["params"]["confirmed"] = True
    return data


def _restoring(settings) -> dict:
    data = state(settings, upto="restore", running="running")
    data["params"]["confirmed"] = True
    data["steps"][6].update(progress={"done": 47_000, "total": 100_000, "unit": "bytes"})
    return data


def _rolled_back(settings) -> dict:
    data = state(settings, upto="restore", status="rolled_back", running="failed")
    data["steps"][6]["detail"] = ('psql stopped at an SQL error (exit 3): ERROR:  relation "no_such_table" does '
                                  "not exist; the transaction was rolled back")
    for i, detail in ((6, f"database fovea restored from the safety dump {SAFETY}: 463 rows"),
                      (5, "database already restored from the safety dump"),
                      (4, "started again: redis, backend, frontend, model-service")):
        data["steps"][i]["undo"] = {"status": "ok", "detail": detail, "duration_s": 2.0}
    data["phase"] = "rollback"
    data["message"] = ("The restore did not complete (step restore failed). Rolled back: the database is back to "
                       f"the safety dump {SAFETY}, and redis, backend, frontend, model-service are running again. "
                       "The install is as it was before the restore.")
    return data


# every step of the wizard: (the job's state, is its runner alive)
WIZARD_STEPS = {
    "preflight": (lambda s: state(s, upto="preflight", running="running"), True),
    "confirm": (lambda s: state(s, upto="confirm", status="waiting", running="running", awaiting="confirm"), True),
    "restoring": (_restoring, True),
    "report": (final_ok, False),
    "rolled_back": (_rolled_back, False),
    "interrupted": (_interrupted, False),
}


@pytest.mark.parametrize("size", SNAP_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_choose(snap_compare, tmp_path, size):
    settings = settings_for(tmp_path)
    history(settings)
    app, run_before = _snap(settings)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SNAP_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("step", list(WIZARD_STEPS))
def test_snapshot_wizard_step(snap_compare, tmp_path, monkeypatch, step, size):
    settings = settings_for(tmp_path)
    make_state, alive = WIZARD_STEPS[step]
    AliveStates(monkeypatch, alive=alive)
    write_state(settings, make_state(settings))
    app, run_before = _snap(settings)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


# ------------------------------------------------------------------ the whole wizard against the stack


@pytest.mark.docker
@asynctest
async def test_wizard_end_to_end_against_the_stack(stack, tmp_path):
    from fovea_tui.engine.backups.pipeline import run_backup

    settings = stack.settings(tmp_path)
    settings.source = Path("/etc/fovea-tui/config.toml")
    backup = run_backup(settings, offsite=False)
    stack.psql("CREATE TABLE restore_marker (id int)")
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        table = screen.query_one("#dumps", DataTable)
        await wait_for(pilot, lambda: table.row_count > 0)
        assert str(next(iter(table.rows)).value) == backup.name
        assert pilot.app.focused is table  # the list has the keys from the start
        await pilot.press("enter")
        from fovea_tui.tui.screens.restore import ConfirmRestore

        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmRestore), timeout=90)
        assert "migrations" in str(screen.query_one("#preflight").render())
        dialog = pilot.app.screen
        await wait_for(pilot, lambda: bool(dialog.query("#confirm-name")))  # pushed, then composed
        confirm = dialog.query_one("#confirm-name", Input)
        await wait_for(pilot, lambda: confirm.has_focus)  # the operator types the name straight away
        await pilot.press(*"fovea")
        assert confirm.value == "fovea"
        await pilot.pause(0.05)
        await pilot.click("#confirm-go")
        await wait_for(pilot, lambda: pilot.app.screen is screen)
        await wait_for(pilot, lambda: jobs.effective_status(screen.data) in jobs.FINAL, timeout=180)
        assert jobs.effective_status(screen.data) == "ok", screen.data.get("message")
        await wait_for(pilot, lambda: not screen.query_one("#report-box").has_class("hidden"))
        assert "health" in str(screen.query_one("#verification").render())
    assert stack.psql("SELECT to_regclass('public.restore_marker') IS NULL").strip() == "t"


@asynctest
async def test_resuming_a_job_stopped_before_its_confirmation_asks_for_the_name_again(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=False)
    write_state(settings, state(settings, upto="safety_dump", running="running"))  # killed before the question
    calls = []
    monkeypatch.setattr(engine, "resume_restore", lambda s, j, **kw: calls.append(kw) or j)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        await wait_for(pilot, lambda: not screen.query_one("#resume", Button).has_class("hidden"))
        await pilot.press("u")
        await pilot.pause(0.1)
    assert calls == [{"confirmed": False}]


@asynctest
async def test_missing_videos_need_the_typed_acceptance(tmp_path, monkeypatch):
    """The wizard shows which videos are missing and what depends on them; only the exact
    phrase enables 'Start anyway', and it reaches the runner as the acceptance."""
    from fovea_tui.tui.screens.restore import ConfirmRestore

    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=True)
    data = state(settings, upto="videos", status="waiting", running="running", awaiting="missing_videos")
    data["facts"]["videos"] = {"storage": "/var/lib/fovea/videos", "target": "s3://fovea-videos/volume/",
                               "referenced": 20, "missing": 3, "missing_keys": ["a.mp4", "b.mp4", "c.mp4"],
                               "pulled": 0, "in_target": 0, "reconcilers": ["backend"],
                               "annotations": 30, "summaries": 6, "claims": 14}
    write_state(settings, data)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmRestore))
        dialog = pilot.app.screen
        question = str(dialog.query_one("#confirm-question", Label).render())
        assert "3 of 20 referenced videos are missing" in question and "a.mp4, b.mp4, c.mp4" in question
        assert "30 annotations, 6 summaries and 14 claims" in question and "'delete 3'" in question
        go = dialog.query_one("#confirm-go", Button)
        field = dialog.query_one("#confirm-name", Input)
        field.focus()
        for text, enabled in (("fovea", False), ("delete 2", False), ("delete 3", True)):
            field.value = text
            await pilot.pause(0.05)
            assert go.disabled is not enabled, text
        await pilot.click("#confirm-go")
        await pilot.pause(0.1)
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "accept") == "delete 3"
        assert jobs.read_control(jobs.jobs_dir(settings), JOB, "confirm") is None
