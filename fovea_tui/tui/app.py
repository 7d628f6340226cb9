"""The Textual app: screens as modes, keys, the command palette, status polling, jobs.

Every screen is a *mode* (its own screen stack), so switching screens never unmounts one:
a screen keeps its scroll position and selection, and jobs, which belong to the app's
JobRunner rather than to a screen, keep running whatever the operator looks at.

Adding a screen is one line in SCREENS; a line naming a module or class that does not exist
fails when the app is built, never silently drops a key.

A restore that runs, waits for its confirmation or was left half-done shows a banner on every
screen (`FoveaScreen`), from the engine's restore section polled every RESTORE_POLL_S seconds,
with keys to follow it (R), resume it (U) and roll it back (Z).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any, cast

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.message import Message
from textual.screen import Screen
from textual.signal import Signal
from textual.worker import Worker

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.ops.status import RestoreSection, StatusReport, judge
from fovea_tui.engine.progress import CancelToken
from fovea_tui.errors import FoveaError
from fovea_tui.tui.jobs import JobFailed, JobFinished, JobProgress, JobRunner, describe_result


@dataclass(frozen=True)
class ScreenSpec:
    """One screen: its key, its mode name, where its class lives ("module:Class"), help."""

    key: str
    name: str
    factory: str
    title: str
    help: str

    def load(self) -> Callable[[], Screen]:
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


_S = "fovea_tui.tui.screens."
SCREENS: list[ScreenSpec] = [
    ScreenSpec("d", "dashboard", _S + "dashboard:DashboardScreen", "Dashboard",
               "Every piece of state in the runbook's table with its last copy, age and verdict; "
               "the stack's services, live; running jobs; alerts. Refreshes by itself."),
    ScreenSpec("b", "backups", _S + "backups:BackupsScreen", "Backups",
               "The dump inventory, local and off-site, with status; verify and back up."),
    ScreenSpec("r", "retention", _S + "retention:RetentionScreen", "Retention",
               "What the retention policy keeps and forgets, and why; prune."),
    ScreenSpec("v", "volume", _S + "volume:VolumeScreen", "Volume",
               "The video volume and its copy: the sync plan, sync, pull."),
    ScreenSpec("R", "restore", _S + "restore:RestoreScreen", "Restore",
               "The guided restore: pick a dump, see every step, run it with undo."),
    ScreenSpec("D", "drill", _S + "drill:DrillScreen", "Drill",
               "A disaster-recovery drill into a scratch database, and its report."),
    ScreenSpec("s", "settings", _S + "settings:SettingsScreen", "Settings",
               "Every configuration key in a form; ctrl+s validates, shows the diff, saves."),
    ScreenSpec("a", "activity", _S + "activity:ActivityScreen", "Activity",
               "The audit log: every backup, prune, sync, restore and drill, newest first."),
]


RESTORE_POLL_S = 2.0  # how often the banner reads the newest restore job's state file


@dataclass(frozen=True)
class JobAction:
    """A job the app can start from any screen."""

    kind: str
    title: str
    run: Callable[..., Any]
    key: str
    help: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineCall:
    """An engine function named "module:function", imported when first called: the first
    frame does not load the engine of every job the app can start."""

    target: str

    def resolve(self) -> Callable[..., Any]:
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)


JOB_ACTIONS: dict[str, JobAction] = {
    "backup": JobAction("backup", "Back up now", EngineCall("fovea_tui.engine.backups.pipeline:run_backup"), "B",
                        "dump the database, copy the env file, upload both off-site; in the background",
                        {"offsite": True}),
    "sync": JobAction("sync", "Sync videos now", EngineCall("fovea_tui.engine.volume.sync:run_sync"), "V",
                      "copy new videos to the off-site target; in the background",
                      {"dry_run": False, "pull": False, "to": None, "replace_changed": False}),
}


# What the palette offers besides the screens, in an operator's words: (title, what it does,
# the screen it runs on, that screen's action). The screen's own key is shown beside it; resume
# and roll back are offered only when the engine's restore section says they apply.
PALETTE_ACTIONS: list[tuple[str, str, str, str]] = [
    ("Verify the selected dump", "read the whole dump and compare its checksum with its manifest", "backups", "verify"),
    ("Prune old backups…", "delete what the retention policy forgets (shows the list, asks first)", "retention",
     "prune"),
    ("Sync the videos, listing the whole target", "compare with a fresh listing of the off-site copy",
     "volume", "sync_full_listing"),
    ("Pull the videos back…", "copy the off-site videos back into the volume (asks first)", "volume", "pull"),
    ("Restore a dump", "choose a dump, check it, type the database name, watch every step", "restore", "new"),
    ("Resume the interrupted restore", "carry on from the last step that completed", "restore", "resume"),
    ("Roll back the restore", "put the database back from the safety dump (asks first)", "restore", "rollback"),
    ("Run a restore drill", "restore the newest dump into a scratch database and check it", "drill", "run_drill"),
    ("Cancel the drill", "stop the running drill; its scratch database is dropped", "drill", "cancel_drill"),
    ("Save the settings", "validate, show the diff, write the config file", "settings", "save"),
]

class StatusUpdated(Message):
    def __init__(self, report: StatusReport) -> None:
        super().__init__()
        self.report = report


class StatusFailed(Message):
    """collect_status itself raised (it should not; every probe guards itself)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class StackServices(Message):
    """The stack's services changed (from the Docker events stream of `watch`)."""

    def __init__(self, watch: _EventWatch | None, services: list[dict[str, Any]] | None, watching: bool,
                 reason: str = "") -> None:
        super().__init__()
        self.watch = watch
        self.services = services
        self.watching = watching
        self.reason = reason


