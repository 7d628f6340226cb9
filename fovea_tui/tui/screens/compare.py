"""Compare a dump with the live database and bring back one video or persona (`c` on Backups).

The engine's session (the dump in a scratch database) lives in one thread worker for as long
as the screen is open: the screen sends it requests (rows, a dry run, apply) on a queue and
it posts messages back; leaving the screen closes it, which drops the scratch database.
"""

from __future__ import annotations

import queue
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui.engine.progress import CancelToken, ProgressEvent
from fovea_tui.engine.selective.changeset import ADD_MISSING, REPLACE, ChangeSet
from fovea_tui.engine.selective.compare import Comparison, ScopeDiff
from fovea_tui.engine.selective.scopes import printable
from fovea_tui.engine.selective.session import open_session
from fovea_tui.errors import FoveaError
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.widgets.confirm import ConfirmDialog

SHOWN = 30
PERSONA_CHOICES = ("ask", "recreate", "leave out")


class Answer(Message):
    """What the session thread answers: `kind` says to what; `error` when it failed."""

    def __init__(self, kind: str, value: Any = None, error: str | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.value = value
        self.error = error


class CompareScreen(FoveaScreen):
    TITLE = "Compare"
    BINDINGS = [
        Binding("enter", "rows", "Rows"),
        Binding("r", f"plan('{REPLACE}')", "Dry run: replace"),
        Binding("a", f"plan('{ADD_MISSING}')", "Dry run: add missing"),
        Binding("p", "personas", "Gone personas: ask/recreate/leave out"),
        Binding("y", "apply", "Apply the dry run"),
    ]
    DEFAULT_CSS = """
    CompareScreen #caption { height: auto; padding: 0 1; color: $text-muted; }
    CompareScreen #main { height: 1fr; }
    CompareScreen #scopes { width: 1fr; height: 1fr; }
    CompareScreen #detail-pane { width: 1fr; height: 1fr; border-left: solid $primary 50%; padding: 0 1; }
    """

    def __init__(self, dump: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.dump = dump
        self.cancel = CancelToken()
        self.requests: queue.Queue[tuple] = queue.Queue()
        self.comparison: Comparison | None = None
        self.plan: ChangeSet | None = None
        self.personas = 0  # index in PERSONA_CHOICES

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static(f"loading {self.dump} into a scratch database…", id="caption")
        with Horizontal(id="main"):
            yield DataTable(id="scopes", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="detail-pane"):
                yield Static("", id="detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#scopes", DataTable)
        table.add_column("Kind", key="kind")
        table.add_column("Differs", key="differs")
        table.add_column("What", key="what")
        self.run_worker(self._serve, thread=True, exit_on_error=False, group="compare")

    def on_unmount(self) -> None:
        self.cancel.cancel("the Compare screen was closed")
        self.requests.put(("close",))

    # --- the session thread ----------------------------------------------------------

    def _serve(self) -> None:
        def progress(event: ProgressEvent) -> None:
            if event.total:
                self.post_message(Answer("progress", f"{event.phase}: {event.done * 100 // event.total} %"))

        try:
            with open_session(self.settings, self.dump, cancel=self.cancel, progress=progress) as session:
                self.post_message(Answer("compared", session.compare()))
                while True:
                    request = self.requests.get()
                    if request[0] == "close":
                        return
                    try:
                        self.post_message(Answer(request[0], self._handle(session, request)))
                    except FoveaError as exc:
                        self.post_message(Answer(request[0], error=str(exc)))
        except FoveaError as exc:
            self.post_message(Answer("compared", error=str(exc)))

    @staticmethod
    def _handle(session, request: tuple) -> Any:
        kind = request[0]
        if kind == "rows":
            return session.rows(request[1])
        if kind == "plan":
            _, scope, mode, choice = request
            return session.changeset(scope, mode, recreate_personas=choice == "recreate",
                                     leave_out_orphans=choice == "leave out")
        if kind == "apply":
            return session.apply(request[1])
        raise ValueError(kind)

    # --- answers ---------------------------------------------------------------------

    def on_answer(self, message: Answer) -> None:
        caption = self.query_one("#caption", Static)
        detail = self.query_one("#detail", Static)
        if message.kind == "progress":
            caption.update(f"loading {self.dump}: {message.value}")
            return
        if message.error:
            detail.update(f"{message.kind} failed: {message.error}")
            if message.kind == "compared":
                caption.update(f"cannot compare {self.dump}")
            return
        if message.kind == "compared":
            self._show_comparison(message.value)
        elif message.kind == "rows":
            detail.update(rows_text(message.value))
        elif message.kind == "plan":
            self.plan = message.value
            detail.update(plan_text(message.value) + "\n\ny: apply this (asks first)")
        elif message.kind == "apply":
            self.plan = None
            detail.update(message.value.message)
            self.notify(message.value.message, timeout=10)

    def _show_comparison(self, comparison: Comparison) -> None:
        self.comparison = comparison
        table = self.query_one("#scopes", DataTable)
        table.clear()
        for scope in comparison.differing:
            table.add_row(scope.kind, str(scope.differs), scope.summary(), key=f"{scope.kind}:{scope.id}")
        self.query_one("#caption", Static).update(
            f"{comparison.dump} against {comparison.database}: {len(comparison.differing)} of "
            f"{len(comparison.scopes)} differ · enter rows · r/a dry run · y apply")
        if not comparison.differing:
            self.query_one("#detail", Static).update("The dump and the live database hold the same rows.")

    # --- actions ---------------------------------------------------------------------

    def _selected(self) -> ScopeDiff | None:
        if self.comparison is None or not self.comparison.differing:
            return None
        row = self.query_one("#scopes", DataTable).cursor_row
        differing = self.comparison.differing
        return differing[row] if 0 <= row < len(differing) else None

    def on_data_table_row_selected(self, _event: DataTable.RowSelected) -> None:
        self.action_rows()

    def action_rows(self) -> None:
        scope = self._selected()
        if scope is not None:
            self.query_one("#detail", Static).update(f"reading the rows of {printable(scope.name)}…")
            self.requests.put(("rows", scope))

    def action_plan(self, mode: str) -> None:
        scope = self._selected()
        if scope is not None:
            self.query_one("#detail", Static).update(f"dry run ({mode}) for {printable(scope.name)}…")
            self.requests.put(("plan", scope, mode, PERSONA_CHOICES[self.personas]))

    def action_personas(self) -> None:
        self.personas = (self.personas + 1) % len(PERSONA_CHOICES)
        self.notify(f"rows of personas deleted since: {PERSONA_CHOICES[self.personas]} (make a new dry run)")

    def action_apply(self) -> None:
        plan = self.plan
        if plan is None or plan.empty:
            self.notify("Make a dry run first (r or a) of something that differs.", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.query_one("#detail", Static).update("applying…")
                self.requests.put(("apply", plan))

        self.app.push_screen(ConfirmDialog(
            f"Apply to the live database {plan.database}? An undo file is written first; rows edited "
            "meanwhile stop it.", plan_text(plan), confirm_label="Apply", title="Selective restore"), answered)


def rows_text(rows) -> str:
    lines = [f"{rows.kind} {printable(rows.name)}"]
    for t in rows.tables:
        for what, ids, side in (("only in the dump", t.only_dump, t.dump), ("only live", t.only_live, t.live),
                                ("changed", t.changed, t.live)):
            if ids:
                lines.append(f"{t.table}: {len(ids)} {what}")
                lines += [f"  {printable(i)[:36]}  {side[i].summary(t.table)}" for i in ids[:SHOWN]]
                if len(ids) > SHOWN:
                    lines.append(f"  … and {len(ids) - SHOWN} more")
    return "\n".join(lines) if len(lines) > 1 else lines[0] + ": same rows"


def plan_text(cs: ChangeSet) -> str:
    lines = ["dry run: " + cs.describe()]
    for c in cs.ordered()[:SHOWN]:
        lines.append(f"{c.action:<6} {c.table:<15} {printable(c.id)[:36]}  {c.label}")
    if len(cs.changes) > SHOWN:
        lines.append(f"… and {len(cs.changes) - SHOWN} more")
    lines += [f"note: {n}" for n in cs.notes]
    return "\n".join(lines)
