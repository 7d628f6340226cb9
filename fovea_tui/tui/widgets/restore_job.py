"""The restore in the dashboard's Jobs panel: one at work, waiting for its confirmation, or
stopped half-way. A restore runs in its own detached runner, not as a job of the app, so the
panel reads its state file (re-read only when the jobs directory changes)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.message import Message
from textual.widgets import Static

from fovea_tui import masking
from fovea_tui.engine.infra import jobs
from fovea_tui.errors import FoveaError
from fovea_tui.tui.typed import FoveaAppAccess


def restore_job_text(data: dict | None) -> Text | None:
    """What the panel says of the newest restore, or None when there is nothing to say."""
    if not data:
        return None
    # the restore engine (its runner and steps) is imported only once there is a restore job
    from fovea_tui.engine import restore as engine

    status = jobs.effective_status(data)
    if status not in (*engine.ACTIVE, "interrupted", "failed", "rollback_failed"):
        return None
    dump = (data.get("facts") or {}).get("dump") or Path(str((data.get("params") or {}).get("dump", ""))).name
    step = next((r.get("title", r["name"]) for r in data.get("steps", []) if r.get("status") == "running"), "")
    text = Text()
    if data.get("awaiting") == "confirm" and status == "waiting":
        text.append("Restore waiting for your confirmation", style="bold yellow")
        text.append(f"\n{dump} · R to confirm or cancel it; it holds the backups lock meanwhile")
    elif status in ("running", "pending"):
        text.append(f"Restore running: {step or status}", style="bold")
        text.append(f"\n{dump} · R follows it")
    elif status == "rolling_back":
        text.append(f"Restore rolling back: {step or status}", style="bold yellow")
        text.append(f"\n{dump} · R follows it")
    else:
        text.append(f"Restore {status.upper().replace('_', ' ')}", style="bold red")
        text.append(f"\n{dump} · R to resume or roll back" if status == "interrupted"
                    else f"\n{masking.redact(engine.describe_status(data))[:160]}")
    text.append(f"\njob {data.get('id')}", style="dim")
    return text


class RestoreJobLine(FoveaAppAccess, Static):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """Polls the newest restore job once a second; posts Changed when it appears or goes."""

    class Changed(Message):
        pass

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._signature: int | None = None
        self._data: dict | None = None
        self.display = False

    def on_mount(self) -> None:
        self.refresh_job()
        self.set_interval(1.0, self.refresh_job)

    def refresh_job(self) -> None:
        settings = self.app.settings
        directory = jobs.jobs_dir(settings)
        try:
            signature = directory.stat().st_mtime_ns  # every state write renames a file into it
        except OSError:
            signature = None
        try:
            if signature != self._signature:
                self._signature = signature
                self._data = _latest_restore(settings) if signature is not None else None
            elif self._data is not None:
                self._data["alive"] = jobs.is_alive(directory, self._data["id"])
        except (FoveaError, OSError):
            self._data = None
        text = restore_job_text(self._data)
        was = self.display
        self.display = text is not None
        if text is not None:
            self.update(text)
        if was != self.display:
            self.post_message(self.Changed())


def _latest_restore(settings) -> dict | None:
    from fovea_tui.engine import restore as engine

    return engine.latest_restore(settings)
