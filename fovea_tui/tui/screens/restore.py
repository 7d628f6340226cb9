"""The restore wizard: choose a dump, pre-flight, type the name, watch every step, report.

The restore itself runs in a detached runner (`engine.jobs`); this screen starts it and then
only follows its state file, so it reattaches after fovea-tui is closed and opened again: on
mount it shows the newest restore job, running or finished, with its log. An interrupted job
(its runner was killed) offers Resume and Roll back.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import ModalScreen
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import (
    Button,
    ContentSwitcher,
    DataTable,
    Footer,
    Header,
    Input,
    Label,
    ProgressBar,
    RichLog,
    SelectionList,
    Static,
)

from fovea_tui import formatting, masking
from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs
from fovea_tui.errors import FoveaError
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.typed import FoveaAppAccess

ICONS = {
    "ok": ("✔", "green"), "failed": ("✘", "bold red"), "skipped": ("–", "dim"), "running": ("▶", "bold yellow"),
    "pending": ("·", "dim"),
}
COPY_ICONS = {"verified": "ok", "renamed_back": "ok", "interrupted": "failed", "lost": "failed", "kept": "pending"}
STATUS_STYLE = {"ok": "bold green", "held": "bold yellow", "rolled_back": "bold yellow", "failed": "bold red", "refused": "bold red",
                "rollback_failed": "bold red", "interrupted": "bold red", "cancelled": "yellow"}
POLL_SECONDS = 0.25
FINAL_SHOWN = (*jobs.FINAL, "interrupted")  # states after which a new restore can be chosen


class DumpsLoaded(Message):
    def __init__(self, entries: list[Any], error: str = "") -> None:
        super().__init__()
        self.entries = entries
        self.error = error


class LoginChecked(Message):
    def __init__(self, result: dict) -> None:
        super().__init__()
        self.result = result


def steps_text(data: dict, now: datetime | None = None) -> Text:
    """The step list: icon, title, duration and detail, undo lines under the steps undone;
    the running step with how long it has run so far (a held step is never "0.0 s")."""
    text = Text()
    for i, rec in enumerate(data.get("steps", []), start=1):
        status = rec.get("status", "pending")
        if status == "running" and not data.get("alive", True):
            icon, style = "!", "bold red"
        else:
            icon, style = ICONS.get(status, ("?", ""))
        text.append(f" {icon} ", style=style)
        text.append(f"{i:>2}. {rec.get('title', rec['name'])}", style="bold" if status == "running" else "")
        if rec.get("duration_s") is not None and status != "running":
            text.append(f"  {formatting.step_time(rec['duration_s'])}", style="dim")
        elif status == "running" and now is not None and rec.get("started_at") and data.get("alive", True):
            started = datetime.fromisoformat(rec["started_at"])
            text.append(f"  {formatting.step_time(max(0.0, (now - started).total_seconds()))} so far", style="dim")
        text.append("\n")
        if status == "running" and data.get("alive", True):
            for line in rec.get("waiting") or []:  # the stop/start countdowns
                text.append(f"       → {masking.redact(line)}\n", style="yellow")
        if rec.get("detail"):
            text.append(f"       {masking.redact(rec['detail'])}\n", style="red" if status == "failed" else "dim")
        undo = rec.get("undo")
        if undo:
            u_icon, u_style = ICONS.get(undo.get("status", "pending"), ("?", ""))
            took = f" ({formatting.step_time(undo['duration_s'])})" if undo.get("duration_s") is not None else ""
            text.append(f"     ↩ {u_icon} undo{took}: {masking.redact(undo.get('detail', '') or '')}\n", style=u_style)
    copy = engine.safety_copy(data) or {}
    if copy.get("mode") == "rename" and copy.get("status"):
        icon, style = ICONS[COPY_ICONS.get(copy["status"], copy["status"])]
        progress = copy.get("progress") or {}
        done = f" {100 * progress['done'] // progress['total']}%" if progress.get("total") else ""
        words = copy.get("detail") or f"writing the safety dump from {copy.get('renamed_to')}{done}"
        text.append(f" {icon} safety copy ({copy['status']}): {masking.redact(words)}\n", style=style)
    return text


def preflight_text(data: dict) -> Text:
    checks = (data.get("facts") or {}).get("preflight") or []
    text = Text()
    if not checks:
        text.append("pre-flight runs before anything is touched…", style="dim")
        return text
    for c in checks:
        _append_check(text, c, blocking=c.get("fatal", True))
    return text


def verification_text(data: dict) -> Text:
    verification = (data.get("facts") or {}).get("verification") or {}
    text = Text()
    for c in verification.get("checks", []):
        _append_check(text, c, blocking=c.get("severity") == "error")
    return text


def _append_check(text: Text, check: dict, *, blocking: bool) -> None:
    """One check as a line: ✔ passed, ✘ failed and blocking, ! failed but only a warning."""
    if check["ok"]:
        text.append(" ✔ ", style="green")
    elif blocking:
        text.append(" ✘ ", style="bold red")
    else:
        text.append(" ! ", style="yellow")
    text.append(f"{check['name']}: ", style="bold")
    text.append(masking.redact(check["detail"]) + "\n")


# The facts an operator chooses by come first, so an 80-column terminal cuts only the name.
DUMP_COLUMNS = ("Time (UTC)", "Kind", "Status", "Age", "Size", "Where", "Dump")
KIND_LABEL = {"regular": ("regular", ""), "legacy": ("legacy", "dim"), "safety": ("pre-restore ⚑", "bold cyan")}


def default_dump(entries: list[Any]) -> int:
    """The row to pre-select: the newest verified regular dump, never a safety dump (a copy
    of what the last restore replaced), else the newest regular one, else the first."""
    for wanted in (lambda e: e.status == "verified" and not e.safety, lambda e: not e.safety):
        index = next((i for i, e in enumerate(entries) if wanted(e)), None)
        if index is not None:
            return index
    return 0


class StepList(Static, can_focus=True):
    """The steps; focusable, so after the confirmation the focus (and the footer's keys) land
    on what is running rather than on a field that has gone."""


class Checklist(SelectionList[int]):
    """A SelectionList whose boxes differ without colour: an X when ticked, blank when not."""

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        index = self.scroll_offset.y + y
        if index >= self.option_count or self.get_option_at_index(index).value in self._selected:
            return strip
        segments = list(strip)
        if len(segments) > 1 and segments[1].text.strip():
            segments[1] = segments[1]._replace(text=" " * len(segments[1].text))
        return Strip(segments, strip.cell_length)


class ConfirmRestore(FoveaAppAccess, ModalScreen[str | None]):  # type: ignore[misc]  # `app` narrowed to the FoveaApp
    """The last question before anything changes: type the database's name.

    Dismisses with the typed name, or None when the operator cancels (Cancel, escape): the
    screen then cancels the waiting job. `close()` dismisses with "" when the job stopped
    waiting by itself (cancelled elsewhere, its runner gone), and nothing more is done.
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel the restore")]
    DEFAULT_CSS = """
    ConfirmRestore { align: center bottom; }  /* the pre-flight above it stays in view */
    ConfirmRestore > Vertical {
        width: 100%; max-width: 96; height: auto; max-height: 100%;
        border: thick $warning; background: $surface; padding: 0 1;
    }
    ConfirmRestore #confirm-question { width: 1fr; padding-bottom: 1; }
    ConfirmRestore #confirm-row { height: auto; }
    ConfirmRestore #confirm-name { width: 1fr; }
    ConfirmRestore #confirm-row Button { margin-left: 1; }
    ConfirmRestore #confirm-keys { width: 1fr; color: $text-muted; }
    """

    def __init__(self, question: str, database: str, *, title: str = "Confirm the restore",
                 go_label: str = "Restore", keys: str = "") -> None:
        """`database` is what must be typed: the database's name, or for missing videos the
        acceptance phrase (`engine.acceptance_phrase`)."""
        super().__init__()
        self.question = question
        self.database = database
        self.title_text, self.go_label = title, go_label
        self.keys = keys or "enter restores once the name matches · escape cancels the restore (nothing is changed)"

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box") as box:
            box.border_title = self.title_text
            yield Label(self.question, id="confirm-question")
            with Horizontal(id="confirm-row"):
                yield Input(placeholder="database name" if self.go_label == "Restore" else f"type {self.database}",
                            id="confirm-name")
                yield Button(self.go_label, id="confirm-go", variant="error", disabled=True)
                yield Button("Cancel", id="confirm-cancel")
            yield Label(self.keys, id="confirm-keys")
        yield Footer()

    def on_mount(self) -> None:
        field = self.query_one("#confirm-name", Input)
        field.cursor_blink = self.app.cursor_blink  # False in snapshots: a blink is never stable
        field.focus()

    @on(Input.Changed, "#confirm-name")
    def _typed(self, event: Input.Changed) -> None:
        self.query_one("#confirm-go", Button).disabled = event.value.strip() != self.database

    @on(Input.Submitted, "#confirm-name")
    @on(Button.Pressed, "#confirm-go")
    def _go(self) -> None:
        typed = self.query_one("#confirm-name", Input).value.strip()
        if typed == self.database:
            self.dismiss(typed)

    @on(Button.Pressed, "#confirm-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def close(self) -> None:
        if self.is_attached and self.app.screen is self:
            self.dismiss("")


class RestoreScreen(FoveaScreen):
    """The guided restore."""

    TITLE = "Restore"
    BINDINGS = [
        Binding("enter", "start", "Check and restore", priority=True),
        Binding("n", "new", "New restore"),
        Binding("u", "resume", "Resume"),
        Binding("z", "rollback", "Roll back"),
        Binding("escape", "leave", "Back"),
        Binding("ctrl+r", "reload_dumps", "Reload dumps", show=False),
    ]
    DEFAULT_CSS = """
    RestoreScreen #switcher, RestoreScreen #choose-pane, RestoreScreen #job-pane { height: 1fr; }
    RestoreScreen #dumps { height: 1fr; }
    RestoreScreen #choose-help { height: auto; padding: 0 1; }
    RestoreScreen #choose-actions { height: auto; padding: 0 1; }
    RestoreScreen #job-status { height: auto; max-height: 6; padding: 0 1; }
    RestoreScreen #job-body { height: 1fr; }
    RestoreScreen #job-top { height: auto; }
    RestoreScreen #steps-box { width: 1fr; height: auto; }
    RestoreScreen #preflight-box { width: 1fr; height: auto; }
    RestoreScreen.-narrow #job-top { layout: vertical; }
    RestoreScreen.-narrow #steps-box, RestoreScreen.-narrow #preflight-box { width: 1fr; }
    RestoreScreen #progress { height: 1; padding: 0 1; }
    RestoreScreen #output { height: 12; border: round $secondary; }
    RestoreScreen #report-box { height: auto; }
    RestoreScreen #handcheck { height: auto; }
    RestoreScreen #checklist { height: auto; max-height: 10; }
    RestoreScreen #login-row { height: auto; }
    RestoreScreen #login-row Input { width: 30; }
    RestoreScreen #actions { height: auto; padding: 0 1; }
    RestoreScreen #actions Button { margin-right: 2; }
    RestoreScreen .hidden { display: none; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.job_id: str | None = None
        self.data: dict = {}
        self._stamp: tuple | None = None
        self._lines: dict[str, int] = {}
        self._entries: list[Any] = []
        self._timer: Timer | None = None
        self._asking: ConfirmRestore | None = None
        self._answered: str | None = None  # the job confirmed or cancelled here: never asked again
        self._answered_videos: str | None = None  # the job whose missing videos were accepted or held here

    # --- layout -----------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header()
        with ContentSwitcher(initial="choose-pane", id="switcher"):
            with Vertical(id="choose-pane"):
                yield Static("Choose the dump to restore (corrupt dumps are never offered). Enter runs the "
                             "pre-flight checks; nothing is changed before you type the database name.",
                             id="choose-help", classes="screen-help")
                yield DataTable(id="dumps", cursor_type="row", zebra_stripes=True)
                with Horizontal(id="choose-actions", classes="actions"):
                    yield Button("Check and restore (enter)", id="start", variant="primary", compact=True)
            with Vertical(id="job-pane"):
                yield Static(id="job-status")
                with VerticalScroll(id="job-body"):
                    with Horizontal(id="job-top"):
                        with Vertical(id="steps-box", classes="box") as box:
                            box.border_title = "Steps"
                            yield StepList(id="steps")
                        with Vertical(id="preflight-box", classes="box") as box:
                            box.border_title = "Pre-flight"
                            yield Static(id="preflight")
                    with Vertical(id="report-box", classes="box hidden") as box:
                        box.border_title = "Report"
                        yield Static(id="verification")
                        with Vertical(id="handcheck"):
                            yield Label("Still to check by hand (space ticks, as you go):")
                            yield Checklist(id="checklist")
                            yield Label("Optional: check a login (credentials are used once, never stored)")
                            with Horizontal(id="login-row"):
                                yield Input(placeholder="username", id="login-user")
                                yield Input(placeholder="password", password=True, id="login-pass")
                                yield Button("Check login", id="login-check")
                            yield Static(id="login-result")
                    yield RichLog(id="output", markup=False, highlight=False, wrap=True, max_lines=2000)
                yield ProgressBar(id="progress", total=100, show_eta=False, classes="hidden")
                with Horizontal(id="actions"):
                    yield Button("Resume (u)", id="resume", variant="warning", classes="hidden", compact=True)
                    yield Button("Roll back (z)", id="rollback", variant="error", classes="hidden", compact=True)
                    yield Button("New restore (n)", id="new", classes="hidden", compact=True)
        yield Footer()

    def on_mount(self) -> None:
        for field in self.query(Input):
            field.cursor_blink = self.app.cursor_blink  # False in snapshots: a blink is never stable
        self.query_one("#checklist", SelectionList).add_options(
            [(item, i) for i, item in enumerate(engine.CHECKLIST)])
        latest = None
        try:
            latest = engine.latest_restore(self.app.settings)
        except (FoveaError, OSError):
            latest = None
        if latest is not None:
            self.attach(latest["id"])
        else:
            self._choose()
        self._timer = self.set_interval(POLL_SECONDS, self.poll_job)
        # a service started by hand shows up as a stack event: the job's words follow it
        self.app.status_changed.subscribe(self, lambda _report: self._check_services())
        self.app.restore_changed.subscribe(self, self._follow_newest)

    def _follow_newest(self, section) -> None:
        """A restore newer than the one shown (started from the CLI, or resumed or rolled back
        from the banner) is shown once the one shown has ended: the operator sees the restore at
        work, not an old one. A restore still at work, or the dump being chosen, is never left."""
        if section.job and self.job_id is not None and section.job != self.job_id \
                and self._status() in FINAL_SHOWN:
            self.attach(section.job)

    def on_screen_resume(self) -> None:
        self._stamp = None  # back on this screen: a job waiting meanwhile asks its question now
        self.poll_job()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Keys show in the footer only where they apply."""
        choosing = self.query_one("#switcher", ContentSwitcher).current == "choose-pane"
        if action in ("start", "reload_dumps"):
            return choosing
        if action == "new":
            return not choosing and self._status() in FINAL_SHOWN
        if action == "resume":
            return not choosing and self._resumable()
        if action == "rollback":
            return not choosing and self._can_roll_back()
        return True

    def _status(self) -> str:
        return jobs.effective_status(self.data) if self.data else ""

    def _resumable(self) -> bool:
        status = self._status()
        facts = self.data.get("facts") or {}
        return status in ("interrupted", "held") or (status == "failed" and self.data.get("phase") == "forward"
                                                      and bool(facts.get("database_dropped")))

    def _can_roll_back(self) -> bool:
        """Interrupted, failed half-way, a failed rollback, or finished (then the typed name is asked)."""
        return (self._resumable() or self._status() == "rollback_failed"
                or (bool(self.data) and engine.finished_restore(self.data) is not None))

    # --- choosing ---------------------------------------------------------------------

    def _choose(self) -> None:
        self.query_one("#switcher", ContentSwitcher).current = "choose-pane"
        self.query_one("#dumps", DataTable).focus()
        self.refresh_bindings()
        self.load_dumps()

    @work(thread=True, exclusive=True, group="restore-dumps")
    def load_dumps(self) -> None:
        from fovea_tui.engine.backups.inventory import load_inventory

        try:
            inventory = load_inventory(self.app.settings)
            entries = [e for e in inventory.entries if e.status != "corrupt"]
            self.post_message(DumpsLoaded(entries, "; ".join(inventory.errors)))
        except FoveaError as exc:
            self.post_message(DumpsLoaded([], str(exc)))

    def on_dumps_loaded(self, message: DumpsLoaded) -> None:
        self._entries = message.entries
        table = self.query_one("#dumps", DataTable)
        now = self.app.now()
        rows = []
        for e in message.entries:
            age = formatting.duration(now - e.time) if now >= e.time else "in the future"
            status = Text(e.status, style={"verified": "green", "unverified": "yellow"}.get(e.status, ""))
            kind, kind_style = KIND_LABEL.get(e.kind, (e.kind, ""))
            rows.append((e.name, (e.time.astimezone(UTC).strftime("%Y-%m-%d %H:%M"), Text(kind, kind_style),
                                  status, age, formatting.size(e.size), ", ".join(e.locations), e.name)))
        # Columns sized here, not when the table next goes idle: rows drawn before that
        # were cached at the header's width and could stay cut short.
        table.clear(columns=True)
        for i, label in enumerate(DUMP_COLUMNS):
            table.add_column(label, width=max([cell_len(label)] + [cell_len(str(cells[i])) for _, cells in rows]))
        for key, cells in rows:
            table.add_row(*cells, key=key)
        if rows:
            table.move_cursor(row=default_dump(message.entries))
        help_text = ("No dumps to restore in the backups directory or off-site." if not message.entries
                     else "Choose the dump to restore: the newest verified regular dump is selected; ⚑ pre-restore "
                          "dumps are the state a past restore replaced. Corrupt dumps are never offered. Enter runs "
                          "the pre-flight checks; nothing is changed before you type the database name.")
        if message.error:
            help_text += f"  Off-site: {message.error}"
        self.query_one("#choose-help", Static).update(help_text)
        self.query_one("#start", Button).disabled = not message.entries

    def selected_dump(self) -> str | None:
        table = self.query_one("#dumps", DataTable)
        if not self._entries or table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        return key.value if key is not None else None

    def action_start(self) -> None:
        if self.query_one("#switcher", ContentSwitcher).current != "choose-pane":
            return
        name = self.selected_dump()
        if name is None:
            self.notify("No dump chosen", severity="warning")
            return
        try:
            job_id = engine.start_restore(self.app.settings, name)
        except FoveaError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.attach(job_id)

    @on(DataTable.RowSelected, "#dumps")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_start()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    def action_new(self) -> None:
        if self.data and self._status() in engine.ACTIVE:
            self.notify("A restore is running; it must finish first", severity="warning")
            return
        self.job_id = None
        self.data = {}
        self._stamp = None
        self._choose()

    def action_reload_dumps(self) -> None:
        self.load_dumps()

    # --- leaving ------------------------------------------------------------------------

    def action_leave(self) -> None:
        """Escape: never a silent way out of a restore that is at work."""
        self.confirm_leave(self.app.action_go_back, escape=True)

    def confirm_leave(self, then, *, escape: bool = False) -> bool:
        """Before the operator leaves this screen: a restore not confirmed yet is cancelled
        (asked first); one that runs carries on (escape asks, so nobody takes escape for a
        stop). Calls `then` when leaving goes ahead; False when there was nothing to ask."""
        if not self.data or self._status() not in engine.ACTIVE:
            then()
            return False
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        job_id = self.data["id"]
        if engine.unconfirmed(self.data):
            safety = engine.safety_dump_name(self.data)
            question = (f"Restore {job_id} is not confirmed yet: leaving cancels it. Nothing has been changed"
                        + (f"; the safety dump {safety} is kept." if safety else ".") + " Leave and cancel it?")

            def done(ok: bool | None) -> None:
                if ok:
                    self._cancel_job()
                    then()
            self.app.push_screen(ConfirmDialog(question, confirm_label="Cancel the restore and leave",
                                               cancel_label="Stay", title="Leave the restore?"), done)
            return True
        if not escape:
            then()
            return False
        question = (f"Restore {job_id} keeps running in the background: leaving this screen does not stop it. "
                    "The dashboard's Jobs panel shows it; R comes back here. Leave this screen?")
        self.app.push_screen(ConfirmDialog(question, confirm_label="Leave", cancel_label="Stay",
                                           title="The restore is running"),
                             lambda ok: then() if ok else None)
        return True

    def _cancel_job(self) -> None:
        if self.job_id is None:
            return
        engine.cancel(self.app.settings, self.job_id)
        self._answered = self.job_id
        safety = engine.safety_dump_name(self.data)
        self.app.notify(f"The safety dump {safety} is kept." if safety else "Cancelled at its confirmation.",
                        title="Restore cancelled: nothing was changed", timeout=10)

    # --- following a job ----------------------------------------------------------------

    def attach(self, job_id: str) -> None:
        self.job_id = job_id
        self.data = {}
        self._stamp = None
        self._lines = {}
        self.query_one("#output", RichLog).clear()
        self.query_one("#switcher", ContentSwitcher).current = "job-pane"
        self.query_one("#steps", StepList).focus(scroll_visible=False)
        self.poll_job()
        self.refresh_bindings()

    def poll_job(self) -> None:
        if self.job_id is None:
            return
        directory = jobs.jobs_dir(self.app.settings)
        path = jobs.state_path(directory, self.job_id)
        try:
            st = path.stat()
        except FileNotFoundError:
            return
        alive = jobs.is_alive(directory, self.job_id)
        stamp = (st.st_mtime_ns, st.st_size, alive)
        if stamp == self._stamp:
            if alive and self.data:  # nothing new, but the running step's time goes on
                self.query_one("#steps", StepList).update(steps_text(self.data, self.app.now()))
            return
        self._stamp = stamp
        try:
            data = jobs.read_state(directory, self.job_id)
        except FoveaError:
            return
        data["alive"] = alive
        self.show(data)

    def show(self, data: dict) -> None:
        """Draw a job's state (also called by tests with a state of their choosing)."""
        first = not self.data or self.data.get("id") != data.get("id")
        if not first and "still_stopped" in self.data:
            data.setdefault("still_stopped", self.data["still_stopped"])  # until the check answers again
        self.data = data
        status = jobs.effective_status(data)
        facts = data.get("facts") or {}
        self._show_title(data)
        self._check_services()
        self.query_one("#steps", StepList).update(steps_text(data, self.app.now()))
        self.query_one("#preflight", Static).update(preflight_text(data))
        self._show_progress(data)
        self._show_output(data, first)
        self._show_confirm(data)
        report = self.query_one("#report-box")
        report.set_class(not (status == "ok" or facts.get("verification")), "hidden")
        self.query_one("#handcheck").set_class(status != "ok", "hidden")
        if facts.get("verification") or status == "ok":
            self.query_one("#verification", Static).update(verification_text(data) or Text("no verification ran"))
        self.query_one("#resume", Button).set_class(not self._resumable(), "hidden")
        self.query_one("#rollback", Button).set_class(not self._can_roll_back(), "hidden")
        self.query_one("#new", Button).set_class(status not in FINAL_SHOWN, "hidden")
        self.refresh_bindings()

    def _show_title(self, data: dict) -> None:
        status = jobs.effective_status(data)
        facts = data.get("facts") or {}
        title = Text()
        title.append(status.upper().replace("_", " "), style=STATUS_STYLE.get(status, "bold"))
        title.append(f"  Restore of {facts.get('dump') or Path(str(data['params'].get('dump', ''))).name}", style="bold")
        title.append(f"  ·  job {data['id']}", style="dim")
        title.append("\n" + masking.redact(engine.describe_status(data)))
        self.query_one("#job-status", Static).update(title)

    def _check_services(self) -> None:
        """Ask the engine (off the UI thread) which services the stopped job left stopped are
        still down, so its words do not name one the operator started again by hand."""
        if self.data and engine.stopped_by(self.data):
            self._services_worker(dict(self.data))

    @work(thread=True, exclusive=True, group="restore-services", exit_on_error=False)
    def _services_worker(self, data: dict) -> None:
        engine.check_services(self.app.settings, data)
        self.app.call_from_thread(self._services_checked, data)

    def _services_checked(self, checked: dict) -> None:
        if self.data.get("id") != checked.get("id") or "still_stopped" not in checked:
            return
        self.data["still_stopped"] = checked["still_stopped"]
        self._show_title(self.data)

    def _show_progress(self, data: dict) -> None:
        bar = self.query_one("#progress", ProgressBar)
        running = next((r for r in data.get("steps", []) if r.get("status") == "running"), None)
        progress = (running or {}).get("progress") or {}
        copy = engine.safety_copy(data) or {}
        if running is None and copy.get("status") == "running":
            running, progress = {"name": "safety_copy"}, copy.get("progress") or {}
        if running and running["name"] in ("preflight", "restore", "videos", "safety_copy") and progress.get("total") \
                and data.get("alive", True):
            bar.remove_class("hidden")
            bar.update(total=progress["total"], progress=progress["done"])
        else:
            bar.add_class("hidden")

    def _show_output(self, data: dict, first: bool) -> None:
        log = self.query_one("#output", RichLog)
        for rec in data.get("steps", []):
            name = rec["name"]
            total = rec.get("output_total", 0)
            seen = self._lines.get(name, 0)
            if total > seen:
                for line in rec.get("output", [])[-(total - seen):]:
                    log.write(f"[{name}] {masking.redact(line)}")
                self._lines[name] = total

    def _show_confirm(self, data: dict) -> None:
        """A job waiting for its confirmation (or for the acceptance of missing videos) asks in a
        dialog, while this screen is the one shown."""
        awaiting = data.get("awaiting")
        answered = self._answered_videos if awaiting == "missing_videos" else self._answered
        waiting = (awaiting in ("confirm", "missing_videos") and data.get("alive", True)
                   and data.get("id") != answered)
        if not waiting:
            if self._asking is not None:
                self._asking.close()
                self._asking = None
            return
        if self._asking is not None or not self.is_current:
            return
        if awaiting == "missing_videos":
            self._ask_videos(data)
            return
        name = data["params"].get("database", "")
        question = engine.confirm_question(data) + f"\n\nType {name!r} to go ahead."
        self._asking = ConfirmRestore(question, name)
        self.app.push_screen(self._asking, self._confirmed)

    def _ask_videos(self, data: dict) -> None:
        from fovea_tui.engine.restore.videos import missing_words

        found = (data.get("facts") or {}).get("videos") or {}
        phrase = engine.acceptance_phrase(found.get("missing", 0))
        who = ", ".join(found.get("reconcilers") or ["the backend"])
        question = (f"{missing_words(found)}.\n\nStarting {who} deletes their rows and everything that depends on "
                    f"them. Type {phrase!r} to start it anyway.")
        self._asking = ConfirmRestore(
            question, phrase, title="Videos missing", go_label="Start anyway",
            keys="escape holds the restore: the database stays restored and the services stopped; bring the "
                 "files back and resume")
        self.app.push_screen(self._asking, self._accepted)

    def _accepted(self, typed: str | None) -> None:
        self._asking = None
        if typed == "" or self.job_id is None:
            return
        self._answered_videos = self.job_id
        if typed is None:
            engine.cancel(self.app.settings, self.job_id)
            self.notify("Held: the backend was not started; bring the videos back and resume", timeout=8)
            return
        engine.accept_missing_videos(self.app.settings, self.job_id, typed)
        self.notify("Accepted: the backend starts and deletes the missing videos' rows", timeout=8)

    # --- confirm ------------------------------------------------------------------------

    def _confirmed(self, typed: str | None) -> None:
        self._asking = None
        if typed == "" or self.job_id is None:
            return  # the job stopped waiting by itself
        if typed is None:
            self._cancel_job()
            self._stamp = None
            return
        engine.confirm(self.app.settings, self.job_id, typed)
        self._answered = self.job_id
        self.query_one("#steps", StepList).focus(scroll_visible=False)
        self.notify("Confirmed: the restore goes ahead", timeout=4)

    # --- after a crash -------------------------------------------------------------------

    def action_resume(self) -> None:
        if self.job_id is None or not self._resumable():
            return
        try:
            # A job stopped before its confirmation asks for the name again when it resumes; a held
            # one asks here again for the videos still missing.
            if self._status() == "held":
                self._answered_videos = None
                engine.resume_restore(self.app.settings, self.job_id, attended=True)
            else:
                engine.resume_restore(self.app.settings, self.job_id, confirmed=not engine.unconfirmed(self.data))
        except FoveaError as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self._stamp = None
        self.query_one("#steps", StepList).focus(scroll_visible=False)
        self.notify("Resuming the restore")

    @on(Button.Pressed, "#resume")
    def _resume(self) -> None:
        self.action_resume()

    def action_rollback(self) -> None:
        if self.job_id is None or not self._can_roll_back():
            return
        from fovea_tui.tui.widgets.confirm import ConfirmDialog, TypedConfirmDialog

        finished = engine.finished_restore(self.data)

        def go(ok: bool | None) -> None:
            if not ok or self.job_id is None:
                return
            try:
                engine.rollback_restore(self.app.settings, self.job_id,
                                        typed=finished.database if finished is not None else None)
            except FoveaError as exc:
                self.notify(str(exc), severity="error", timeout=8)
                return
            self._stamp = None
            self.query_one("#steps", StepList).focus(scroll_visible=False)
            self.notify("Rolling back")

        if finished is not None:  # a new destructive act: confirmed like a restore
            self.app.push_screen(TypedConfirmDialog(finished.question, finished.database,
                                                    confirm_label="Roll back", title="Roll back a finished restore"), go)
            return
        self.app.push_screen(ConfirmDialog(f"Roll back? {engine.rollback_plan(self.data)}", confirm_label="Roll back",
                                           title="Roll back"), go)

    @on(Button.Pressed, "#rollback")
    def _rollback(self) -> None:
        self.action_rollback()

    @on(Button.Pressed, "#new")
    def _new(self) -> None:
        self.action_new()

    # --- login check -----------------------------------------------------------------------

    @on(Button.Pressed, "#login-check")
    def _login(self) -> None:
        user = self.query_one("#login-user", Input).value
        password = self.query_one("#login-pass", Input).value
        if not user or not password:
            self.query_one("#login-result", Static).update(Text("type a username and a password", style="yellow"))
            return
        self.query_one("#login-result", Static).update(Text("checking…", style="dim"))
        self._check_login(user, password)

    @work(thread=True, exclusive=True, group="restore-login")
    def _check_login(self, user: str, password: str) -> None:
        result = engine.check_login(self.app.settings.stack.health_url, user, password)
        self.post_message(LoginChecked(result))

    def on_login_checked(self, message: LoginChecked) -> None:
        self.query_one("#login-pass", Input).value = ""  # used once, never kept
        ok = message.result["ok"]
        self.query_one("#login-result", Static).update(
            Text(("✔ " if ok else "✘ ") + masking.redact(message.result["detail"]), style="green" if ok else "red"))


__all__ = ["RestoreScreen", "steps_text", "preflight_text"]
