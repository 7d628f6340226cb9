"""Dump size over time (textual-plotext), so a sudden drop stands out.

A dump that shrinks by half overnight usually means a table was emptied or the dump stopped
early; corrupt dumps are drawn as separate red points on the baseline.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from textual_plotext import PlotextPlot

DATE_FORM = "Y-m-d"
MAX_TICKS = 6  # dates of 10 characters with room between them in 80 columns


class SizeChart(PlotextPlot):
    """`set_points([(time, size_bytes, status), ...])`; oldest to newest is drawn left to right."""

    DEFAULT_CSS = """
    SizeChart { height: 12; min-height: 8; }
    """

    def __init__(self, *, title: str = "dump size over time", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.points: list[tuple[datetime, int, str]] = []

    def on_mount(self) -> None:
        super().on_mount()
        self._draw()

    def set_points(self, points: Iterable[tuple[datetime, int, str]]) -> None:
        self.points = sorted(points, key=lambda p: p[0])
        self._draw()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.date_form(DATE_FORM)
        largest = max((s for _, s, _ in self.points), default=0)
        unit, scale = _unit(largest)
        sound = [(t, s) for t, s, status in self.points if status != "corrupt"]
        corrupt = [(t, s) for t, s, status in self.points if status == "corrupt"]
        # No legend (it covered the line at 120 columns): the title says what is drawn.
        plt.title(f"{self.title} ({unit})" + (" · x: corrupt" if corrupt else ""))
        if len({_day(t) for t, _, _ in self.points}) < 2:
            # one day has no time axis to speak of (plotext spread it over a century)
            plt.title(f"{self.title}: no dumps yet" if not self.points else
                      f"{self.title}: one day of dumps so far, {largest / scale:.1f} {unit}")
            self.refresh()
            return
        if sound:
            plt.plot([_day(t) for t, _ in sound], [s / scale for _, s in sound], marker="braille")
        if corrupt:
            plt.scatter([_day(t) for t, _ in corrupt], [s / scale for _, s in corrupt], color="red", marker="x")
        # From zero: a 6 % change must look like 6 %, not like a cliff.
        plt.ylim(0, largest / scale * 1.1 or 1)
        # Ticks on days that have dumps, each named once (plotext spread two days over five
        # ticks, four of them the same date), no more than 80 columns hold.
        days = sorted({_day(t) for t, _, _ in self.points})
        step = -(-len(days) // MAX_TICKS)
        ticks = days[::step] if days[-1] in days[::step] else [*days[::step][:-1], days[-1]]
        plt.xticks(ticks, ticks)  # type: ignore[arg-type]  # under date_form plotext takes date strings
        self.refresh()


def _unit(largest: int) -> tuple[str, int]:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if largest >= scale:
            return unit, scale
    return "bytes", 1


def _day(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")
