"""The restore banner: one line on every screen while a restore runs, waits for its
confirmation, or was left half-done, with the keys that follow, resume or roll it back."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from fovea_tui.engine.ops.status import RestoreSection, Verdict


class RestoreBanner(Static):
    """Hidden unless the engine says the restore needs the operator (`needs_operator`)."""

    DEFAULT_CSS = """
    RestoreBanner { display: none; height: auto; padding: 0 1; text-wrap: wrap; }
    RestoreBanner.-shown { display: block; }
    RestoreBanner.-active { background: $warning-muted; color: $text; }
    RestoreBanner.-failing { background: $error; color: $text; }
    """

    def __init__(self) -> None:
        super().__init__("", id="restore-banner")

    def show(self, restore: RestoreSection) -> None:
        shown = restore.needs_operator
        self.set_class(shown, "-shown")
        self.set_class(shown and restore.verdict == Verdict.ACTIVE, "-active")
        self.set_class(shown and restore.verdict == Verdict.FAILING, "-failing")
        if not shown:
            self.update("")
            return
        text = Text()
        text.append(" RESTORE ", style="bold reverse")
        text.append(f" {restore.dump or restore.job}: ", style="bold")
        text.append(restore.headline)
        keys = [("R", "follow")]
        if restore.can_resume:
            keys.append(("U", "resume"))
        if restore.can_rollback:
            keys.append(("Z", "roll back"))
        text.append("  ·  ")
        for i, (key, what) in enumerate(keys):
            if i:
                text.append(" · ")
            text.append(key, style="bold")
            text.append(f" {what}")
        self.update(text)
