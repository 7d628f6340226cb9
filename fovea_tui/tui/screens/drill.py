"""The Drill screen: run a disaster-recovery drill, watch its checks land, read the last one.

`g` runs `engine.drill.run_drill` as a job of the app (thread worker, progress, `c` cancels:
the scratch database is dropped either way). Each check appears in the list as it lands.
Beside it: the last drill's verdict, RTO and RPO, when the next one is due, the runbook's
manual checklist and the guide for the full drill on a separate host, filled in from this
install's configuration.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui import masking
from fovea_tui.engine.drill.report import guide_for, guide_steps, latest_report
from fovea_tui.engine.drill.result import CHECK_ORDER, CHECK_TITLES, MANUAL_CHECKLIST
from fovea_tui.engine.drill.run import drill_status, run_drill
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import human_duration, plural
from fovea_tui.tui.jobs import Job
from fovea_tui.tui.screens.base import FoveaScreen

ICONS = {"ok": ("✔ ok", "green"), "failed": ("✘ FAILED", "bold red"), "skipped": ("– skipped", "dim"),
         "pending": ("· pending", "dim"), "running": ("▶ running", "bold yellow")}


class CheckLanded(Message):
    """A check of the running drill finished (posted from the worker thread)."""

    def __init__(self, check: dict[str, Any]) -> None:
        super().__init__()
        self.check = check


class GuideReady(Message):
    def __init__(self, steps: list[dict[str, Any]]) -> None:
        super().__init__()
        self.steps = steps


def drill_job(settings, *, progress=None, cancel=None, on_check=None) -> dict[str, Any]:
    """A JobRunner callable: the drill; its result as the `drill --json` document. A failed
    drill is a result (with its failed checks), not an exception."""
    result = run_drill(settings, progress=progress or (lambda e: None), cancel=cancel, on_check=on_check)
    data = result.as_dict()
    failed = [c for c in result.checks if not c.ok]
    data["summary"] = ("passed" if not failed else  # the toast's title and the Jobs panel say FAILED
                       "; ".join(f"{c.title}: {masking.redact(c.detail)}" for c in failed))
    return data


def guide_text(steps: list[dict[str, Any]]) -> Text:
    text = Text()
    text.append("Full drill on a separate host\n", style="bold")
    for i, step in enumerate(steps, 1):
        text.append(f"{i}. {step['title']}\n", style="bold")
        if step.get("detail"):
            text.append(f"   {step['detail']}\n", style="dim")
        for cmd in step.get("commands", []):
            text.append("   $ ", style="dim")
            text.append(f"{cmd}\n", style="cyan")
    text.append("\nTick by hand on that host\n", style="bold")
    for item in MANUAL_CHECKLIST:
        text.append(f" [ ] {item}\n")
    return text


class DrillScreen(FoveaScreen):
    TITLE = "Drill"
    BINDINGS = [
        Binding("g", "run_drill", "Run drill"),
        Binding("c", "cancel_drill", "Cancel drill"),
        Binding("ctrl+r", "reload", "Reload"),
    ]
    DEFAULT_CSS = """
    DrillScreen #caption { height: auto; padding: 0 1; }
    DrillScreen #body { height: 1fr; }
    DrillScreen #left { width: 3fr; height: 1fr; }
    DrillScreen #checks { height: 1fr; }
    DrillScreen #detail { height: auto; max-height: 6; padding: 0 1; border-top: solid $primary 50%; }
    DrillScreen #job { height: auto; }
    DrillScreen #side { width: 2fr; height: 1fr; border-left: solid $primary 50%; padding: 0 1; }
    DrillScreen.-narrow #body { layout: vertical; }
    DrillScreen.-narrow #left, DrillScreen.-narrow #side { width: 1fr; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.report: dict[str, Any] | None = None
        self.live: dict[str, dict[str, Any]] = {}
        self.job: Job | None = None
        self.guide: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("", id="caption")
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield DataTable(id="checks", cursor_type="row", zebra_stripes=True)
                yield Static("", id="detail")
                yield Vertical(id="job")
            with VerticalScroll(id="side"):
                yield Static("", id="guide")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#checks", DataTable)
        table.add_column("Check", key="check")
        table.add_column("Result", key="result")
        table.add_column("What it saw", key="detail")
        self.action_reload()
        self.follow_changes()

    def _now(self):
        now = getattr(self.app, "now", None)
        return now() if callable(now) else None

    # --- the last report -------------------------------------------------------------

    def action_reload(self) -> None:
        self.report = latest_report(self.settings)
        if self.job is None or not self.job.running:
            self._show_checks({c["name"]: c for c in (self.report or {}).get("checks", [])})
        self._show_caption()
        report = self.report
        if report and report.get("dump"):
            self._show_guide(guide_steps(self.settings, report.get("dump_key") or report["dump"], report.get("env_key")))
        else:
            self._show_guide(guide_steps(self.settings))
            self._find_guide()

    @work(thread=True, exclusive=True, group="drill-guide", exit_on_error=False)
    def _find_guide(self) -> None:
        try:
            steps = guide_for(self.settings)
        except FoveaError:
            return
        self.post_message(GuideReady(steps))

    def on_guide_ready(self, message: GuideReady) -> None:
        self._show_guide(message.steps)

    def _show_guide(self, steps: list[dict[str, Any]]) -> None:
        self.guide = steps
        self.query_one("#guide", Static).update(guide_text(steps))

    def _show_caption(self) -> None:
        status = drill_status(self.settings, self._now())
        text = Text()
        last = status.get("last")
        if last is None:
            text.append("No restore drill on record. ", style="bold yellow")
            text.append("Press g to run one: the newest off-site dump is restored into a scratch database "
                        "on the same server; the live database and the stack are not touched.")
        else:
            verdict = ("PASSED", "bold green") if last["ok"] else ("FAILED", "bold red")
            text.append("Last drill ")
            text.append(str(last["time"])[:16].replace("T", " ") + " UTC ", style="bold")
            text.append(verdict[0], style=verdict[1])
            if not last["ok"] and last.get("failed"):
                text.append(f" ({', '.join(last['failed'])})", style="red")
            text.append(f" · dump {last.get('dump')}")
            text.append(f" · RTO {human_duration(last.get('rto_s'))} · RPO {human_duration(last.get('rpo_s'))}")
            interval = status.get("interval_days")
            if interval:
                due = str(status.get("due_at") or "")[:10]
                text.append(f"\nevery {plural(interval, 'day')} · next due {due}")
                if status.get("overdue"):
                    text.append(" · OVERDUE", style="bold red")
            report = (self.report or {}).get("report") or {}
            if report.get("json"):
                name = str(report["json"]).rsplit("/", 1)[-1].removesuffix(".json")
                text.append(f" · report {name}.md", style="dim")
        if self.job is not None and self.job.state in ("failed", "cancelled"):
            text.append(f"\nlast run {self.job.state}: {self.job.error}", style="bold red")
        self.query_one("#caption", Static).update(text)

    def _show_checks(self, checks: dict[str, dict[str, Any]], pending: bool = False) -> None:
        table = self.query_one("#checks", DataTable)
        table.clear()
        names = list(CHECK_ORDER) + [n for n in checks if n not in CHECK_ORDER]
        shown = [n for n in names if pending or n in checks]
        for name in shown:
            table.add_row(*self._cells(name, checks.get(name)), key=name)
        # the cursor (and the detail line below the table) on the first failed check
        failed = [i for i, n in enumerate(shown) if n in checks and checks[n].get("status", "") == "failed"]
        if shown:
            table.move_cursor(row=failed[0] if failed else 0)
            name = shown[failed[0] if failed else 0]
            self._show_detail(checks.get(name), name)
        else:
            self._show_detail(None)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = str(event.row_key.value)
        self._show_detail(self.live.get(name) if self.job is not None and self.job.running
                          else {c["name"]: c for c in self._current_checks()}.get(name), name)

    def _current_checks(self) -> list[dict[str, Any]]:
        if self.job is not None and isinstance(self.job.result, dict) and not self.job.running:
            return self.job.result.get("checks", [])
        if self.live and self.job is not None and self.job.running:
            return list(self.live.values())
        return (self.report or {}).get("checks", [])

    def _show_detail(self, check: dict[str, Any] | None, name: str = "") -> None:
        text = Text()
        if check is not None:
            text.append(f"{check.get('title') or CHECK_TITLES.get(check['name'], check['name'])}: ", style="bold")
            text.append(masking.redact(str(check.get("detail", ""))))
        elif name:
            text.append(f"{CHECK_TITLES.get(name, name)}: not run yet", style="dim")
        self.query_one("#detail", Static).update(text)

    @staticmethod
    def _cells(name: str, check: dict[str, Any] | None) -> tuple[Any, Any, Any]:
        status = (check or {}).get("status") or ("pending" if check is None else ("ok" if check.get("ok") else "failed"))
        label, style = ICONS.get(status, (status, ""))
        return (CHECK_TITLES.get(name, name), Text(label, style=style),
                masking.redact(str((check or {}).get("detail", ""))))

    # --- a drill run -------------------------------------------------------------------

    def action_run_drill(self) -> None:
        jobs = getattr(self.app, "jobs", None)
        if jobs is None:  # pragma: no cover - the app always has a JobRunner
            return
        if jobs.running_kind("drill") is not None:
            self.notify("A drill is already running.", severity="warning")
            return
        self.live = {}
        job = jobs.start("drill", "Restore drill", drill_job, self.settings, on_check=self._landed)
        if job is None:
            return
        self.job = job
        self._show_checks({}, pending=True)
        self._show_progress()
        self._show_caption()
        jobs_changed = getattr(self.app, "jobs_changed", None)
        if jobs_changed is not None:
            jobs_changed.publish(job)

    def _landed(self, check) -> None:
        """Called in the worker thread for each check."""
        self.post_message(CheckLanded(check.as_dict()))

    def on_check_landed(self, message: CheckLanded) -> None:
        check = message.check
        self.live[check["name"]] = check
        table = self.query_one("#checks", DataTable)
        cells = self._cells(check["name"], check)
        if check["name"] in {str(k.value) for k in table.rows}:
            for column, value in zip(("check", "result", "detail"), cells, strict=True):
                table.update_cell(check["name"], column, value, update_width=column == "detail")
        else:
            table.add_row(*cells, key=check["name"])

    def action_cancel_drill(self) -> None:
        jobs = getattr(self.app, "jobs", None)
        if jobs is not None and jobs.cancel(kind="drill"):
            self.notify("Cancelling the drill: the scratch database is dropped first.")
        else:
            self.notify("No drill is running.")

    def _show_progress(self) -> None:
        from fovea_tui.tui.widgets.job_progress import JobProgressBar

        holder = self.query_one("#job", Vertical)
        bars = list(holder.query(JobProgressBar))
        if self.job is None:
            return
        if bars and bars[0].job is self.job:
            bars[0].refresh_job()
            return
        holder.remove_children()
        clock = getattr(getattr(self.app, "jobs", None), "clock", None)
        holder.mount(JobProgressBar(self.job, clock=clock))

    def _on_job_changed(self, job: Any) -> None:
        current = self.job  # only the drill this screen started
        if current is None or job is not current or current.kind != "drill":
            return
        self._show_progress()
        if current.state != "running":
            self.action_reload()
            if isinstance(current.result, dict):  # finished, or failed checks (a result too)
                self._show_checks({c["name"]: c for c in current.result.get("checks", [])})
            elif self.live:
                self._show_checks(self.live)
