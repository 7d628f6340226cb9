"""`?`: what each screen is for, and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from fovea_tui.tui.typed import FoveaAppAccess

GLOBAL_KEYS = [
    ("ctrl+p", "command palette: every action, searchable"),
    ("?", "this help (again to close)"),
    ("escape", "back: close a dialog, or return to the previous screen (asks first during a restore)"),
    ("ctrl+r", "refresh the status now (it also refreshes by itself)"),
    ("B / V", "back up now / sync the videos now (runs in the background)"),
    ("tab / shift+tab", "move between fields and tables; the mouse works too"),
    ("q", "quit (asks first if a job or a restore is running)"),
]


def screen_keys(screen: Screen | None) -> list[tuple[str, str]]:
    """Every key the screen binds itself, with what it does (what the footer has no room for)."""
    if screen is None:
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for binding in getattr(type(screen), "BINDINGS", []):
        if not isinstance(binding, Binding) or not binding.description:
            continue
        for key in binding.key.split(","):
            key = key.strip()
            display = binding.key_display or {"question_mark": "?", "escape": "escape"}.get(key, key)
            if display not in seen:
                seen.add(display)
                out.append((display, binding.description))
    return out


class HelpScreen(FoveaAppAccess, ModalScreen[None]):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    BINDINGS = [Binding("escape", "dismiss", "Close"), Binding("question_mark", "dismiss", "Close", show=False)]

    def __init__(self, under: Screen | None = None) -> None:
        super().__init__()
        self.under = under  # the screen the operator pressed ? on
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical {
        width: 90%; max-width: 100; height: 90%; border: thick $primary;
        background: $surface; padding: 0 1;
    }
    HelpScreen VerticalScroll { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        app = self.app
        lines = []
        keys = screen_keys(self.under)
        if keys:
            title = getattr(self.under, "TITLE", None) or type(self.under).__name__
            lines += [f"[b]This screen: {escape(str(title))}[/]", ""]
            for key, text in keys:
                lines.append(f"  [b $accent]{escape(key):<16}[/] {escape(text)}")
            lines.append("")
        lines += ["[b]Screens[/]", ""]
        for spec in app.screen_specs.values():
            lines.append(f"  [b $accent]{spec.key:<3}[/] [b]{spec.title}[/]")
            lines.append(f"      {escape(spec.help)}")
        lines += ["", "[b]Everywhere[/]", ""]
        for key, text in GLOBAL_KEYS:
            lines.append(f"  [b $accent]{escape(key):<16}[/] {escape(text)}")
        lines += ["", "[b]Colours on the dashboard[/]", "",
                  "  [b $success]FINE[/]     a recent copy exists",
                  "  [b $warning]STALE[/]    the last copy is older than the schedule promises",
                  "  [b $warning]MISSING[/]  there is no copy at all",
                  "  [b $error]FAILING[/]  the thing itself or its last copy is failing",
                  "", f"[dim]{escape(app.describe_target())}[/]"]
        with Vertical() as box:
            box.border_title = "Help"
            box.border_subtitle = "escape or ? to close"
            with VerticalScroll():
                yield Static("\n".join(lines))

    async def on_key(self, event) -> None:
        """A modal hides the app's keys: let the screen keys and q through from here."""
        for spec in self.app.screen_specs.values():
            if event.character == spec.key:
                event.stop()
                self.app.action_goto(spec.name)
                return
        if event.character == "q":
            event.stop()
            await self.app.action_quit()

    async def action_dismiss(self, result=None) -> None:
        self.dismiss(None)
