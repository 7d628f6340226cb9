"""The retention buckets: for each rule of the policy, its N slots and the dump in each.

Drawn from `Plan.slots(rule)` (newest slot first). A filled slot shows its bucket label,
coloured by the status of the dump that fills it; an empty slot (fewer periods have dumps
than the policy allows) is a dim dot.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from fovea_tui.engine.backups.retention import RULES, Plan, Slot

STATUS_STYLE = {"verified": "green", "unverified": "yellow", "corrupt": "bold red", "mismatch": "bold magenta"}
RULE_TITLE = {"last": "last", "hourly": "hourly", "daily": "daily", "weekly": "weekly",
              "monthly": "monthly", "yearly": "yearly"}


def slot_label(slot: Slot) -> str:
    """A short label for a slot cell: the part of the bucket label that changes."""
    if slot.label is None:
        return "·"
    label = slot.label
    if slot.rule == "last":
        # fovea-20261101T020000Z.sql.gz -> 11-01 02:00
        stem = label.removeprefix("fovea-").split(".", 1)[0]
        if len(stem) >= 15 and stem[8] == "T":
            return f"{stem[4:6]}-{stem[6:8]} {stem[9:11]}:{stem[11:13]}"
        return stem[:10]
    if slot.rule == "hourly":
        return label[5:13].replace("T", " ") + "h"  # 11-01 02h
    if slot.rule == "daily":
        return label[5:]  # 11-01
    if slot.rule == "weekly":
        return label  # 2026-W44
    return label  # 2026-11, 2026


DEFAULT_WIDTH = 64  # cells per line until the widget knows its width


def render_grid(plan: Plan | None, *, per_line: int = 7, width: int = DEFAULT_WIDTH) -> Group | Text:
    """The grid; each rule puts as many slots on a line as fit `width` (at most `per_line`)."""
    if plan is None:
        return Text("computing the retention plan…", style="dim")
    rules = [r for r in RULES if plan.policy.count(r)]
    if not rules:
        return Text("the retention policy is empty (every keep_* is 0)", style="bold red")
    parts: list[RenderableType] = []
    for rule in rules:
        slots = plan.slots(rule)
        filled = sum(1 for s in slots if s.filled)
        table = Table.grid(padding=(0, 1))
        cell_width = 3 + max((len(slot_label(s)) for s in slots), default=1)  # "14 " + the label
        cols = max(1, min(per_line, len(slots), (width + 1) // (cell_width + 1)))
        for _ in range(cols):
            table.add_column(no_wrap=True)
        row: list[Text] = []
        for slot in slots:
            if slot.decision is None:
                cell = Text(f"{slot.position:>2} ·", style="dim")
            else:
                style = STATUS_STYLE.get(slot.decision.candidate.status, "")
                cell = Text(f"{slot.position:>2} ", style="dim") + Text(slot_label(slot), style=style)
            row.append(cell)
            if len(row) == cols:
                table.add_row(*row)
                row = []
        if row:
            table.add_row(*row, *[Text("")] * (cols - len(row)))
        head = Text.assemble((f"{RULE_TITLE[rule]}", "bold"), f"  {filled} of {len(slots)} slots filled")
        parts += [head, table]
    legend = Text.assemble(("■ verified", "green"), "  ", ("■ unverified", "yellow"), "  ",
                           ("· empty slot", "dim"), "   newest slot first")
    parts.append(legend)
    return Group(*parts)


class BucketGrid(Static):
    """A Static that draws a Plan's slots; `show(plan)` redraws."""

    DEFAULT_CSS = """
    BucketGrid { height: auto; padding: 0 1; }
    """

    def __init__(self, plan: Plan | None = None, *, per_line: int = 7, **kwargs) -> None:
        super().__init__(**kwargs)
        self.plan = plan
        self.per_line = per_line

    def _render_plan(self) -> None:
        width = self.content_size.width or DEFAULT_WIDTH
        self.update(render_grid(self.plan, per_line=self.per_line, width=width))

    def on_mount(self) -> None:
        self._render_plan()

    def on_resize(self) -> None:
        self._render_plan()

    def show(self, plan: Plan | None) -> None:
        self.plan = plan
        self._render_plan()
