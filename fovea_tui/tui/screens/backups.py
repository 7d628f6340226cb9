"""The backup inventory: every dump, local and off-site, with its status and retention bucket.

A sortable table (click a header, or `o` / `i`), a detail pane for the highlighted dump and
a size-over-time chart. The inventory is listed in a thread worker; rows are added in
batches and updated in place by key (the dump name), so thousands of dumps neither block
the UI nor lose the cursor on refresh. It refreshes by itself when the backups directory
changes (polled every few seconds: one `stat`) and when a job of the app finishes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui import formatting
from fovea_tui.engine.backups.inventory import Entry, Inventory, load_inventory, verify_entries
from fovea_tui.engine.backups.retention import Decision, Plan
from fovea_tui.engine.backups.retention import plan as retention_plan
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import plural
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.widgets.size_chart import SizeChart

STATUS_STYLE = {"verified": "green", "unverified": "yellow", "corrupt": "bold red", "mismatch": "bold magenta"}
# Status right after the time: a narrow terminal cuts columns from the right, and whether a
# dump can be restored must never be shown by colour alone.
COLUMNS = [
    ("time", "Time (UTC)"),
    ("status", "Status"),
    ("age", "Age"),
    ("size", "Size"),
    ("where", "Where"),
    ("bucket", "Bucket / reason"),
    ("warnings", "Warnings"),
]
BATCH = 500  # rows added between two repaints
POLL_SECONDS = 3.0


class Cell(Text):
    """A table cell that sorts by `sort_key` rather than by its text."""

    def __init__(self, text: str, style: str = "", sort_key: Any = None) -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis")
        self.sort_key = text if sort_key is None else sort_key

    def __eq__(self, other: object) -> bool:  # cells compare by what they show
        return isinstance(other, Text) and self.plain == other.plain and str(self.style) == str(other.style)

    __hash__ = None  # type: ignore[assignment]


class InventoryLoaded(Message):
    def __init__(self, inventory: Inventory | None, plan: Plan | None, error: str = "") -> None:
        super().__init__()
        self.inventory = inventory
        self.plan = plan
        self.error = error


class ManifestLoaded(Message):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


def load_view(settings) -> tuple[Inventory, Plan | None]:
    """The inventory and retention's view of it (what each dump fills): thread-safe, no UI."""
    from fovea_tui.engine.backups.prune import policy_for

    inventory = load_inventory(settings)
    try:
        plan = retention_plan(inventory.candidates(), policy_for(settings))
    except FoveaError:
        plan = None
    return inventory, plan


def bucket_cell(decision: Decision | None, entry: Entry) -> Cell:
    if entry.pending_deletion:
        return Cell("pending deletion", "red", 3)
    if decision is None:
        return Cell("", "", 9)
    if entry.safety:
        return Cell("safety dump: outside the policy", "cyan", 0)
    if not decision.keep:
        why = decision.reasons[0] if decision.reasons else "no rule keeps it"
        return Cell(f"forget ({why})" if decision.reasons else "forget", "red", 2)
    return Cell(", ".join(decision.reasons), "", 1)


def entry_cells(entry: Entry, decision: Decision | None, now: datetime) -> tuple[Cell, ...]:
    t = entry.time.astimezone(UTC)
    # minutes are enough here (the detail pane has the seconds), so the status column fits at 120
    when = t.strftime("%Y-%m-%d") + ("      " if entry.precision == "day" else t.strftime(" %H:%M"))
    ts = t.timestamp()
    where = entry.where.replace("+", " + ")
    return (
        Cell(when, "", ts),
        Cell(entry.status, STATUS_STYLE.get(entry.status, ""), entry.status),
        Cell(formatting.duration(now - t) if now >= t else "in the future", "", -ts),
        Cell(formatting.size(entry.size), "", entry.size),
        Cell(where, "" if len(entry.locations) == 2 and not entry.incomplete else "yellow", where),
        bucket_cell(decision, entry),
        Cell("; ".join(entry.warnings), "yellow" if entry.warnings else "", len(entry.warnings)),
    )


