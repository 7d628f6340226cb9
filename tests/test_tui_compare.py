"""The Compare screen (`c` on a dump in Backups) on a real database: the table sorted by how
much differs, the rows of one video, a dry run, the confirmation, the apply; leaving the
screen drops the scratch database."""

from __future__ import annotations

import pytest
from support.tui import all_rows_shown, asynctest, make_app, wait_for
from test_selective import count, install, videos  # noqa: F401 - `install` is the fixture
from textual.widgets import DataTable, Static

from fovea_tui.tui.screens.backups import BackupsScreen
from fovea_tui.tui.screens.compare import CompareScreen
from fovea_tui.tui.screens.help import screen_keys
from fovea_tui.tui.widgets.confirm import ConfirmDialog


def detail(screen) -> str:
    return str(screen.query_one("#detail", Static).render())


@pytest.mark.parametrize("size", [(140, 40), (80, 24)])
@asynctest
async def test_compare_screen_brings_back_one_video(install, size):  # noqa: F811
    a_id, a_name = videos(install)[0]
    then = count(install, "annotations", f"\"videoId\" = '{a_id}'")
    install.psql(f"DELETE FROM annotations WHERE \"videoId\" = '{a_id}'")
    app = make_app(install.settings)
    async with app.run_test(size=size) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BackupsScreen) and all_rows_shown(app.screen))
        assert ("c", "Compare with live") in screen_keys(app.screen)  # what `?` lists for this screen
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.comparison is not None, timeout=60)
        table = screen.query_one("#scopes", DataTable)
        assert str(table.get_row_at(0)[2]) == f"{a_name}: {then} annotations then, 0 now"
        await pilot.press("enter")
        await wait_for(pilot, lambda: f"annotations: {then} only in the dump" in detail(screen), timeout=30)
        await pilot.press("r")
        await wait_for(pilot, lambda: screen.plan is not None, timeout=30)
        assert f"{then} rows inserted, 0 updated, 0 deleted" in detail(screen)
        await pilot.press("y")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: "undo with" in detail(screen), timeout=30)
        assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == then
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
        await wait_for(pilot, lambda: install.scratch() == [], timeout=30)
