"""The nightly schedule on the settings screen: on/off, time, systemd or cron, the last run.

Turning it on (or applying a new time) installs through `engine.schedule`, turning it off
removes it; either way the exact file diff is shown in a ConfirmDialog first, and nothing
is written when the operator says no (the switch springs back).
"""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, Static, Switch

from fovea_tui import masking
from fovea_tui.engine.ops import schedule
from fovea_tui.errors import FoveaError
from fovea_tui.tui.typed import FoveaAppAccess
from fovea_tui.tui.widgets.confirm import ConfirmDialog


class SchedulePanel(FoveaAppAccess, Vertical):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """Reads `self.app.settings`; shows and changes the installed nightly schedule."""

    DEFAULT_CSS = """
    SchedulePanel { height: auto; border: round $secondary; padding: 0 1; margin-top: 1; }
    SchedulePanel .row { height: auto; margin-top: 1; }
    SchedulePanel .row > Label { width: auto; padding: 0 1 0 0; }
    SchedulePanel .row > Label.key { width: 26; text-style: bold; }
    SchedulePanel #schedule-enabled, SchedulePanel #schedule-cron { height: 1; border: none; padding: 0; width: auto; }
    SchedulePanel #schedule-at { width: 9; }
    SchedulePanel Button { margin-left: 2; min-width: 12; }
    SchedulePanel #schedule-state { height: auto; color: $text-muted; padding-top: 1; }
    SchedulePanel #schedule-last { height: auto; }
    SchedulePanel #schedule-last.-failed { color: $error; text-style: bold; }
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("id", "schedule-panel")
        super().__init__(**kwargs)
        self.info: dict[str, Any] = {"installed": False}

    def compose(self) -> ComposeResult:
        self.border_title = "nightly run (schedule)"
        with Horizontal(classes="row"):
            yield Label("enabled", classes="key")
            yield Switch(id="schedule-enabled", animate=False)
            yield Label("  at")
            yield Input(schedule.DEFAULT_AT, id="schedule-at", compact=True, max_length=5,
                        placeholder="HH:MM")
            yield Label("  cron instead of systemd")
            yield Switch(id="schedule-cron", animate=False)
            yield Button("Apply…", id="schedule-apply", compact=True)
        yield Static("", id="schedule-state")
        yield Static("", id="schedule-last")

    def on_mount(self) -> None:
        self.refresh_state()

    # ---------------------------------------------------------------- state --------------

    def refresh_state(self) -> None:
        from fovea_tui.engine.ops.nightly import read_last

        settings = self.app.settings
        try:
            self.info = schedule.show(settings)
        except FoveaError as exc:
            self.info = {"installed": False, "error": str(exc)}
        info = self.info
        enabled = self.query_one("#schedule-enabled", Switch)
        with self.prevent(Switch.Changed):
            enabled.value = bool(info.get("installed"))
            self.query_one("#schedule-cron", Switch).value = info.get("kind") in ("cron", "crontab")
        if info.get("at"):
            self.query_one("#schedule-at", Input).value = info["at"]
        if info.get("error"):
            text = f"cannot read the schedule: {info['error']}"
        elif info.get("installed"):
            text = (f"installed as {info['kind']} ({', '.join(info['files'])}); "
                    f"next run {info.get('next_run') or 'unknown'}")
        else:
            text = "not installed: nothing runs the nightly backup, prune and sync by itself"
        self.query_one("#schedule-state", Static).update(masking.redact(text))
        last = read_last(settings)
        last_widget = self.query_one("#schedule-last", Static)
        if last:
            failed = [s.get("name") for s in last.get("steps", []) if isinstance(s, dict) and s.get("status") == "failed"]
            last_widget.update(f"last run: {last.get('outcome')} at {last.get('started_at')}"
                               + (f" ({', '.join(map(str, failed))} failed)" if failed else ""))
            last_widget.set_class(last.get("outcome") != "ok", "-failed")
        else:
            last_widget.update("last run: never")
            last_widget.set_class(False, "-failed")

    # ---------------------------------------------------------------- actions ------------

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        if event.switch.id != "schedule-enabled":
            return
        if event.value and not self.info.get("installed"):
            self.install()
        elif not event.value and self.info.get("installed"):
            self.uninstall()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "schedule-apply":
            event.stop()
            self.install()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "schedule-at":
            event.stop()
            self.install()

    def install(self) -> None:
        at = self.query_one("#schedule-at", Input).value.strip()
        cron = self.query_one("#schedule-cron", Switch).value
        try:
            plan = schedule.plan_install(self.app.settings, at, cron=cron)
        except FoveaError as exc:
            self.notify(masking.redact(str(exc)), title="Schedule", severity="error")
            self.refresh_state()
            return
        if not plan.changes:
            self.notify(f"Already installed ({plan.kind}, daily at {plan.at}).", title="Schedule")
            self.refresh_state()
            return
        self._confirm(plan, f"Install the nightly run as {plan.kind}, daily at {plan.at}?", "Install")

    def uninstall(self) -> None:
        try:
            plan = schedule.plan_remove(self.app.settings)
        except FoveaError as exc:
            self.notify(masking.redact(str(exc)), title="Schedule", severity="error")
            self.refresh_state()
            return
        self._confirm(plan, "Remove the nightly schedule? Nothing will run the backups by itself.", "Remove")

    def _confirm(self, plan: schedule.Plan, question: str, label: str) -> None:
        extra = "".join(f"\n# will run: {' '.join(cmd)}" for cmd in plan.commands)
        extra += "".join(f"\n# note: {note}" for note in plan.notes)
        diff = plan.diff() + extra

        def done(ok: bool | None) -> None:
            if ok:
                try:
                    schedule.apply(plan)
                except FoveaError as exc:
                    self.notify(masking.redact(str(exc)), title="Schedule not changed", severity="error")
                else:
                    what = "installed" if plan.action == "install" else "removed"
                    self.notify(f"Nightly schedule {what}.", title="Schedule")
            self.refresh_state()

        self.app.push_screen(ConfirmDialog(question, masking.redact(diff), confirm_label=label,
                                           title="Nightly schedule"), done)


__all__ = ["SchedulePanel"]