def detail_text(entry: Entry | None, decision: Decision | None = None) -> Text:
    if entry is None:
        return Text("no dump selected", style="dim")
    out = Text()
    out.append(entry.name + "\n", style="bold")
    t = entry.time.astimezone(UTC)
    out.append(f"time     {t:%Y-%m-%d %H:%M:%S} UTC" + (" (day only)" if entry.precision == "day" else "") + "\n")
    out.append(f"kind     {entry.kind}\n")
    out.append("status   ")
    out.append(entry.status, style=STATUS_STYLE.get(entry.status, ""))
    out.append(f"  {entry.status_detail}\n")
    for loc, copy in entry.copies.items():
        out.append(f"{loc:<8} {formatting.size(copy.size)} ({copy.size} bytes), {copy.status}\n")
    sib = entry.siblings()
    out.append("manifest " + (", ".join(sib["manifest"]) or "none") + "\n")
    out.append("env copy " + (", ".join(sib["env"]) or "none") + "\n")
    if entry.sha256:
        out.append(f"sha256   {entry.sha256[:16]}…\n")
    if decision is not None:
        out.append("retention " + ("keep: " if decision.keep else "forget: ") + (", ".join(decision.reasons) or "-")
                   + "\n", style="" if decision.keep else "red")
    if entry.manifest_error:
        out.append(f"manifest: {entry.manifest_error}\n", style="red")
    if entry.manifest is not None:
        m = entry.manifest
        out.append(f"\nrows per table ({sum(m.tables.values())} in {plural(len(m.tables), 'table')})\n", style="bold")
        for table, rows in sorted(m.tables.items()):
            out.append(f"  {table:<22} {rows:>10}\n")
        out.append(f"\nmigrations ({len(m.migrations)})\n", style="bold")
        for name in m.migrations[-8:]:
            out.append(f"  {name}\n")
        if len(m.migrations) > 8:
            out.append(f"  … and {len(m.migrations) - 8} earlier\n", style="dim")
    elif "offsite" in entry.manifests:
        out.append("\nmanifest off-site only: loading…\n", style="dim")
    if entry.warnings:
        out.append("\nwarnings\n", style="bold")
        for w in entry.warnings:
            out.append(f"  ! {w}\n", style="yellow")
    return out


