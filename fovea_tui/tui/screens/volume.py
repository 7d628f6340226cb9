"""The video volume and its copy: the last run, what a sync would do now, sync, pull, cancel.

The plan is the engine's own dry run (`run_sync(dry_run=True)`), computed in a thread
worker, so what this screen lists is what `S` would upload. Sync and pull run as a job of
the app (kind "sync": one at a time, whoever started it, including the app-wide `V`), with
a live progress bar; `c` sets that job's cancel token. When the job ends the summary and
the plan are computed again. Thread workers only post messages; handlers touch widgets.
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui import formatting
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.volume import sync as engine
from fovea_tui.errors import Cancelled, FoveaError
from fovea_tui.formatting import plural
from fovea_tui.tui.jobs import Job
from fovea_tui.tui.model import parse_time
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.widgets.job_progress import JobProgressBar

JOB_KIND = "sync"  # the same kind as the app's `V`: one sync or pull at a time
ACTION_STYLE = {"upload": "green", "download": "green", "changed": "yellow", "delete": "bold red"}
_FILES = re.compile(r"(\d+)/(\d+) files")


def sync_job(settings, *, progress=None, cancel=None, **kwargs: Any):
    """The JobRunner callable (a module attribute, so tests can slow it down)."""
    return engine.run_sync(settings, progress=progress, cancel=cancel, **kwargs)


class SummaryLoaded(Message):
    def __init__(self, last: dict[str, Any] | None, pull: dict[str, Any] | None) -> None:
        super().__init__()
        self.last = last
        self.pull = pull


class PlanLoaded(Message):
    def __init__(self, result: engine.SyncResult | None, error: str = "") -> None:
        super().__init__()
        self.result = result
        self.error = error


def plan_rows(result: engine.SyncResult) -> list[tuple[str, tuple[Text, str, str, str]]]:
    """(row key, cells) for every listed transfer, changed file and deletion of a dry run."""
    rows: list[tuple[str, tuple[Text, str, str, str]]] = []
    for item in result.planned:
        action = item.get("action", "upload")
        why = "new file" if item.get("reason") == "new" else "changed: replacing the copy"
        rows.append((f"{action}:{item['key']}", (Text(action, style=ACTION_STYLE.get(action, "")), item["key"],
                                                 formatting.size(item["size"]), why)))
    planned = {item["key"] for item in result.planned}
    for key in result.changed:
        if key not in planned:
            rows.append((f"changed:{key}", (Text("changed", style="yellow"), key, "",
                                            "size differs: not replaced")))
    for key in result.deletions:
        rows.append((f"delete:{key}", (Text("delete", style="bold red"), key, "", "gone from the volume")))
    return rows


def plan_caption(result: engine.SyncResult | None, error: str) -> Text:
    text = Text()
    if result is None:
        text.append(error or "computing the plan (dry run)…", style="bold red" if error else "dim")
        return text
    verb = "download" if result.direction == "pull" else "upload"
    text.append("Plan (dry run): ", style="bold")
    text.append(f"{result.to_transfer:,} to {verb} ({formatting.size(result.to_transfer_bytes)})",
                style="green" if result.to_transfer else "")
    text.append(f" · {result.skipped:,} already there")
    changed = len(result.changed)
    text.append(f" · {changed} changed under the same name", style="yellow" if changed else "")
    text.append(f" · {result.to_delete:,} to delete", style="bold red" if result.to_delete else "")
    listed = len(result.planned) + len(result.deletions)
    if result.to_transfer + result.to_delete > listed:
        text.append(f" (first {listed:,} listed)", style="dim")
    if result.refused:
        text.append(f"\nREFUSED: {result.refused}", style="bold red")
    if not (result.to_transfer or result.to_delete or changed):
        text.append("\nnothing to do: the copy holds every file of the volume", style="green")
    return text


def summary_text(target: str, last: dict[str, Any] | None, plan: engine.SyncResult | None, now) -> Text:
    """The last run (sync-last.json) in a line or two, the last complete one, and what is pending now."""
    text = Text()
    last = last or {}
    when = parse_time(last.get("time"))
    if when is None:
        text.append("never synced" + (f" to {target}" if target else ""), style="bold red" if target else "yellow")
    else:
        ok_time = parse_time(last.get("last_ok", last["time"]))
        complete = ok_time == when
        text.append(f"last synced {formatting.ago(when, now)}" if complete
                    else f"last run {formatting.ago(when, now)}", style="bold")
        text.append(f" ({when.astimezone(UTC):%Y-%m-%d %H:%M} UTC): ")
        text.append(f"{last.get('uploaded', 0):,} uploaded · {last.get('skipped', 0):,} skipped · "
                    f"{last.get('deleted', 0):,} deleted · {formatting.size(last.get('bytes', 0))}")
        errors = last.get("error_count") or 0
        text.append(f" · {formatting.plural(errors, 'error')}" if errors else " · no errors", style="bold red" if errors else "green")
        if last.get("duration_s") is not None:
            text.append(f" · took {float(last['duration_s']):.1f} s", style="dim")
        if last.get("cancelled"):
            text.append(" · interrupted", style="bold yellow")
        if not complete:
            text.append("\nlast complete sync " + (formatting.ago(ok_time, now) if ok_time else "never"),
                        style="yellow")
        if last.get("refused"):
            text.append(f"\ndeletions refused: {last['refused']}", style="yellow")
    if plan is not None and plan.direction == "push":
        if plan.to_transfer:
            text.append(f"\n{plural(plan.to_transfer, 'new file')} pending ({formatting.size(plan.to_transfer_bytes)})",
                        style="yellow")
        elif when is not None:
            text.append("\nnothing pending: the copy is up to date", style="green")
    elif when is not None and last.get("pending"):
        text.append(f"\n{plural(last['pending'], 'file')} left pending by that run", style="yellow")
    if plan is not None and plan.listing and target.startswith("s3://"):
        text.append("\n" + listing_line(plan.listing, now), style="dim")
    return text


def listing_line(listing: dict[str, Any], now) -> str:
    """How the plan learned what the copy holds: listed, or the last sync's snapshot."""
    full_at = parse_time(listing.get("last_full_listing"))
    if listing["mode"] == "snapshot":
        return (f"the copy's contents come from the last sync's snapshot (checked; last full listing "
                f"{formatting.ago(full_at, now)}); F syncs with a full listing")
    return f"the copy was listed in full: {listing['reason']}"


