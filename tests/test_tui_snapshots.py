"""SVG snapshots (pytest-textual-snapshot) with a frozen clock, no cursor blink, fixed sizes.

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs before committing them.
"""

from __future__ import annotations

from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.tui.jobs import Job
from fovea_tui.tui.sample import SAMPLE_NOW, sample_report
from support.tui import make_app, wait_for


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
