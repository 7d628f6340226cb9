"""Modal confirmations: a question, optionally a diff of what will change."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmDialog(ModalScreen[bool]):
    """Dismisses with True (confirm) or False (cancel, Escape).

    Cancel has the focus: most of these dialogs guard something destructive (a pull into the
    live volume, a prune, a roll back), so an Enter typed by habit must not go ahead; `y` or a
    Tab to the confirm button does.
    """

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("y", "confirm", "Yes", show=False),
        Binding("n", "cancel", "No", show=False),
    ]
    DEFAULT_CSS = """
    ConfirmDialog { align: center middle; }
    ConfirmDialog > Vertical {
        width: 90%; max-width: 110; height: auto; max-height: 90%;
        border: thick $primary; background: $surface; padding: 0 1;
    }
    ConfirmDialog .question { width: 1fr; text-style: bold; padding: 1 0; }
    ConfirmDialog VerticalScroll { height: auto; max-height: 20; border: round $secondary; }
    ConfirmDialog Horizontal { height: auto; align-horizontal: right; padding-top: 1; }
    ConfirmDialog Button { margin-left: 2; }
    """

    def __init__(self, question: str, diff: str = "", *, confirm_label: str = "Confirm",
                 title: str = "Confirm", cancel_label: str = "Cancel") -> None:
        super().__init__()
        self.question = question
        self.diff = diff
        self.confirm_label = confirm_label
        self.cancel_label = cancel_label
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Label(self.question, classes="question")
            if self.diff:
                with VerticalScroll(id="diff"):
                    yield Static(diff_text(self.diff))
            with Horizontal():
                yield Button(f"{self.cancel_label} (n)", id="cancel")
                yield Button(f"{self.confirm_label} (y)", id="confirm", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class TypedConfirmDialog(ModalScreen[bool]):
    """A destructive act confirmed by typing a name (the database's): True only when the
    typed text is `expected`; Escape or Cancel dismiss with False."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    TypedConfirmDialog { align: center middle; }
    TypedConfirmDialog > Vertical {
        width: 90%; max-width: 110; height: auto; border: thick $error; background: $surface; padding: 0 1;
    }
    TypedConfirmDialog .question { width: 1fr; padding: 1 0; }
    TypedConfirmDialog Horizontal { height: auto; align-horizontal: right; padding-top: 1; }
    TypedConfirmDialog Button { margin-left: 2; }
    """

    def __init__(self, question: str, expected: str, *, confirm_label: str = "Confirm",
                 title: str = "Confirm") -> None:
        super().__init__()
        self.question = question
        self.expected = expected
        self.confirm_label = confirm_label
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = self.title_text
            yield Label(f"{self.question} Type {self.expected!r} to go ahead.", classes="question")
            # "type fovea", not "fovea": a bare name in the empty field reads as already typed
            # where the placeholder's dim colour does not show (a plain terminal, a screenshot)
            yield Input(placeholder=f"type {self.expected}", id="typed")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button(self.confirm_label, id="confirm", variant="error", disabled=True)

    def on_mount(self) -> None:
        field = self.query_one("#typed", Input)
        field.cursor_blink = getattr(self.app, "cursor_blink", True)
        field.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.query_one("#confirm", Button).disabled = event.value.strip() != self.expected

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.expected:
            self.dismiss(True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        typed = self.query_one("#typed", Input).value.strip()
        self.dismiss(event.button.id == "confirm" and typed == self.expected)

    def action_cancel(self) -> None:
        self.dismiss(False)


def diff_text(diff: str) -> Text:
    """A unified diff coloured with the terminal's own red and green (16-colour safe)."""
    text = Text()
    for line in diff.splitlines():
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        elif line.startswith("@@"):
            style = "cyan"
        else:
            style = ""
        text.append(line + "\n", style=style)
    return text


__all__ = ["ConfirmDialog", "TypedConfirmDialog", "diff_text"]