def errors_text(last: dict[str, Any] | None, plan: engine.SyncResult | None, job: Job | None) -> Text:
    text = Text()
    if job is not None and job.state in ("failed", "cancelled") and job.error:
        text.append(f"{job.title}: {job.error}\n", style="bold red" if job.state == "failed" else "yellow")
    result = job.result if job is not None and job.result is not None else None
    if result is not None and getattr(result, "errors", None):
        for err in result.errors:
            text.append(f"✗ {err}\n", style="red")
    elif last and last.get("errors"):
        count = last.get("error_count", len(last["errors"]))
        text.append(f"last run: {formatting.plural(count, 'error')}\n", style="bold red")
        for err in last["errors"]:
            text.append(f"✗ {err}\n", style="red")
    if plan is not None:
        for warning in plan.warnings[:20]:
            text.append(f"! {warning}\n", style="yellow")
    if not text.plain:
        text.append("no errors", style="dim")
    return text


class VolumeScreen(FoveaScreen):
    TITLE = "Volume"
    BINDINGS = [
        Binding("S", "sync_now", "Sync now"),
        Binding("enter", "sync_now", "Sync now", show=False, priority=True),
        Binding("F", "sync_full_listing", "Sync, full listing"),
        Binding("c", "cancel_sync", "Cancel"),
        Binding("P", "pull", "Pull…"),
        Binding("ctrl+r", "reload", "Re-plan"),
    ]
    DEFAULT_CSS = """
    VolumeScreen #where, VolumeScreen #summary { height: auto; padding: 0 1; }
    VolumeScreen #summary { border-bottom: solid $primary 50%; }
    VolumeScreen #body { height: 1fr; }
    VolumeScreen #plan-pane { width: 1fr; height: 1fr; }
    VolumeScreen #plan-caption { height: auto; padding: 0 1; }
    VolumeScreen #plan { height: 1fr; }
    VolumeScreen #side { width: 46; height: 1fr; border-left: solid $primary 50%; }
    VolumeScreen.-narrow #side { width: 34; }
    VolumeScreen.-wide #side { width: 64; }
    VolumeScreen #job-caption, VolumeScreen #files-line { height: auto; padding: 0 1; }
    VolumeScreen #job-box { height: auto; }
    VolumeScreen #errors-title { height: auto; padding: 1 1 0 1; text-style: bold; }
    VolumeScreen #errors { height: auto; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.last: dict[str, Any] | None = None
        self.pull_last: dict[str, Any] | None = None
        self.plan: engine.SyncResult | None = None
        self.plan_error = ""
        self.job: Job | None = None
        self._bar: JobProgressBar | None = None
        self._rows: dict[str, tuple] = {}
        self._plan_cancel = CancelToken()

    # --- layout ---------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("", id="where")
        yield Static("reading the last run…", id="summary")
        with Horizontal(id="body"):
            with Vertical(id="plan-pane"):
                yield Static(plan_caption(None, ""), id="plan-caption")
                yield DataTable(id="plan", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="side"):
                yield Static("", id="job-caption")
                yield Vertical(id="job-box")
                yield Static("", id="files-line")
                yield Static("Errors and warnings", id="errors-title")
                yield Static("", id="errors")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#plan", DataTable)
        table.add_column("Action", key="action")
        table.add_column("File", key="file")
        table.add_column("Size", key="size")
        table.add_column("Why", key="why")
        self._show_where()
        self._show_job(self._latest_job())
        self.action_reload()
        self.app.jobs_changed.subscribe(self, self._on_job_changed)
        self.app.settings_changed.subscribe(self, self._on_settings_changed)
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        self._plan_cancel.cancel("the volume screen closed")

    # --- loading ----------------------------------------------------------------------

    def action_reload(self) -> None:
        self._plan_cancel.cancel("a newer plan was asked for")
        self._plan_cancel = CancelToken()
        self._load(self._plan_cancel)

    @work(thread=True, exclusive=True, group="volume-plan", exit_on_error=False)
    def _load(self, cancel: CancelToken) -> None:
        settings = self.settings
        self.post_message(SummaryLoaded(engine.read_summary(settings), engine.read_summary(settings, "pull")))
        if not settings.volume.target:
            self.post_message(PlanLoaded(None, "no volume.target set: the videos have no copy "
                                               "(set it on the Settings screen, key s)"))
            return
        try:
            result = engine.run_sync(settings, dry_run=True, cancel=cancel)
        except Cancelled:
            return
        except FoveaError as exc:
            self.post_message(PlanLoaded(None, f"cannot plan the sync: {exc}"))
            return
        except Exception as exc:  # noqa: BLE001 - a dry run that crashes must not take the screen down
            self.post_message(PlanLoaded(None, f"cannot plan the sync: {type(exc).__name__}: {exc}"))
            return
        self.post_message(PlanLoaded(result))

    def on_summary_loaded(self, message: SummaryLoaded) -> None:
        self.last, self.pull_last = message.last, message.pull
        self._show_summary()
        self._show_errors()

    def on_plan_loaded(self, message: PlanLoaded) -> None:
        self.plan, self.plan_error = message.result, message.error
        self.query_one("#plan-caption", Static).update(plan_caption(message.result, message.error))
        table = self.query_one("#plan", DataTable)
        rows = dict(plan_rows(message.result)) if message.result is not None else {}
        for key in [k for k in self._rows if k not in rows]:
            table.remove_row(key)
            del self._rows[key]
        for key, cells in rows.items():
            old = self._rows.get(key)
            if old is None:
                table.add_row(*cells, key=key)
            elif old != cells:
                for column, new, was in zip(("action", "file", "size", "why"), cells, old, strict=True):
                    if new != was:
                        table.update_cell(key, column, new)
            self._rows[key] = cells
        self._show_where()
        self._show_summary()
        self._show_errors()

    def _on_settings_changed(self, _settings: Any) -> None:
        self._show_where()
        self.refresh_bindings()
        self.action_reload()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "sync_full_listing":  # only an S3 copy is ever read from a snapshot
            return self.settings.volume.target.startswith("s3://")
        return True

    # --- drawing ----------------------------------------------------------------------

    def _show_where(self) -> None:
        vol = self.settings.volume
        text = Text()
        kind, where = self._videos_at()
        text.append("volume " if kind == "local" else f"videos ({kind}) ", style="dim")
        text.append(where, style="bold")
        text.append(" → ", style="dim")
        text.append(vol.target or "no target set", style="bold" if vol.target else "bold red")
        if self.plan is not None:
            text.append(f" · {plural(self.plan.local_files, 'file')}, {formatting.size(self.plan.local_bytes)} · "
                        f"{plural(self.plan.remote_objects, 'object')} in the copy", style="dim")
        text.append(" · deletions mirrored (guard " + f"{vol.max_delete_percent}%)" if vol.delete
                    else " · deletions not mirrored", style="dim")
        self.query_one("#where", Static).update(text)

    def _videos_at(self) -> tuple[str, str]:
        """(VIDEO_STORAGE_TYPE, where the videos are): the volume, the app's bucket, or both."""
        from fovea_tui.engine.volume.storage import video_storage

        try:
            storage = video_storage(self.settings)
        except FoveaError:
            return "local", self.settings.volume.path
        return storage.kind, storage.describe()

    def _show_summary(self) -> None:
        text = summary_text(self.settings.volume.target, self.last, self.plan, self.app.now())
        pull = self.pull_last or {}
        pulled = parse_time(pull.get("time"))
        if pulled is not None:
            text.append(f"\nlast pull {formatting.ago(pulled, self.app.now())}: "
                        f"{pull.get('downloaded', 0):,} downloaded into {pull.get('target')}",
                        style="dim")
        self.query_one("#summary", Static).update(text)

    def _show_errors(self) -> None:
        self.query_one("#errors", Static).update(errors_text(self.last, self.plan, self.job))

    def _latest_job(self) -> Job | None:
        jobs = getattr(self.app, "jobs", None)
        if jobs is None:
            return None
        return jobs.running_kind(JOB_KIND) or next((j for j in jobs.recent(50) if j.kind == JOB_KIND), None)

    def _show_job(self, job: Job | None) -> None:
        self.job = job
        caption = self.query_one("#job-caption", Static)
        box = self.query_one("#job-box", Vertical)
        # The bar shown is remembered here, not queried: a bar mounted a moment ago may not be
        # in the DOM yet, and mounting it twice would clash on its id.
        bar = self._bar
        if job is None:
            for old in box.query(JobProgressBar):
                old.remove()
            self._bar = None
            caption.update(Text("No sync running. S (or enter) syncs now; P pulls the copy back.", style="dim"))
        else:
            if bar is not None and bar.job is job:
                bar.refresh_job()
            else:
                for old in box.query(JobProgressBar):
                    old.remove()
                self._bar = JobProgressBar(job, clock=self.app.jobs.clock, id=f"sync-job-{job.id}")
                box.mount(self._bar)
            caption.update(Text("c cancels at the next safe point; nothing partial is left in the copy.",
                                style="yellow") if job.running else Text("The last sync job:", style="dim"))
        self.query_one("#files-line", Static).update(self._files_line(job))

    @staticmethod
    def _files_line(job: Job | None) -> Text:
        event = job.event if job is not None else None
        if event is None:
            return Text("")
        if event.phase == "scan":
            return Text(f"comparing: {plural(event.done, 'file')} so far · {event.message}", style="dim")
        match = _FILES.search(event.message or "")
        if match and event.current:  # without a current file the bar shows the message itself
            return Text(f"{int(match.group(1)):,} of {plural(int(match.group(2)), 'file')}", style="bold")
        return Text("")

    def _tick(self) -> None:
        if self.job is not None and self.job.running:
            for bar in self.query(JobProgressBar):
                bar.refresh_job()

    def _on_job_changed(self, job: Any) -> None:
        if job is not None and getattr(job, "kind", None) != JOB_KIND:
            return
        latest = self._latest_job()
        self._show_job(latest)
        self._show_errors()
        if job is not None and not job.running:
            self.action_reload()

    # --- actions ----------------------------------------------------------------------

    def _start(self, title: str, **kwargs: Any) -> None:
        if not self.settings.volume.target:
            self.notify("Set volume.target first (Settings, key s).", severity="error")
            return
        job = self.app.jobs.start(JOB_KIND, title, sync_job, self.settings, **kwargs)
        if job is not None:
            self.app.jobs_changed.publish(job)

    def action_sync_now(self) -> None:
        self._start("Sync videos now", dry_run=False, pull=False, to=None, replace_changed=False)

    def action_sync_full_listing(self) -> None:
        self._start("Sync videos now, listing the copy in full", dry_run=False, pull=False, to=None,
                    replace_changed=False, full_listing=True)

    def action_cancel_sync(self) -> None:
        if self.app.jobs.cancel(kind=JOB_KIND):
            self.notify("Asked the sync to stop at its next safe point.", timeout=3)
        else:
            self.notify("No sync is running.", severity="warning", timeout=3)

    def action_pull(self) -> None:
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        vol = self.settings.volume
        if not vol.target:
            self.notify("Set volume.target first (Settings, key s).", severity="error")
            return

        def done(ok: bool | None) -> None:
            if ok:
                self._start("Pull into the volume", dry_run=False, pull=True, to=None, replace_changed=False)

        kind, where = self._videos_at()
        into = where if kind == "s3" else vol.path
        self.app.push_screen(ConfirmDialog(
            f"Pull copies every file of {vol.target} that is missing from {into}. It writes into the "
            f"LIVE {'bucket' if kind == 's3' else 'volume'} the backend serves. It never deletes a file there and "
            "never overwrites one whose size differs. Pull now?", confirm_label="Pull",
            title="Pull into the live " + ("bucket" if kind == "s3" else "volume")), done)
