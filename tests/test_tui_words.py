"""Issue 22's words on the screens: the size chart's axis with 0, 1 and 2 days of dumps, the
restore checklist's boxes told apart without colour, counts that agree with their noun."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from support.tui import asynctest
from textual.app import App, ComposeResult

from fovea_tui import formatting
from fovea_tui.engine import restore as engine
from fovea_tui.tui.screens.restore import Checklist
from fovea_tui.tui.widgets.size_chart import SizeChart

DAY = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
MIB = 1 << 20


class One(App):
    def __init__(self, widget) -> None:
        super().__init__()
        self.widget = widget

    def compose(self) -> ComposeResult:
        yield self.widget


async def chart_text(points) -> str:
    app = One(SizeChart())
    async with app.run_test(size=(100, 16)) as pilot:
        chart = app.query_one(SizeChart)
        chart.set_points(points)
        await pilot.pause(0.1)
        return "\n".join(chart.render_line(y).text for y in range(chart.size.height))


@asynctest
async def test_the_size_chart_has_a_sensible_axis_for_0_1_and_2_days_of_dumps():
    none = await chart_text([])
    assert "no dumps yet" in none and not re.search(r"\d{4}-\d\d-\d\d", none)

    one = await chart_text([(DAY, 50 * MIB, "verified")])
    assert "one day of dumps so far, 50.0 MiB" in one
    assert not re.search(r"\b(19|20)\d\d\b", one.replace("50.0 MiB", ""))  # no 1963 to 2090

    two_same_day = await chart_text([(DAY, 48 * MIB, "verified"), (DAY + timedelta(hours=7), 50 * MIB, "verified")])
    assert "one day of dumps so far" in two_same_day

    two = await chart_text([(DAY - timedelta(days=1), 48 * MIB, "verified"), (DAY, 50 * MIB, "verified")])
    dates = re.findall(r"\d{4}-\d\d-\d\d", two)
    assert dates == ["2026-11-19", "2026-11-20"], two  # each day named once, in order, nothing else
    assert "(MiB)" in two and "0.0" in two  # the size axis from zero


@asynctest
async def test_many_days_name_each_tick_once_and_fit_the_width():
    points = [(DAY - timedelta(days=i), (40 + i % 7) * MIB, "verified") for i in range(120)]
    text = await chart_text(points)
    dates = re.findall(r"\d{4}-\d\d-\d\d", text)
    assert len(dates) == len(set(dates)) >= 3, text
    assert dates == sorted(dates) and dates[-1] == "2026-11-20"


@asynctest
async def test_checklist_boxes_differ_without_colour():
    """Ticked and unticked boxes must not be told apart by colour alone (a monochrome terminal,
    a screen reader, a colour-blind operator)."""
    checklist = Checklist()
    app = One(checklist)
    async with app.run_test(size=(100, 12)) as pilot:
        checklist.add_options([(item, i) for i, item in enumerate(engine.CHECKLIST)])
        await pilot.pause(0.05)
        checklist.select(0)
        await pilot.pause(0.05)
        ticked, unticked = checklist.render_line(0).text, checklist.render_line(1).text
        box = slice(0, ticked.index(engine.CHECKLIST[0][:10]))
        assert ticked[box] != unticked[box], (ticked, unticked)
        assert "X" in ticked[box] and "X" not in unticked[box]


def test_plural_agrees_with_its_count():
    assert formatting.plural(1, "dump") == "1 dump"
    assert formatting.plural(0, "error") == "0 errors"
    assert formatting.plural(1200, "file") == "1,200 files"
    assert formatting.plural(1, "summary", "summaries") == "1 summary"
    assert formatting.plural(2, "summary") == "2 summaries"
