"""The audit log (state_dir/audit.jsonl), newest first, re-read when it changes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui import masking
from fovea_tui.tui import model
from fovea_tui.tui.screens.base import FoveaScreen

_OUTCOME_STYLE = {"ok": "green", "success": "green", "done": "green", "failed": "bold red",
                  "error": "bold red", "refused": "yellow", "cancelled": "yellow"}


def audit_path(settings) -> Path:
    return settings.state_dir / "audit.jsonl"


def read_audit(path: Path, limit: int = 2000) -> tuple[list[dict[str, Any]], int]:
    """(entries newest first, lines that were not JSON). A missing file is an empty log."""
    try:
        raw = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return [], 0
    entries, bad = [], 0
    for line in raw[-limit:]:
        line = line.strip()
        if not line:
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if isinstance(entry, dict):
            entries.append(entry)
        else:
            bad += 1
    entries.reverse()
    return entries, bad


def details_text(details: Any) -> str:
    if details in (None, "", {}):
        return ""
    if isinstance(details, dict):
        text = ", ".join(f"{k}={v}" for k, v in details.items())
    else:
        text = str(details)
    return masking.redact(text)


class AuditLoaded(Message):
    def __init__(self, entries: list[dict[str, Any]], bad: int, path: Path, mtime: float | None) -> None:
        super().__init__()
        self.entries, self.bad, self.path, self.mtime = entries, bad, path, mtime


class ActivityScreen(FoveaScreen):
    TITLE = "Activity"
    BINDINGS = [Binding("ctrl+r", "reload", "Reload")]
    DEFAULT_CSS = """
    ActivityScreen #caption { height: auto; padding: 0 1; color: $text-muted; }
    ActivityScreen DataTable { height: 1fr; }
    ActivityScreen #detail { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary 50%; }
    """

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("reading the audit log…", id="caption")
        table: DataTable = DataTable(id="log", cursor_type="row", zebra_stripes=True)
        table.add_columns("time", "age", "action", "outcome", "details")
        yield table
        yield Static("", id="detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._mtime: float | None = -1.0
        self._entries: list[dict[str, Any]] = []
        self.load()
        self.set_interval(3.0, self.load)
        self.app.jobs_changed.subscribe(self, lambda _job: self.load())

    def action_reload(self) -> None:
        self._mtime = -1.0
        self.load()

    @work(thread=True, exclusive=True, group="audit", exit_on_error=False)
    def load(self) -> None:
        path = audit_path(self.app.settings)
        try:
            mtime: float | None = path.stat().st_mtime
        except OSError:
            mtime = None
        if mtime == self._mtime:
            return
        entries, bad = read_audit(path)
        self.post_message(AuditLoaded(entries, bad, path, mtime))

    def on_audit_loaded(self, message: AuditLoaded) -> None:
        self._mtime = message.mtime
        self._entries = message.entries
        now = self.app.now()
        caption = f"{message.path} · {len(message.entries)} entries"
        if message.mtime is None:
            caption = f"{message.path} does not exist yet: nothing has been backed up, pruned, synced or restored from here"
        if message.bad:
            caption += f" · {message.bad} unreadable lines skipped"
        self.query_one("#caption", Static).update(caption)
        table = self.query_one("#log", DataTable)
        table.clear()
        for i, entry in enumerate(message.entries):
            when = model.parse_time(entry.get("time"))
            outcome = str(entry.get("outcome", ""))
            table.add_row(
                when.astimezone().strftime("%Y-%m-%d %H:%M:%S") if when else str(entry.get("time", "?")),
                model.age(when, now) if when else "",
                str(entry.get("action", "?")),
                Text(outcome, style=_OUTCOME_STYLE.get(outcome.lower(), "")),
                details_text(entry.get("details"))[:120],
                key=str(i),
            )
        self._show_detail(0)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail(event.cursor_row)

    def _show_detail(self, row: int) -> None:
        detail = self.query_one("#detail", Static)
        if not self._entries or row >= len(self._entries):
            detail.update("")
            return
        entry = self._entries[row]
        detail.update(Text(masking.redact(json.dumps(entry, indent=None, default=str, ensure_ascii=False))))


__all__ = ["ActivityScreen", "read_audit", "audit_path", "datetime"]
