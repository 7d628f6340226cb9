"""The app shell: navigation, help, palette, registry, jobs, status updates (Pilot)."""

from __future__ import annotations

import dataclasses
import threading

import pytest
from support.tui import SIZE, asynctest, make_app, settings_in, wait_for

from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.errors import OperationFailed
from fovea_tui.tui import app as app_module
from fovea_tui.tui.app import SCREENS, ScreenSpec
from fovea_tui.tui.sample import SAMPLE_NOW, sample_report
from fovea_tui.tui.screens.base import FoveaScreen


def test_every_registered_screen_loads_and_a_typo_fails_loudly():
    for spec in SCREENS:
        assert issubclass(spec.load(), FoveaScreen), spec
    typo = ScreenSpec("x", "backups", "fovea_tui.tui.screens.backup:BackupsScreen", "Backups", "misspelled")
    with pytest.raises(ModuleNotFoundError):
        typo.load()


@asynctest
async def test_starts_on_dashboard_and_every_screen_key_switches(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        assert app.current_mode == "dashboard"
        for spec in SCREENS:
            await pilot.press(spec.key)
            await pilot.pause()
            assert app.current_mode == spec.name, spec
        await pilot.press("d")
        assert app.current_mode == "dashboard"


@asynctest
async def test_escape_goes_back_through_history(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await pilot.press("s")
        assert app.current_mode == "settings"
        await pilot.press("escape")
        assert app.current_mode == "activity"
        await pilot.press("escape")
        assert app.current_mode == "dashboard"


@asynctest
async def test_help_opens_and_closes(tmp_path):
    from fovea_tui.tui.screens.help import HelpScreen

    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("Static").render())
        for spec in SCREENS:
            assert spec.title in text
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        await pilot.press("question_mark")
        assert not isinstance(app.screen, HelpScreen)


@asynctest
async def test_screen_key_from_help_closes_it_and_switches(tmp_path):
    from fovea_tui.tui.screens.help import HelpScreen

    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.press("a")
        await pilot.pause()
        assert app.current_mode == "activity"
        assert not isinstance(app.screen, HelpScreen)


@asynctest
async def test_command_palette_offers_every_screen_and_action(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        names = [name for name, _help, _cb in app.command_list()]
        for spec in SCREENS:
            assert f"Go to {spec.title}" in names
        assert {"Refresh status", "Help", "Quit"} <= set(names)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"activity")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.current_mode == "activity")


@asynctest
async def test_status_arrives_without_a_keypress(tmp_path):
    calls = []

    def source(settings, now):
        calls.append(now)
        return sample_report(now)

    app = make_app(settings_in(tmp_path), status_source=source, poll_interval=0.05)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: len(calls) >= 3)
        assert app.status is not None
        assert all(now == SAMPLE_NOW for now in calls)  # the injected clock reaches the probe


@asynctest
async def test_a_crashing_probe_is_reported_not_fatal(tmp_path):
    def source(settings, now):
        raise BrokenPipeError("psql went away")

    app = make_app(settings_in(tmp_path), status_source=source)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: bool(app.status_error))
        assert "BrokenPipeError" in app.status_error
        await pilot.pause(1.1)
        line = str(app.screen.query_one("#statusline").render())
        assert "probe failed" in line


# --------------------------------------------------------------------------- jobs


def _gated_job(gate: threading.Event, fail: Exception | None = None):
    def fn(settings, *, progress, cancel, **kwargs):
        progress(ProgressEvent("dump", done=10, total=100, current="users"))
        while not gate.wait(0.01):
            cancel.check()
        progress(ProgressEvent("dump", done=100, total=100, current="claims"))
        if fail:
            raise fail
        return {"path": "/b/fovea-20260602T093000Z.sql.gz", "size": 2048, "duration_s": 1.5, "kw": kwargs}
    return fn


@asynctest
async def test_job_runs_across_screen_switches_and_notifies(tmp_path):
    app = make_app(settings_in(tmp_path))
    gate = threading.Event()
    async with app.run_test(size=SIZE) as pilot:
        job = app.jobs.start("backup", "Back up now", _gated_job(gate), app.settings, offsite=True)
        await wait_for(pilot, lambda: job.event is not None)
        await wait_for(pilot, lambda: bool(app.screen.query(f"#job-{job.id}")))  # the dashboard shows it
        await pilot.press("a")
        await pilot.press("s")
        assert job.running
        assert app.jobs.start("backup", "Back up now", _gated_job(gate), app.settings) is None  # one per kind
        gate.set()
        await wait_for(pilot, lambda: job.state == "finished")
        assert job.result["kw"] == {"offsite": True}
        assert any("fovea-20260602T093000Z.sql.gz" in n.message for n in app._notifications)
        await pilot.press("d")
        await pilot.pause()
        bar = app.screen.query_one(f"#job-{job.id}")
        assert "done" in str(bar.query_one(".job-title").render())


@asynctest
async def test_failed_and_cancelled_jobs(tmp_path):
    app = make_app(settings_in(tmp_path))
    gate = threading.Event()
    async with app.run_test(size=SIZE) as pilot:
        failing = app.jobs.start("sync", "Sync", _gated_job(gate, OperationFailed("store unreachable")),
                                 app.settings)
        gate.set()
        await wait_for(pilot, lambda: failing.state == "failed")
        assert failing.error == "store unreachable"
        # the job's state is set in its thread; the toast comes with the message it posts after
        await wait_for(pilot, lambda: any(n.severity == "error" for n in app._notifications))

        stuck = app.jobs.start("backup", "Backup", _gated_job(threading.Event()), app.settings)
        await wait_for(pilot, lambda: stuck.event is not None)
        await pilot.press("c")  # dashboard: cancel jobs
        await wait_for(pilot, lambda: stuck.state == "cancelled")


@asynctest
async def test_quit_with_a_running_job_asks_first(tmp_path):
    from fovea_tui.tui.widgets.confirm import ConfirmDialog

    app = make_app(settings_in(tmp_path))
    gate = threading.Event()
    async with app.run_test(size=SIZE) as pilot:
        job = app.jobs.start("backup", "Backup", _gated_job(gate), app.settings)
        await wait_for(pilot, lambda: job.event is not None)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert job.running and app.is_running
        await pilot.press("q")
        await pilot.press("y")
        await wait_for(pilot, lambda: job.cancel.cancelled)
    gate.set()


@asynctest
async def test_backup_key_starts_the_engine_backup(tmp_path, monkeypatch):
    seen = {}

    def fake_backup(settings, *, progress, cancel, offsite):
        seen["offsite"] = offsite
        return {"path": "x.sql.gz"}

    monkeypatch.setitem(app_module.JOB_ACTIONS, "backup",
                        dataclasses.replace(app_module.JOB_ACTIONS["backup"], run=fake_backup))
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("B")
        await wait_for(pilot, lambda: seen.get("offsite") is True)
        await wait_for(pilot, lambda: all(not j.running for j in app.jobs.jobs.values()))


def test_launch_is_the_only_textual_entry():
    import fovea_tui.tui.launch as launch

    assert callable(launch.launch_tui)
