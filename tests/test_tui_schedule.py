"""The schedule panel on the settings screen (Pilot): the diff is confirmed before anything is
written; no means nothing changes; files go to the overridden dirs, never the real system."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.tui import asynctest, make_app, settings_in, wait_for
from textual.widgets import Input, Static, Switch

from fovea_tui.engine.ops import schedule
from fovea_tui.engine.ops.nightly import NightlyResult, StepResult, record
from fovea_tui.tui.widgets.confirm import ConfirmDialog
from fovea_tui.tui.widgets.schedule_panel import SchedulePanel

SIZE = (130, 40)


def app_with_config(tmp_path):
    """The app on default settings whose config file exists (empty)."""
    settings = settings_in(tmp_path)
    settings.source.write_text("")
    return make_app(settings)


async def open_panel(app, pilot) -> SchedulePanel:
    await pilot.press("s")
    await wait_for(pilot, lambda: app.current_mode == "settings" and bool(app.screen.query(SchedulePanel)))
    return app.screen.query_one(SchedulePanel)


def dialog(app) -> ConfirmDialog | None:
    return app.screen if isinstance(app.screen, ConfirmDialog) else None


def dialog_text(d: ConfirmDialog) -> str:
    return d.question + "\n" + d.diff


@asynctest
async def test_switch_on_shows_the_diff_and_no_writes_nothing(schedule_dirs, tmp_path):
    sd, _ = schedule_dirs
    app = app_with_config(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(app, pilot)
        assert "not installed" in str(panel.query_one("#schedule-state", Static).render())
        panel.query_one("#schedule-at", Input).value = "04:20"
        panel.query_one("#schedule-enabled", Switch).value = True
        await wait_for(pilot, lambda: dialog(app) is not None)
        text = dialog_text(dialog(app))
        assert "systemd, daily at 04:20" in text
        assert "+OnCalendar=*-*-* 04:20:00" in text and "+Persistent=true" in text
        assert "run-nightly" in text
        await pilot.press("n")
        await wait_for(pilot, lambda: dialog(app) is None)
        await pilot.pause()
        assert not sd.exists()
        assert panel.query_one("#schedule-enabled", Switch).value is False  # sprang back


@asynctest
async def test_install_then_remove_through_the_dialog(schedule_dirs, tmp_path):
    sd, _ = schedule_dirs
    app = app_with_config(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(app, pilot)
        panel.query_one("#schedule-at", Input).value = "01:45"
        panel.query_one("#schedule-enabled", Switch).value = True
        await wait_for(pilot, lambda: dialog(app) is not None)
        await pilot.press("y")
        await wait_for(pilot, lambda: (sd / schedule.TIMER_NAME).exists())
        assert "OnCalendar=*-*-* 01:45:00" in (sd / schedule.TIMER_NAME).read_text()
        await wait_for(pilot, lambda: "installed as systemd" in str(panel.query_one("#schedule-state").render()))
        assert "next run" in str(panel.query_one("#schedule-state").render())

        # a new time: Apply shows only the changed lines
        panel.query_one("#schedule-at", Input).value = "02:10"
        panel.query_one("#schedule-apply").press()
        await wait_for(pilot, lambda: dialog(app) is not None)
        text = dialog(app).diff
        assert "-OnCalendar=*-*-* 01:45:00" in text and "+OnCalendar=*-*-* 02:10:00" in text
        assert "ExecStart" not in text  # unchanged lines stay out of the diff (beyond context)
        await pilot.press("y")
        await wait_for(pilot, lambda: "02:10:00" in (sd / schedule.TIMER_NAME).read_text())

        # off: the removal diff, then the files are gone
        panel.query_one("#schedule-enabled", Switch).value = False
        await wait_for(pilot, lambda: dialog(app) is not None)
        assert "-OnCalendar=*-*-* 02:10:00" in dialog(app).diff
        await pilot.press("y")
        await wait_for(pilot, lambda: not (sd / schedule.TIMER_NAME).exists())
        assert not (sd / schedule.SERVICE_NAME).exists()


@asynctest
async def test_cron_choice_and_a_bad_time(schedule_dirs, tmp_path):
    sd, cron = schedule_dirs
    app = app_with_config(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(app, pilot)
        panel.query_one("#schedule-at", Input).value = "25:99"
        panel.query_one("#schedule-apply").press()
        await pilot.pause(0.1)
        assert dialog(app) is None and not sd.exists() and not cron.exists()
        panel.query_one("#schedule-cron", Switch).value = True
        panel.query_one("#schedule-at", Input).value = "03:00"
        panel.query_one("#schedule-apply").press()
        await wait_for(pilot, lambda: dialog(app) is not None)
        assert "as cron" in dialog(app).question
        await pilot.press("y")
        await wait_for(pilot, lambda: (cron / schedule.CRON_FILE_NAME).exists())
        assert "0 3 * * *" in (cron / schedule.CRON_FILE_NAME).read_text()
        assert not sd.exists()


@asynctest
async def test_a_failed_last_run_is_shown(schedule_dirs, tmp_path):
    app = app_with_config(tmp_path)
    ended = datetime.now(UTC) - timedelta(hours=3)
    result = NightlyResult(started_at=ended - timedelta(minutes=2), finished_at=ended)
    result.steps = [StepResult("backup", "failed", "database unreachable"), StepResult("prune", "skipped"),
                    StepResult("sync", "ok")]
    record(app.settings, result)
    async with app.run_test(size=SIZE) as pilot:
        panel = await open_panel(app, pilot)
        last = panel.query_one("#schedule-last", Static)
        assert "failed" in str(last.render()) and "backup failed" in str(last.render())
        assert last.has_class("-failed")