class BackupsScreen(FoveaScreen):
    TITLE = "Backups"
    BINDINGS = [
        Binding("ctrl+r", "reload", "Reload"),
        Binding("o", "sort_next", "Sort column"),
        Binding("i", "sort_reverse", "Reverse"),
        Binding("x", "verify", "Verify selected"),
        Binding("c", "compare", "Compare with live"),
    ]
    DEFAULT_CSS = """
    BackupsScreen #caption { height: auto; padding: 0 1; color: $text-muted; }
    BackupsScreen #main { height: 1fr; }
    BackupsScreen #inventory { width: 1fr; height: 1fr; }
    BackupsScreen #detail-pane { width: 38; height: 1fr; border-left: solid $primary 50%; padding: 0 1; }
    BackupsScreen.-wide #detail-pane { width: 56; }
    BackupsScreen.-wide SizeChart { height: 16; }
    BackupsScreen SizeChart { height: 11; border-top: solid $primary 50%; }
    BackupsScreen.-narrow #detail-pane { width: 30; }
    BackupsScreen.-narrow SizeChart { display: none; }
    """

    def __init__(self, *, poll_seconds: float | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.poll_seconds = POLL_SECONDS if poll_seconds is None else poll_seconds
        self.inventory: Inventory | None = None
        self.plan: Plan | None = None
        self.decisions: dict[str, Decision] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._sort: tuple[str, bool] = ("time", True)  # column, reverse
        self._signature: tuple | None = None
        self._selected: str | None = None
        self._generation = 0  # the load whose rows are being applied

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("listing the backups…", id="caption")
        with Horizontal(id="main"):
            yield DataTable(id="inventory", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="detail-pane"):
                yield Static(detail_text(None), id="detail")
        yield SizeChart(id="chart")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#inventory", DataTable)
        for key, label in COLUMNS:
            table.add_column(label, key=key)
        self._signature = self._dir_signature()
        self.action_reload()
        if self.poll_seconds > 0:
            self.set_interval(self.poll_seconds, self._poll)
        self.follow_changes()

    # --- loading --------------------------------------------------------------------

    def now(self) -> datetime:
        now = getattr(self.app, "now", None)
        return now() if callable(now) else datetime.now(UTC)

    def action_reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="inventory", exit_on_error=False)
    def _load(self) -> None:
        try:
            inventory, plan = load_view(self.settings)
        except FoveaError as exc:
            self.post_message(InventoryLoaded(None, None, str(exc)))
            return
        self.post_message(InventoryLoaded(inventory, plan))

    def _dir_signature(self) -> tuple:
        sig: list[tuple[int, int] | None] = []
        for path in (self.settings.backups_dir, self.settings.state_dir):
            try:
                st = os.stat(path)
                sig.append((st.st_mtime_ns, st.st_ino))
            except OSError:
                sig.append(None)
        return tuple(sig)

    def _poll(self) -> None:
        sig = self._dir_signature()
        if sig != self._signature:
            self._signature = sig
            self.action_reload()

    def on_inventory_loaded(self, message: InventoryLoaded) -> None:
        caption = self.query_one("#caption", Static)
        if message.inventory is None:
            caption.update(Text(f"cannot list the backups: {message.error}", style="bold red"))
            return
        inv = message.inventory
        self.inventory, self.plan = inv, message.plan
        self.decisions = {}
        if message.plan is not None:
            self.decisions = {d.candidate.name: d for d in message.plan.keep + message.plan.forget}
        table = self.query_one("#inventory", DataTable)
        fresh = {e.name: e for e in inv.entries}
        for name in [n for n in self._cells if n not in fresh]:
            table.remove_row(name)
            del self._cells[name]
        caption.update(self._caption(inv))
        self._generation += 1
        self._apply_rows(self._generation, inv, 0, 0)

    def _apply_rows(self, generation: int, inv: Inventory, start: int, added: int) -> None:
        """Add or update one batch of rows, then let the screen repaint before the next:
        a 10,000-dump inventory fills in visibly instead of freezing the screen."""
        if generation != self._generation:
            return  # a newer load superseded this one
        table = self.query_one("#inventory", DataTable)
        now = self.now()
        end = min(start + BATCH, len(inv.entries))
        for entry in inv.entries[start:end]:
            cells = entry_cells(entry, self.decisions.get(entry.name), now)
            old = self._cells.get(entry.name)
            if old is None:
                table.add_row(*cells, key=entry.name)
                added += 1
            elif old != cells:
                for (col, _), new_cell, old_cell in zip(COLUMNS, cells, old, strict=True):
                    if new_cell != old_cell:
                        table.update_cell(entry.name, col, new_cell)
            self._cells[entry.name] = cells
        if end < len(inv.entries):
            self.call_after_refresh(self._apply_rows, generation, inv, end, added)
            return
        if added:  # new rows take their place in the chosen order; updated ones stay put
            self._apply_sort()
        self.query_one(SizeChart).set_points((e.time, e.size, e.status) for e in reversed(inv.entries))
        self._keep_cursor()

    def _caption(self, inv: Inventory) -> Text:
        c = inv.counts()
        text = Text()
        text.append(formatting.plural(len(inv), "dump"), style="bold")
        text.append(f" in {inv.local_dir}")
        if inv.offsite_url:
            text.append(f" and {inv.offsite_url}")
        text.append(f" · {formatting.size(inv.total_size('local'))} local · ")
        text.append(f"{c['verified']} verified", style="green")
        text.append(" · ")
        text.append(f"{c['unverified']} unverified", style="yellow")
        text.append(" · ")
        text.append(f"{c['corrupt']} corrupt", style="bold red" if c["corrupt"] else "")
        if c["mismatch"]:  # only when there is one: the usual caption stays as it was
            text.append(" · ")
            text.append(f"{c['mismatch']} mismatch (not what the manifest says)", style=STATUS_STYLE["mismatch"])
        if self.plan is not None:
            text.append(f" · policy {self.plan.policy.describe()}: keep {len(self.plan.keep)},"
                        f" forget {len(self.plan.forget)}")
        for stray in inv.unrecognised:
            text.append(f"\n! unrecognised {stray.location} file {stray.name}: {stray.reason}", style="yellow")
        for stray in inv.orphans[:5]:
            text.append(f"\n! orphan {stray.location} {stray.name}", style="yellow")
        for err in inv.errors:
            text.append(f"\n✗ {err}", style="bold red")
        return text

    # --- sorting --------------------------------------------------------------------

    def _apply_sort(self) -> None:
        column, reverse = self._sort
        table = self.query_one("#inventory", DataTable)
        table.sort(column, key=lambda cell: (cell.sort_key, ), reverse=reverse)
        self._keep_cursor()

    def _keep_cursor(self) -> None:
        """Rows moved (a sort, a refresh that added a dump): the cursor stays on the dump the
        operator chose, not on the row number, and the detail pane shows that dump."""
        table = self.query_one("#inventory", DataTable)
        if self._selected is not None and self._selected in self._cells:
            row = table.get_row_index(self._selected)
            if row != table.cursor_row:
                table.move_cursor(row=row, animate=False)
            self._show_detail(self.inventory.find(self._selected) if self.inventory else None)
            return
        self._show_detail(self._highlighted())

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        column = str(event.column_key.value)
        current, reverse = self._sort
        self._sort = (column, not reverse if column == current else column in ("time", "size"))
        self._apply_sort()

    def action_sort_next(self) -> None:
        keys = [k for k, _ in COLUMNS]
        column, reverse = self._sort
        self._sort = (keys[(keys.index(column) + 1) % len(keys)], reverse)
        self._apply_sort()
        self.notify(f"sorted by {dict(COLUMNS)[self._sort[0]]}", timeout=2)

    def action_sort_reverse(self) -> None:
        column, reverse = self._sort
        self._sort = (column, not reverse)
        self._apply_sort()

    # --- detail ---------------------------------------------------------------------

    def _highlighted(self) -> Entry | None:
        if self.inventory is None:
            return None
        table = self.query_one("#inventory", DataTable)
        if table.row_count == 0:
            return None
        try:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
        except Exception:  # noqa: BLE001 - an empty or shrinking table has no cursor row
            return None
        return self.inventory.find(str(key.value))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.inventory is None or event.row_key is None:
            return
        self._show_detail(self.inventory.find(str(event.row_key.value)))

    def _show_detail(self, entry: Entry | None) -> None:
        self._selected = entry.name if entry else None
        self.query_one("#detail", Static).update(detail_text(entry, self.decisions.get(entry.name) if entry else None))
        if entry is not None and entry.manifest is None and entry.manifest_error is None and "offsite" in entry.manifests:
            self._load_manifest(entry)

    @work(thread=True, group="manifest", exit_on_error=False)
    def _load_manifest(self, entry: Entry) -> None:
        if self.inventory is not None:
            self.inventory.load_manifest(entry)
            self.post_message(ManifestLoaded(entry.name))

    def on_manifest_loaded(self, message: ManifestLoaded) -> None:
        if message.name == self._selected:
            self._show_detail(self.inventory.find(message.name) if self.inventory else None)

    # --- actions --------------------------------------------------------------------

    def action_verify(self) -> None:
        entry = self._highlighted()
        if entry is None or entry.local is None:
            self.notify("Select a dump with a local copy to verify.", severity="warning")
            return
        jobs = getattr(self.app, "jobs", None)
        if jobs is None:
            return
        jobs.start("verify", f"Verify {entry.name}", verify_job, self.settings, names=[entry.name])


    def action_compare(self) -> None:
        """Open the selected dump's comparison with the live database (selective restore)."""
        from fovea_tui.tui.screens.compare import CompareScreen

        entry = self._highlighted()
        if entry is None or entry.local is None:
            self.notify("Select a dump with a local copy to compare.", severity="warning")
            return
        self.app.push_screen(CompareScreen(entry.local.key))


def verify_job(settings, *, progress=None, cancel=None, names: list[str] | None = None) -> dict[str, Any]:
    """A JobRunner callable: verify the named dumps' local copies, report their statuses."""
    inventory = load_inventory(settings, include_offsite=False)
    fresh = verify_entries(settings, inventory, names, only_unsettled=False, progress=progress, cancel=cancel,
                           include_offsite=False)
    found = {n: fresh.find(n) for n in names or []}
    outcomes = {n: (f"{e.status}: {e.status_detail}" if e is not None and e.status_detail else
                    e.status if e is not None else "missing") for n, e in found.items()}
    ok = all(e is not None and e.status != "corrupt" for e in found.values())
    return {"ok": ok, "summary": "; ".join(outcomes.values()),
            "verified": {n: (e.status if e is not None else "missing") for n, e in found.items()}}