class _EventWatch:
    """One run of the live events watcher, on one compose project: a docker client whose event
    stream `stop` closes from any thread (on quit, or when the settings name another project),
    even while the worker is still connecting."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.cancel = CancelToken()
        self._lock = threading.Lock()
        self._client: Any = None
        self._stream: Any = None

    def attach(self, client) -> bool:
        """Use `client`; False when the watch was stopped meanwhile."""
        with self._lock:
            self._client = client
            return not self.cancel.cancelled

    def events(self, **kwargs):
        stream = self._client.events(**kwargs)
        with self._lock:
            stopped = self.cancel.cancelled
            if not stopped:
                self._stream = stream
        if stopped:
            stream.close()
        return stream

    def stop(self) -> None:
        with self._lock:
            self.cancel.cancel("the watcher stopped")
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001 - closing a stream nobody reads any more; nothing to report
                pass

    def __getattr__(self, name: str):
        return getattr(self._client, name)


class FoveaCommands(Provider):
    """Every action of the app in the command palette (ctrl+p)."""

    def _commands(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = cast("FoveaApp", self.app)
        return app.command_list()

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)


def _collect_status(settings: Settings, now: datetime) -> StatusReport:
    """The default status source, run in the status worker: the probes (and the engine they
    import) load there, after the first frame, not before it."""
    from fovea_tui.engine.ops.status import collect_status

    return collect_status(settings, now=now)


def _screen_bindings() -> list[Binding]:
    bindings = [Binding(spec.key, f"goto('{spec.name}')", spec.title, key_display=spec.key)
                for spec in SCREENS]
    for name, job in JOB_ACTIONS.items():
        bindings.append(Binding(job.key, name, job.title, show=False))
    bindings += [Binding("U", "restore_resume", "Resume restore"),
                 Binding("Z", "restore_rollback", "Roll back restore")]
    return bindings


class FoveaApp(App):
    """fovea-tui's terminal UI. Build it with `create_app`."""

    CSS_PATH = "app.tcss"
    TITLE = "fovea-tui"
    DEFAULT_MODE = "dashboard"
    COMMANDS = App.COMMANDS | {FoveaCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-normal"), (170, "-wide")]
    # Help and Quit before the screens' keys: a narrow footer cuts from the right, and `?`
    # lists the rest.
    BINDINGS = [
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
        *_screen_bindings(),
        Binding("escape", "go_back", "Back", show=False),
        Binding("ctrl+r", "refresh", "Refresh", show=False),
    ]

    def __init__(self, settings: Settings, *, clock: Callable[[], datetime] | None = None,
                 status_source: Callable[[Settings, datetime], StatusReport] | None = None,
                 poll_interval: float = 15.0, watch_stack: bool = True, first_run: bool | None = None,
                 animate: bool = True, cursor_blink: bool = True) -> None:
        super().__init__()
        self.cursor_blink = cursor_blink  # False in snapshots: a blinking cursor is never stable
        self.settings = settings
        self._clock = clock
        self.status_source = status_source or _collect_status
        self.poll_interval = poll_interval
        self.watch_stack = watch_stack
        self.first_run = (settings.source is None) if first_run is None else first_run
        self.status: StatusReport | None = None
        self.status_error = ""
        self.stack_watch = ""  # "", "live", or why there is no live view
        self.jobs = JobRunner(self, clock=lambda: self.now().timestamp())
        self.status_changed: Signal[StatusReport] = Signal(self, "status_changed")
        self.jobs_changed: Signal[Any] = Signal(self, "jobs_changed")
        self.settings_changed: Signal[Settings] = Signal(self, "settings_changed")
        self.restore = RestoreSection()  # the newest restore, judged by the engine
        self.restore_changed: Signal[RestoreSection] = Signal(self, "restore_changed")
        self._status_worker: Worker[None] | None = None
        self._restore_worker: Worker[None] | None = None
        self._events: _EventWatch | None = None
        self._status_again = False  # settings changed while a status collection ran
        self._mode_history: list[str] = []
        self.screen_specs = {spec.name: spec for spec in SCREENS}
        for spec in self.screen_specs.values():
            self.add_mode(spec.name, self._factory(spec))
        if not animate:
            self.animation_level = "none"

    @staticmethod
    def _factory(spec: ScreenSpec) -> Callable[[], Screen]:
        return lambda: spec.load()()

    # --- time -----------------------------------------------------------------------

    def now(self) -> datetime:
        """The app's clock (fixed in snapshots and screenshots)."""
        return self._clock() if self._clock else datetime.now(UTC)

    # --- lifecycle --------------------------------------------------------------------

    def on_mount(self) -> None:
        self.title = "fovea-tui"
        self.sub_title = self.describe_target()
        self.refresh_status()
        if self.poll_interval > 0:
            self.set_interval(self.poll_interval, self.refresh_status)
            self.set_interval(RESTORE_POLL_S, self.refresh_restore)
        if self.watch_stack:
            self.restart_stack_watch()
        if self.first_run:
            from fovea_tui.tui.screens.setup import SetupScreen

            self.push_screen(SetupScreen())

    def on_unmount(self) -> None:
        self.jobs.cancel_all()
        if self._events is not None:
            self._events.stop()

    def describe_target(self) -> str:
        s = self.settings
        where = str(s.source) if s.source else "built-in defaults (no config file)"
        return f"project {s.install.compose_project} · {s.database.mode} mode · {where}"

    # --- status -------------------------------------------------------------------------

    def refresh_status(self, *, again: bool = False) -> None:
        """Collect the status (unless a collection runs; with `again`, one more after it: the
        running one read settings that are no longer current)."""
        if self._status_worker is not None and self._status_worker.is_running:
            self._status_again = self._status_again or again
            return
        self._status_again = False
        self._status_worker = self._collect_status()

    def _status_done(self) -> None:
        if self._status_again:
            self._status_again = False
            self.refresh_status()

    @work(thread=True, group="status", exit_on_error=False)
    def _collect_status(self) -> None:
        try:
            report = self.status_source(self.settings, self.now())
        except Exception as exc:  # noqa: BLE001 - a probe that crashes must not blank the UI
            self.post_message(StatusFailed(masking.redact(f"{type(exc).__name__}: {exc}")))
            return
        self.post_message(StatusUpdated(report))

    def on_status_updated(self, message: StatusUpdated) -> None:
        self.status = message.report
        self.status_error = ""
        self.status_changed.publish(message.report)
        self._set_restore(message.report.restore)
        self._status_done()

    # --- the restore banner -------------------------------------------------------------

    def refresh_restore(self) -> None:
        if self._restore_worker is not None and self._restore_worker.is_running:
            return
        self._restore_worker = self._collect_restore()

    @work(thread=True, group="restore-state", exit_on_error=False)
    def _collect_restore(self) -> None:
        from fovea_tui.engine.ops.status import restore_status

        section = restore_status(self.settings)
        self.call_from_thread(self._set_restore, section)

    def _set_restore(self, section: RestoreSection) -> None:
        if section == self.restore:
            return
        changed = (section.job, section.status) != (self.restore.job, self.restore.status)
        self.restore = section
        self.restore_changed.publish(section)
        self.refresh_bindings()
        if changed and self.status is not None and section is not self.status.restore:
            self.refresh_status()  # the alerts and the cards follow the banner at once

    def action_restore_resume(self) -> None:
        job = self.restore.job
        if not (self.restore.can_resume and job):
            return
        from fovea_tui.engine import restore as restore_engine

        try:
            restore_engine.resume_restore(self.settings, job)
        except FoveaError as exc:
            self.notify(str(exc), title="Resume refused", severity="error", timeout=15)
            return
        self.notify(f"Resuming {job}; follow it on the Restore screen.", title="Restore")
        self.action_goto("restore")
        self.refresh_restore()

    def action_restore_rollback(self) -> None:
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        job, state = self.restore.job, self.restore.state
        if not (self.restore.can_rollback and job):
            return

        def done(ok: bool | None) -> None:
            if not ok:
                return
            from fovea_tui.engine import restore as restore_engine

            try:
                restore_engine.rollback_restore(self.settings, job)
            except FoveaError as exc:
                self.notify(str(exc), title="Roll back refused", severity="error", timeout=15)
                return
            self.notify(f"Rolling {job} back; follow it on the Restore screen.", title="Restore")
            self.action_goto("restore")
            self.refresh_restore()

        self.push_screen(ConfirmDialog(
            f"Roll restore {job} back? {state} {self.restore.rollback_plan}",
            confirm_label="Roll back", title="Roll back the restore"), done)

    def on_status_failed(self, message: StatusFailed) -> None:
        self.status_error = message.error
        self.notify(message.error, title="Status probe failed", severity="error")
        if self.status is not None:
            self.status_changed.publish(self.status)
        self._status_done()

    # --- the stack, live ---------------------------------------------------------------

    def restart_stack_watch(self) -> None:
        """Follow the Docker events of the configured project (stopping a watch of another)."""
        if self._events is not None:
            self._events.stop()
        self._events = _EventWatch(self.settings.install.compose_project)
        self._watch_stack_events(self._events)

    @work(thread=True, group="stack-events", exit_on_error=False)
    def _watch_stack_events(self, watch: _EventWatch) -> None:
        from fovea_tui.engine.infra.stack import Stack, connect_docker

        try:
            client = connect_docker(timeout=5)
        except FoveaError as exc:
            self.post_message(StackServices(watch, None, False, str(exc)))
            return
        if not watch.attach(client):
            return
        stack = Stack(watch, watch.project)
        self.post_message(StackServices(watch, None, True))
        try:
            for _event in stack.events(watch.cancel):
                if watch.cancel.cancelled:
                    break
                services = [s.as_dict() for s in stack.services()]
                self.post_message(StackServices(watch, services, True))
        except Exception as exc:  # noqa: BLE001 - a lost event stream degrades to polling
            if not watch.cancel.cancelled:
                self.post_message(StackServices(watch, None, False, f"event stream lost: {exc}"))

    def on_stack_services(self, message: StackServices) -> None:
        if message.watch is not self._events:
            return  # a watch of the project before the settings changed
        self.stack_watch = "live" if message.watching else message.reason
        if message.services is not None and self.status is not None:
            stack = self.status.stack
            if stack.ok and stack.managed:
                stack.services = message.services
                judge(self.status)
        if self.status is not None:
            self.status_changed.publish(self.status)

    # --- jobs -------------------------------------------------------------------------

    def on_job_progress(self, message: JobProgress) -> None:
        self.jobs.apply(message)
        self.jobs_changed.publish(message.job)

    def on_job_finished(self, message: JobFinished) -> None:
        job = self.jobs.apply(message)
        if job.state == "failed":  # it returned, but says it did not do its work
            self.notify(job.error, title=f"{job.title}: FAILED", severity="error", timeout=30)
        else:
            self.notify(describe_result(message.result), title=f"{job.title}: done")
        self.jobs_changed.publish(job)
        self.refresh_status()

    def on_job_failed(self, message: JobFailed) -> None:
        job = self.jobs.apply(message)
        if message.cancelled:
            self.notify(message.error, title=f"{job.title}: cancelled", severity="warning")
        else:
            self.notify(message.error, title=f"{job.title}: FAILED", severity="error", timeout=30)
        self.jobs_changed.publish(job)
        self.refresh_status()

    def start_job(self, action: str) -> None:
        job = JOB_ACTIONS[action]
        self.jobs.start(job.kind, job.title, job.run, self.settings, **job.kwargs)
        self.jobs_changed.publish(None)

    def action_backup(self) -> None:
        self.start_job("backup")

    def action_sync(self) -> None:
        self.start_job("sync")

    def action_cancel_jobs(self) -> None:
        running = self.jobs.running()
        if not running:
            self.notify("No job is running: nothing to cancel.", timeout=3)
            return
        for job in running:
            self.jobs.cancel(job.id)
        self.notify(f"Asked {', '.join(j.title for j in running)} to stop at its next safe point.")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "restore_resume":
            return self.restore.can_resume
        if action == "restore_rollback":
            return self.restore.can_rollback
        return True

    # --- settings -----------------------------------------------------------------------

    def apply_settings(self, settings: Settings) -> None:
        old, self.settings = self.settings, settings
        self.sub_title = self.describe_target()
        self.settings_changed.publish(settings)
        if self.watch_stack and (old.install.compose_project, old.database.service) != (
                settings.install.compose_project, settings.database.service):
            self.restart_stack_watch()
        self.refresh_status(again=True)

    # --- navigation -------------------------------------------------------------------

    def action_goto(self, name: str) -> None:
        if name not in self.screen_specs or name == self.current_mode:
            return
        if self._exit:
            return  # a key typed just after quitting must not mount a screen into a closing app
        # A modal (help, a dialog) belongs to where it was opened: close it first.
        while len(self.screen_stack) > 1 and self.screen.is_modal:
            self.pop_screen()
        leave = getattr(self.screen, "confirm_leave", None)  # the restore wizard asks before it is left
        if leave is not None:
            leave(lambda: self._switch_to(name))
            return
        self._switch_to(name)

    def _switch_to(self, name: str) -> None:
        if self._exit or name == self.current_mode:
            return
        self._mode_history.append(self.current_mode)
        self._mode_history = self._mode_history[-20:]
        self.switch_mode(name)

    def action_go_back(self) -> None:
        """Escape: close a dialog, else the screen before, else the dashboard (Textual's own
        `action_back` is async and only pops screens)."""
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self._mode_history:
            self.switch_mode(self._mode_history.pop())
        elif self.current_mode != "dashboard":
            self.switch_mode("dashboard")

    def action_help(self) -> None:
        from fovea_tui.tui.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
            return
        self.push_screen(HelpScreen(self.screen))

    def action_refresh(self) -> None:
        self.refresh_status()
        self.notify("Refreshing status…", timeout=2)

    async def action_quit(self) -> None:
        """Quit; asks first while a job or a restore is at work, and never leaves a restore
        behind without saying what became of it and how to follow it."""
        from fovea_tui.engine import restore as restore_engine

        running = self.jobs.running()
        try:
            restore = restore_engine.active_restore(self.settings)
        except (FoveaError, OSError):
            restore = None
        if not running and restore is None:
            self.exit(0)
            return
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        questions = []
        if running:
            questions.append(f"{', '.join(j.title for j in running)} still running: quitting cancels it.")
        if restore is not None:
            questions.append(self._restore_on_quit(restore)[0])

        def done(ok: bool | None) -> None:
            if not ok:
                return
            self.jobs.cancel_all()
            message = None
            if restore is not None:
                if restore_engine.unconfirmed(restore):
                    restore_engine.cancel(self.settings, restore["id"])
                message = self._restore_on_quit(restore)[1]
            self.exit(0, message=message)
        self.push_screen(ConfirmDialog(" ".join(questions) + " Quit?", confirm_label="Quit",
                                       title="Restore running" if restore is not None else "Jobs running"), done)

    @staticmethod
    def _restore_on_quit(restore: dict) -> tuple[str, str]:
        """(the question before quitting, the lines printed once the terminal is back)."""
        from fovea_tui.engine import restore as restore_engine

        job_id = restore["id"]
        follow = f"Follow it: {restore_engine.follow_command(job_id)}"
        if restore_engine.unconfirmed(restore):
            safety = restore_engine.safety_dump_name(restore)
            kept = f" The safety dump {safety} is kept." if safety else ""
            return (f"Restore {job_id} is not confirmed yet: quitting cancels it (nothing has been changed).{kept}",
                    f"Restore {job_id} cancelled before its confirmation: nothing was changed.{kept}\n{follow}")
        step = next((r.get("title", r["name"]) for r in restore.get("steps", []) if r.get("status") == "running"),
                    restore.get("status", "running"))
        return (f"Restore {job_id} is running ({step}) and carries on after fovea-tui closes.",
                f"Restore {job_id} is still running ({step}).\n{follow}")

    def command_list(self) -> list[tuple[str, str, Callable[[], Any]]]:
        """Everything the palette offers: screens, jobs, refresh, help, quit."""
        out: list[tuple[str, str, Callable[[], Any]]] = []
        for spec in self.screen_specs.values():
            out.append((f"Go to {spec.title}", f"[{spec.key}] {spec.help}",
                        partial(self.action_goto, spec.name)))
        for action, job in JOB_ACTIONS.items():
            out.append((job.title, f"[{job.key}] {job.help}", partial(self.start_job, action)))
        for title, help_text, screen, action in PALETTE_ACTIONS:
            if screen not in self.screen_specs or not self._palette_applies(screen, action):
                continue
            key = self._screen_key(screen, action)
            out.append((title, (f"[{key}] " if key else "") + f"{self.screen_specs[screen].title}: {help_text}",
                        partial(self._run_on, screen, action)))
        if self.jobs.running():
            out.append(("Cancel running jobs", "[c on the dashboard] asks each job to stop at its next safe point",
                        self.action_cancel_jobs))
        setup_help = (f"look again for the compose project, env file and volume path; saves to {self.settings.source}"
                      if self.settings.source else "look for the compose project, env file and volume path")
        out += [
            ("Refresh status", "[ctrl+r] probe the database, volume, env file and stack now", self.action_refresh),
            ("Setup: find the install", setup_help, self._open_setup),
            ("Recover this install from an off-site copy", "a new host: fetch, decrypt, verify, config, env file, "
             "videos, then the guided restore", self._open_recover),
            ("Help", "[?] what each screen does and its keys", self.action_help),
            ("Quit", "[q] leave fovea-tui", self.action_quit),
        ]
        return out

    def _screen_key(self, screen: str, action: str) -> str:
        """The key a screen binds to `action` ("" if none), for the palette's help."""
        spec = self.screen_specs[screen]
        for binding in getattr(spec.load(), "BINDINGS", []):
            if isinstance(binding, Binding) and binding.action == action:
                return binding.key_display or binding.key
        return ""

    def _palette_applies(self, screen: str, action: str) -> bool:
        """Resume needs a restore that can resume; roll back any restore not already undone
        (a finished one too: the Restore screen asks for the typed name first)."""
        if (screen, action) == ("restore", "resume"):
            return self.restore.can_resume
        if (screen, action) == ("restore", "rollback"):
            return self.restore.can_rollback or self.restore.status == "ok"
        return True

    def _run_on(self, screen: str, action: str) -> None:
        """Go to `screen`, then run its `action` (as its key would)."""
        self.action_goto(screen)

        async def run() -> None:
            if self.current_mode == screen:
                await self.run_action(action, self.screen)
        self.call_after_refresh(run)

    def _open_setup(self) -> None:
        from fovea_tui.tui.screens.setup import SetupScreen

        self.push_screen(SetupScreen())

    def _open_recover(self) -> None:
        from fovea_tui.tui.screens.recover import RecoverScreen

        self.push_screen(RecoverScreen())


def create_app(settings: Settings, *, clock: Callable[[], datetime] | None = None, **kwargs: Any) -> FoveaApp:
    """The one way to build the app: launch, tests and screenshots all come through here."""
    return FoveaApp(settings, clock=clock, **kwargs)


def fixed_clock(when: datetime) -> Callable[[], datetime]:
    return lambda: when


__all__ = ["SCREENS", "ScreenSpec", "FoveaApp", "create_app", "fixed_clock", "StatusUpdated"]
