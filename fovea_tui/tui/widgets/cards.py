"""A card per piece of state: title, verdict, last copy and its age, size, cost of loss."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fovea_tui.engine.ops.status import Verdict
from fovea_tui.tui.model import Card


class StateCard(Static):
    """One card; its CSS class (-fine, -stale, -missing, -warning, -failing, ...) colours the border."""

    DEFAULT_CSS = """
    StateCard {
        border: round $secondary;
        border-title-style: bold;
        padding: 0 1;
        height: auto;
        min-height: 5;
    }
    StateCard.-fine { border: round $success; border-subtitle-color: $success; }
    StateCard.-stale { border: round $warning; border-subtitle-color: $warning; }
    StateCard.-missing { border: round $warning; border-subtitle-color: $warning; }
    StateCard.-warning { border: round $warning; border-subtitle-color: $warning; }
    StateCard.-failing { border: heavy $error; border-subtitle-color: $error; }
    StateCard .cost { color: $text-muted; }
    """

    def __init__(self, key: str, title: str, **kwargs) -> None:
        super().__init__("…", id=f"card-{key}", **kwargs)
        self.key = key
        self.border_title = title
        self.verdict = "unknown"

    def show(self, card: Card) -> None:
        for verdict in Verdict:
            self.set_class(verdict == card.verdict, f"-{verdict}")
        self.verdict = card.verdict
        self.border_title = card.title
        self.border_subtitle = str(card.verdict).upper()
        text = Text()
        for i, line in enumerate(card.lines):
            if i:
                text.append("\n")
            text.append(line)
        text.append("\n")
        text.append(f"loss: {card.cost}", style="dim italic")
        self.update(text)
