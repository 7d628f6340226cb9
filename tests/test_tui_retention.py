"""The retention screen (Pilot and snapshots): buckets, preview, prune behind a confirmation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import tui as support_tui
from support.backup_history import History, make_settings
from support.tui import asynctest, settle, wait_for
from textual.widgets import DataTable, Static

from fovea_tui.engine.backups.prune import build_plan
from fovea_tui.engine.infra import audit
from fovea_tui.tui.screens import backups as backups_screen
from fovea_tui.tui.screens.retention import RetentionScreen
from fovea_tui.tui.widgets.bucket_grid import BucketGrid
from fovea_tui.tui.widgets.confirm import ConfirmDialog

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)
SIZE = (160, 45)


def make_app(settings, **kw):
    return support_tui.make_app(settings, now=NOW, **kw)


def history(settings, days=24):
    h = History(settings)
    h.daily(T0, days)
    h.add(T0 + timedelta(days=3, hours=7), safety=True)
    h.add(T0 + timedelta(days=10, hours=5), data=b"")
    return h


def grid_text(grid: BucketGrid) -> str:
    from rich.console import Console

    from fovea_tui.tui.widgets.bucket_grid import render_grid

    console = Console(width=60, record=True, file=open("/dev/null", "w"))
    console.print(render_grid(grid.plan))
    return console.export_text()


async def open_retention(pilot, app) -> RetentionScreen:
    await pilot.press("r")
    await wait_for(pilot, lambda: isinstance(app.screen, RetentionScreen))
    await settle(pilot)
    return app.screen


@asynctest
async def test_buckets_preview_and_prune_after_confirmation(tmp_path, monkeypatch):
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0)
    settings = make_settings(tmp_path, keep_daily=7, keep_weekly=4)
    history(settings)
    expected = build_plan(settings)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_retention(pilot, app)
        grid = grid_text(screen.query_one(BucketGrid))
        assert "daily  7 of 7 slots filled" in grid and "weekly  4 of 4 slots filled" in grid
        assert "10-24" in grid and "26-W43" in grid
        table = screen.query_one("#preview", DataTable)
        assert table.row_count == 26
        forget = [str(table.get_row(k)[2]) for k in table.rows if str(table.get_row(k)[0]) == "forget"]
        assert sorted(forget) == sorted(d.candidate.name for d in expected.plan.forget)
        files = str(screen.query_one("#files", Static).render())
        assert "prune would delete" in files

        # cancel first: nothing happens
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("n")
        await pilot.pause()
        assert len(list(settings.backups_dir.glob("*.sql.gz"))) == 26

        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await settle(pilot)
        await wait_for(pilot, lambda: screen.prune_plan is not None
                       and not screen.prune_plan.plan.forget)
        remaining = {p.name for p in settings.backups_dir.glob("*.sql.gz")}
        assert remaining == {d.candidate.name for d in expected.plan.keep}
        assert audit.read(settings, action="prune")[-1]["outcome"] == "ok"
        assert app.jobs.recent(1)[0].state == "finished"


@asynctest
async def test_refused_plan_offers_no_prune(tmp_path):
    settings = make_settings(tmp_path, keep_daily=2, keep_weekly=0)
    h = History(settings)
    for i in range(4):
        h.add(T0 + timedelta(days=i), manifest=False, verify=False)
    h.add(T0 + timedelta(days=5), data=b"")
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_retention(pilot, app)
        assert "REFUSED" in str(screen.query_one("#caption", Static).render())
        await pilot.press("p")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog)
        assert len(list(settings.backups_dir.glob("*.sql.gz"))) == 5


def test_snapshot_retention_screen(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = make_settings(tmp_path, keep_daily=14, keep_weekly=8, backups_dir="backups")
    history(settings)
    app = make_app(settings)

    async def run_before(pilot):
        await open_retention(pilot, app)
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_prune_confirmation(snap_compare, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = make_settings(tmp_path, keep_daily=7, keep_weekly=2, backups_dir="backups")
    history(settings, days=12)
    app = make_app(settings)

    async def run_before(pilot):
        await open_retention(pilot, app)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
