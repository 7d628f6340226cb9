"""Retention: the policy's buckets and which dump fills each, the prune preview, and prune.

The preview is `engine.prune.build_plan`, the very function a prune executes, so what this
screen lists is what `p` (after a confirmation) deletes. The prune runs as a job of the
app (thread worker, progress, cancel) under the backups lock; when any job finishes the
plan is recomputed.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui.engine.backups.prune import Deletion, PrunePlan, build_plan, prune
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import plural
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.widgets.bucket_grid import BucketGrid

STATUS_STYLE = {"verified": "green", "unverified": "yellow", "corrupt": "bold red", "mismatch": "bold magenta"}
MAX_CONFIRM_LINES = 400


class PlanComputed(Message):
    def __init__(self, prune_plan: PrunePlan | None, error: str = "") -> None:
        super().__init__()
        self.prune_plan = prune_plan
        self.error = error


def prune_job(settings, *, progress=None, cancel=None, expected: list[Deletion] | None = None) -> dict[str, Any]:
    """A JobRunner callable: a real prune of exactly the confirmed files (it refuses if the
    plan changed meanwhile); the result as the `prune --json` document."""
    result = prune(settings, progress=progress or (lambda e: None), cancel=cancel, expected=expected)
    data = result.to_json()
    data["deleted"] = len(result.deleted)  # for the job notification's "N deleted"
    if result.failed:
        raise FoveaError(f"prune deleted {plural(len(result.deleted), 'file')}, {len(result.failed)} failed "
                         f"(first: {result.failed[0][0].key}: {result.failed[0][1]}); the next prune retries them")
    return data


def deletion_lines(pp: PrunePlan) -> list[str]:
    return [f"- {d.location:<8} {d.key}" for d in pp.all_deletions()]


class RetentionScreen(FoveaScreen):
    TITLE = "Retention"
    BINDINGS = [
        Binding("ctrl+r", "reload", "Recompute"),
        Binding("p", "prune", "Prune…"),
    ]
    DEFAULT_CSS = """
    RetentionScreen #caption { height: auto; padding: 0 1; }
    RetentionScreen #body { height: 1fr; }
    RetentionScreen #buckets-pane { width: 2fr; max-width: 68; height: 1fr; border-right: solid $primary 50%; }
    RetentionScreen #preview { width: 3fr; height: 1fr; }
    RetentionScreen.-narrow #body { layout: vertical; }
    RetentionScreen.-narrow #buckets-pane { width: 1fr; max-width: 100%; border-right: none;
                                            border-bottom: solid $primary 50%; }
    RetentionScreen.-narrow #preview { width: 1fr; }
    RetentionScreen.-narrow #files { max-height: 4; }
    RetentionScreen #files { height: auto; max-height: 8; padding: 0 1; border-top: solid $primary 50%; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prune_plan: PrunePlan | None = None
        self.error = ""

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("computing the retention plan…", id="caption")
        with Horizontal(id="body"):
            with VerticalScroll(id="buckets-pane"):
                yield BucketGrid(id="buckets")
            yield DataTable(id="preview", cursor_type="row", zebra_stripes=True)
        yield Static("", id="files")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#preview", DataTable)
        table.add_column("Action", key="action")
        table.add_column("Status", key="status")  # before the long names, so it shows at 120 columns
        table.add_column("Dump", key="name")
        table.add_column("Why", key="why")
        self.action_reload()
        self.follow_changes()

    def action_reload(self) -> None:
        self._compute()

    @work(thread=True, exclusive=True, group="retention-plan", exit_on_error=False)
    def _compute(self) -> None:
        try:
            pp = build_plan(self.settings)
        except FoveaError as exc:
            self.post_message(PlanComputed(None, str(exc)))
            return
        self.post_message(PlanComputed(pp))

    def on_plan_computed(self, message: PlanComputed) -> None:
        self.prune_plan, self.error = message.prune_plan, message.error
        caption = self.query_one("#caption", Static)
        grid = self.query_one(BucketGrid)
        table = self.query_one("#preview", DataTable)
        files = self.query_one("#files", Static)
        table.clear()
        pp = message.prune_plan
        if pp is None:
            caption.update(Text(f"cannot compute the plan: {message.error}", style="bold red"))
            grid.show(None)
            files.update("")
            return
        plan = pp.plan
        text = Text()
        text.append(f"policy: {plan.policy.describe()}", style="bold")
        text.append(f" · keep {len(plan.keep)} · forget {len(plan.forget)} · "
                    f"{plural(len(pp.all_deletions()), 'file')} to delete")
        if plan.refused:
            text.append(f"\nREFUSED: {plan.refused}. Prune deletes nothing.", style="bold red")
        if pp.pending:
            text.append(f"\n{plural(len(pp.pending), 'deletion')} left by an unfinished prune are retried first",
                        style="yellow")
        for copy in pp.kept_copies:
            text.append(f"\nkept {copy['location']} copy of corrupt {copy['dump']}: {copy['reason']}", style="yellow")
        for err in pp.inventory.errors:
            text.append(f"\n✗ {err}", style="bold red")
        caption.update(text)
        grid.show(plan)
        for d in plan.keep + plan.forget:
            c = d.candidate
            action = Text("keep", style="green") if d.keep else Text("forget", style="bold red")
            table.add_row(action, Text(c.status, style=STATUS_STYLE.get(c.status, "")), c.name,
                          ", ".join(d.reasons) or "no rule keeps it", key=c.name)
        table.sort("name", key=lambda name: str(name), reverse=True)
        lines = deletion_lines(pp)
        if lines:
            shown = lines[:6] + ([f"… and {len(lines) - 6} more"] if len(lines) > 6 else [])
            files.update(Text("prune would delete, in this order:\n" + "\n".join(shown), style="red"))
        else:
            files.update(Text("prune would delete nothing", style="dim"))

    def action_prune(self) -> None:
        pp = self.prune_plan
        if pp is None:
            self.notify(self.error or "The plan is still being computed.", severity="warning")
            return
        if pp.refused:
            self.notify(pp.refused, title="Prune refused", severity="error", timeout=10)
            return
        lines = deletion_lines(pp)
        if not lines:
            self.notify("Nothing to prune: the policy keeps every dump.")
            return
        dumps = len({d.dump for d in pp.all_deletions()})
        shown = lines[:MAX_CONFIRM_LINES] + ([f"… and {len(lines) - MAX_CONFIRM_LINES} more"]
                                             if len(lines) > MAX_CONFIRM_LINES else [])
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        confirmed = pp.all_deletions()

        def done(ok: bool | None) -> None:
            if ok:
                self.start_prune(confirmed)

        self.app.push_screen(ConfirmDialog(
            f"Delete {plural(dumps, 'dump')}, {plural(len(lines), 'file')}? Checked again under the lock first.",
            "\n".join(shown), confirm_label="Prune", title="Prune backups"), done)

    def start_prune(self, expected: list[Deletion] | None = None) -> None:
        jobs = getattr(self.app, "jobs", None)
        if jobs is None:  # pragma: no cover - the app always has a JobRunner
            return
        jobs.start("prune", "Prune backups", prune_job, self.settings, expected=expected)
        jobs_changed = getattr(self.app, "jobs_changed", None)
        if jobs_changed is not None:
            jobs_changed.publish(None)
