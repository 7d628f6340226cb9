"""A screen that shows what the app's settings and jobs leave on disk, and reloads when they change."""

from __future__ import annotations

from typing import Any

from textual.screen import Screen


class ReloadingScreen(Screen):
    """Subclasses define `action_reload` (the screen's own reload), call `follow_changes()`
    from `on_mount`, and may override `_on_job_changed` (by default: reload once a job has
    ended)."""

    @property
    def settings(self):
        return self.app.settings  # type: ignore[attr-defined]

    def follow_changes(self) -> None:
        """Every job change goes to `_on_job_changed`; new settings reload the screen. (An app
        without those signals, such as a bare test app, is not followed.)"""
        jobs_changed = getattr(self.app, "jobs_changed", None)
        if jobs_changed is not None:
            jobs_changed.subscribe(self, self._on_job_changed)
        settings_changed = getattr(self.app, "settings_changed", None)
        if settings_changed is not None:
            settings_changed.subscribe(self, lambda _s: self.action_reload())

    def _on_job_changed(self, job: Any) -> None:
        if job is not None and getattr(job, "state", "running") != "running":
            self.action_reload()
