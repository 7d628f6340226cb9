"""FoveaScreen: the base of every screen of the app.

It types `self.app` as the FoveaApp (so a screen's `self.app.settings` is checked, not
`App[Any]`), shows the restore banner on top of every screen, and lets a screen that draws
what jobs and settings leave on disk reload when they change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual import on
from textual.events import Mount
from textual.screen import Screen

from fovea_tui.config import Settings
from fovea_tui.tui.typed import FoveaAppAccess
from fovea_tui.tui.widgets.restore_banner import RestoreBanner

if TYPE_CHECKING:
    pass


class FoveaScreen(FoveaAppAccess, Screen):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """Subclasses that follow changes define `action_reload` and call `follow_changes()` from
    `on_mount`; they may override `_on_job_changed` (by default: reload once a job ended)."""

    @property
    def settings(self) -> Settings:
        return self.app.settings

    @on(Mount)
    def _mount_banner(self) -> None:
        banner = RestoreBanner()
        # First in the layout, so it sits under the (docked) header on any screen.
        if self.children:
            self.mount(banner, before=0)
        else:
            self.mount(banner)
        banner.show(self.app.restore)
        self.app.restore_changed.subscribe(self, banner.show)

    def follow_changes(self) -> None:
        """Every job change goes to `_on_job_changed`; new settings reload the screen."""
        self.app.jobs_changed.subscribe(self, self._on_job_changed)
        self.app.settings_changed.subscribe(self, lambda _s: self.action_reload())

    def action_reload(self) -> None:
        """Read again what the screen shows (screens that follow changes define it)."""

    def _on_job_changed(self, job: Any) -> None:
        if job is not None and job.state != "running":
            self.action_reload()
