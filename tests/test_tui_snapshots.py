"""SVG snapshots (pytest-textual-snapshot) with a frozen clock, no cursor blink, fixed sizes.

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

from support.tui import make_app, wait_for

from fovea_tui.config import Settings
from fovea_tui.engine.ops.status import RestoreSection, judge
from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.tui.jobs import Job
from fovea_tui.tui.sample import SAMPLE_NOW, sample_report


def snapshot_app(healthy: bool = True):
    settings = Settings()
    settings.backups.dir = "/nonexistent/fovea-snapshots/backups"
    settings.source = Path("/etc/fovea-tui/config.toml")
    return make_app(settings, status_source=lambda s, now: sample_report(now, healthy=healthy))


async def _ready(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.status is not None)
    await pilot.pause(0.2)


def test_dashboard_120x36(snap_compare):
    assert snap_compare(snapshot_app(healthy=False), terminal_size=(120, 36), run_before=_ready)


def test_dashboard_80x24(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(80, 24), run_before=_ready)


def test_dashboard_200x60(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(200, 60), run_before=_ready)


def test_dashboard_with_a_running_job(snap_compare):
    app = snapshot_app()

    async def run_before(pilot):
        await _ready(pilot)
        now = SAMPLE_NOW.timestamp()
        job = Job(id=7, kind="backup", title="Back up now", started=now - 42)
        job.event = ProgressEvent("dump", done=30 * 1024 * 1024, total=100 * 1024 * 1024, current="annotations")
        app.jobs.jobs[job.id] = job
        app.jobs_changed.publish(job)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


def test_help_120x36(snap_compare):
    assert snap_compare(snapshot_app(), terminal_size=(120, 36), press=["question_mark"], run_before=_ready)


def test_settings_120x36(snap_compare):
    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("s")
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=(120, 36), run_before=run_before)


def test_settings_diff_dialog(snap_compare):
    from textual.widgets import Input

    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("s")
        await pilot.pause(0.3)
        pilot.app.screen.query_one("#f-retention--keep_daily", Input).value = "30"
        pilot.app.screen.query_one("#f-backups--offsite", Input).value = "s3://fovea-backups/db/"
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)

    assert snap_compare(snapshot_app(), terminal_size=(120, 36), run_before=run_before)


def _interrupted_restore(report):
    """The sample install after a restore's runner died while it loaded the dump."""
    job = "restore-20260602T091000Z-a1b2"
    report.restore = RestoreSection(
        job=job, status="interrupted", phase="forward", step="restore", step_title="Restore the dump",
        dump="fovea-20260602T021500Z.sql.gz", install_touched=True, can_resume=True, can_rollback=True,
        message="The restore runner stopped during step restore (it crashed or was killed). The database is in "
                "an unknown state (empty or partly restored).",
        state="The database is in an unknown state (empty or partly restored).",
        next=[f"fovea-tui restore --resume {job}", f"fovea-tui restore --rollback {job}"])
    report.database.tables, report.database.rows = 0, 0
    return judge(report)


def test_restore_banner_and_failing_database_120x36(snap_compare):
    settings = Settings()
    settings.backups.dir = "/nonexistent/fovea-snapshots/backups"
    settings.source = Path("/etc/fovea-tui/config.toml")
    app = make_app(settings, status_source=lambda s, now: _interrupted_restore(sample_report(now)))
    assert snap_compare(app, terminal_size=(120, 36), run_before=_ready)


def test_restore_banner_80x24_on_the_activity_screen(snap_compare):
    settings = Settings()
    settings.backups.dir = "/nonexistent/fovea-snapshots/backups"
    settings.source = Path("/etc/fovea-tui/config.toml")
    app = make_app(settings, status_source=lambda s, now: _interrupted_restore(sample_report(now)))

    async def run_before(pilot):
        await _ready(pilot)
        await pilot.press("a")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_failing_database_card_120x36(snap_compare):
    def source(_settings, now):
        report = sample_report(now)
        report.database.rows = 1_204  # the newest dump holds 181,900
        return judge(report)

    assert snap_compare(make_app(snapshot_app().settings, status_source=source), terminal_size=(120, 36),
                        run_before=_ready)
