"""The inventory screen (Pilot and snapshots): rows, detail, sorting, live refresh, 10,000 rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support import tui as support_tui
from support.backup_history import History, dump_bytes, make_settings
from support.tui import all_rows_shown, asynctest, wait_for
from textual.widgets import DataTable, Static

from fovea_tui.tui.screens import backups as backups_screen
from fovea_tui.tui.screens.backups import BackupsScreen

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
SIZE = (160, 45)


def make_app(settings, **kw):
    return support_tui.make_app(settings, now=NOW, **kw)


def build_history(settings) -> History:
    h = History(settings)
    for i in range(18):
        # a sudden drop on the 15th day: a table went empty
        tables = {"users": 3, "videos": 12, "annotations": 4000 if i < 14 else 10}
        h.add(T0 + timedelta(days=i), tables=tables, data=dump_bytes(tables, padding=i * 100))
    h.add(T0 + timedelta(days=17, hours=6), safety=True)
    h.add(T0 + timedelta(days=5, hours=3), data=b"")
    h.add("fovea-2026-10-30.sql.gz", manifest=False, verify=False)
    (settings.backups_dir / "fovea-2026-02-30.sql.gz").write_bytes(dump_bytes())
    return h


def screen_of(app) -> BackupsScreen:
    screen = app.screen
    assert isinstance(screen, BackupsScreen)
    return screen


async def open_backups(pilot, app) -> BackupsScreen:
    await pilot.press("b")
    await wait_for(pilot, lambda: isinstance(app.screen, BackupsScreen) and all_rows_shown(app.screen))
    return screen_of(app)


@asynctest
async def test_rows_detail_sorting_and_live_refresh(tmp_path, monkeypatch):
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0.2)
    settings = make_settings(tmp_path)
    build_history(settings)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backups(pilot, app)
        table = screen.query_one("#inventory", DataTable)
        assert table.row_count == 21
        first = table.get_row_at(0)
        assert str(first[0]) == "2026-11-18 08:00" and str(first[1]) == "verified"
        assert "safety dump" in str(first[5])
        caption = str(screen.query_one("#caption", Static).render())
        assert "21 dumps" in caption and "1 corrupt" in caption and "fovea-2026-02-30.sql.gz" in caption
        # the detail pane follows the cursor
        await pilot.press("down")
        await pilot.pause()
        detail = str(screen.query_one("#detail", Static).render())
        assert "fovea-20261118T020000Z.sql.gz" in detail and "annotations" in detail and "migrations (2)" in detail
        # sort by size (header click), smallest first: the 0-byte dump
        size_at = sum(c.get_render_width(table) for c in table.ordered_columns[:3]) + 2
        await pilot.click("#inventory", offset=(size_at, 0))
        await pilot.pause()
        assert screen._sort == ("size", False) or screen._sort[0] == "size"
        screen._sort = ("size", False)
        screen._apply_sort()
        assert str(table.get_row_at(0)[1]) == "corrupt"
        # a new dump lands on disk: the poll notices it, the row appears, existing rows stay
        History(settings).add(NOW - timedelta(hours=1))
        await wait_for(pilot, lambda: table.row_count == 22)
        assert "fovea-20261120T083000Z.sql.gz" in [str(k.value) for k in table.rows]


@asynctest
async def test_job_finished_refreshes_statuses(tmp_path, monkeypatch):
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0)
    settings = make_settings(tmp_path)
    History(settings).add("fovea-2026-10-30.sql.gz", manifest=False, verify=False)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_backups(pilot, app)
        table = screen.query_one("#inventory", DataTable)
        assert str(table.get_row_at(0)[1]) == "unverified"
        await pilot.press("x")  # verify the selected dump, as a job of the app
        await wait_for(pilot, lambda: str(table.get_row_at(0)[1]) == "verified")


KEYS = ["pagedown"] * 12 + ["ctrl+end", "ctrl+home"] + ["down"] * 10


@asynctest
async def test_ten_thousand_rows_fill_in_batches_and_scroll(tmp_path, monkeypatch):
    """Rows are added in batches, each after a repaint (so the screen shows the first ones
    while the rest load), scrolling reaches both ends, and a reload updates rows in place by
    key. How fast each key is lives in benchmarks/bench_tui.py, not here."""
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0)
    batches: list[int] = []
    apply_rows = BackupsScreen._apply_rows

    def counting(self, generation, inv, start, added):
        batches.append(start)
        return apply_rows(self, generation, inv, start, added)

    monkeypatch.setattr(BackupsScreen, "_apply_rows", counting)
    settings = make_settings(tmp_path)
    History(settings).hourly_bare(T0, 10_000)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BackupsScreen) and all_rows_shown(app.screen)
                       and len(batches) == 10_000 // backups_screen.BATCH, 120)
        screen = screen_of(app)
        table = screen.query_one("#inventory", DataTable)
        assert table.row_count == 10_000
        assert batches == list(range(0, 10_000, backups_screen.BATCH))
        table.focus()
        for key in KEYS:
            await pilot.press(key)
        await pilot.pause()
        assert table.cursor_row == 10
        screen.action_reload()  # a second load updates the same rows in place, batch by batch
        await wait_for(pilot, lambda: len(batches) == 2 * (10_000 // backups_screen.BATCH), 120)
        assert table.row_count == 10_000 and table.cursor_row == 10


def test_snapshot_backups_screen(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0)
    monkeypatch.chdir(tmp_path)
    settings = make_settings(tmp_path, backups_dir="backups")
    build_history(settings)
    app = make_app(settings)

    async def run_before(pilot):
        await open_backups(pilot, app)
        await pilot.press("down")
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
