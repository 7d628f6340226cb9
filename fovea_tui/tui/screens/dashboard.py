"""The first screen: each piece of state with its last copy, the stack, jobs, alerts."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.widgets import DataTable, Footer, Header, Static

from fovea_tui.engine.ops.status import StatusReport
from fovea_tui.formatting import plural
from fovea_tui.tui import model
from fovea_tui.tui.screens.base import FoveaScreen
from fovea_tui.tui.widgets.cards import StateCard
from fovea_tui.tui.widgets.job_progress import JobProgressBar
from fovea_tui.tui.widgets.restore_job import RestoreJobLine

CARD_KEYS = model.CARD_SECTIONS

_STATE_STYLE = {"running": "green", "exited": "red", "dead": "red", "restarting": "yellow",
                "paused": "yellow", "created": "yellow"}
_HEALTH_STYLE = {"healthy": "green", "unhealthy": "bold red", "starting": "yellow"}


class DashboardScreen(FoveaScreen):
    TITLE = "Dashboard"
    BINDINGS = [
        Binding("B", "app.backup", "Back up now"),
        Binding("V", "app.sync", "Sync now"),
        Binding("c", "app.cancel_jobs", "Cancel jobs", show=False),
    ]
    DEFAULT_CSS = """
    DashboardScreen #statusline { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    DashboardScreen #body { height: 1fr; }
    DashboardScreen #cards {
        grid-size: 3; grid-gutter: 0 1; grid-rows: auto; height: auto; padding: 0 1;
    }
    DashboardScreen.-narrow #cards { grid-size: 2; }
    DashboardScreen.-narrow #cards { grid-rows: 5; }
    DashboardScreen.-narrow StateCard { height: 5; min-height: 5; }
    DashboardScreen.-wide #cards { grid-size: 3; }
    DashboardScreen.-wide #lower { height: 55vh; min-height: 12; }
    DashboardScreen.-wide #side { height: 1fr; }
    DashboardScreen.-wide DataTable { max-height: 100%; }
    DashboardScreen #lower { height: auto; padding: 0 1; }
    DashboardScreen #stack-box { width: 3fr; min-height: 6; }
    DashboardScreen #side { width: 2fr; height: auto; }
    DashboardScreen.-narrow #lower { layout: vertical; }
    DashboardScreen.-narrow #stack-box, DashboardScreen.-narrow #side { width: 1fr; }
    DashboardScreen DataTable { height: auto; max-height: 14; }
    DashboardScreen #alerts { min-height: 3; max-height: 8; margin: 0 1; overflow-y: auto; }
    DashboardScreen #jobs-box { min-height: 3; }
    """

    def compose(self) -> ComposeResult:
        yield Header(icon="≡")
        yield Static("collecting status…", id="statusline")
        # Alerts first: at 80x24 and with finished jobs listed they must not fall below the fold.
        alerts = Static("", id="alerts", classes="box")
        alerts.border_title = "Alerts"
        yield alerts
        with VerticalScroll(id="body"):
            with Grid(id="cards"):
                for key in CARD_KEYS:
                    yield StateCard(key, key.replace("_", " "))
            with Horizontal(id="lower"):
                with Vertical(id="stack-box", classes="box") as box:
                    box.border_title = "Stack"
                    yield Static("", id="stack-caption", classes="muted")
                    table: DataTable = DataTable(id="services", cursor_type="row", zebra_stripes=True)
                    table.add_columns("service", "state", "health", "image")
                    yield table
                with Vertical(id="side"):
                    with Vertical(id="jobs-box", classes="box") as box:
                        box.border_title = "Jobs"
                        yield RestoreJobLine(id="restore-job")
                        yield Static("no job running · B backs up now", id="no-jobs", classes="muted")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.status_changed.subscribe(self, self.show_status)
        self.app.jobs_changed.subscribe(self, self.show_jobs)
        if self.app.status is not None:
            self.show_status(self.app.status)
        self.show_jobs(None)
        self.set_interval(1.0, self._tick)

    def _tick(self) -> None:
        self._update_statusline()
        for bar in self.query(JobProgressBar):
            if bar.job.running:
                bar.refresh_job()

    # --- status ---------------------------------------------------------------------

    def _update_statusline(self) -> None:
        report: StatusReport | None = self.app.status
        error = self.app.status_error
        if report is None:
            if error:
                self.query_one("#statusline", Static).update(f"status probe failed: {error}")
            return
        now = self.app.now()
        ago = model.age(report.generated_at, now)
        live = self.app.stack_watch
        stack = "stack: live events" if live == "live" else "stack: polled"
        running = len(self.app.jobs.running())
        jobs = f" · {plural(running, 'job')} running" if running else ""
        alerts = len(report.alerts)
        every = f" · every {self.app.poll_interval:g} s" if self.app.poll_interval > 0 else ""
        failed = f"last probe FAILED ({error}) · " if error else ""
        self.query_one("#statusline", Static).update(
            f"{failed}updated {ago}{every} · {stack}{jobs} · "
            f"{plural(alerts, 'alert')} · ctrl+p: all commands · ?: help")

    def show_status(self, report: StatusReport) -> None:
        now = self.app.now()
        for card in model.cards(report, now):
            self.query_one(f"#card-{card.key}", StateCard).show(card)
        caption, services = model.services(report)
        self.query_one("#stack-caption", Static).update(caption)
        table = self.query_one("#services", DataTable)
        table.clear()
        for svc in services:
            state, health = svc.get("state", "?"), svc.get("health") or "—"
            if svc.get("starting"):
                health = f"{health}: {svc['starting']}"
            table.add_row(svc.get("name", "?"),
                          Text(state, style=_STATE_STYLE.get(state, "")),
                          Text(health, style=_HEALTH_STYLE.get(svc.get("health") or "—", "")),
                          svc.get("image", ""), key=svc.get("name"))
        table.display = bool(services)
        self.query_one("#alerts", Static).update(self._alerts_markup(report))
        self._update_statusline()

    @staticmethod
    def _alerts_markup(report: StatusReport) -> str:
        if not report.alerts:
            return "[$success]no alerts[/]"
        lines = []
        order = {"critical": 0, "warning": 1}
        for alert in sorted(report.alerts, key=lambda a: order.get(a.level, 2)):
            colour = "$error" if alert.level == "critical" else "$warning"
            lines.append(f"[b {colour}]{alert.level.upper():<8}[/] {escape(alert.message)}")
        return "\n".join(lines)

    # --- jobs ---------------------------------------------------------------------------

    def show_jobs(self, _job: Any) -> None:
        box = self.query_one("#jobs-box", Vertical)
        shown = {bar.job.id: bar for bar in self.query(JobProgressBar)}
        wanted = [j for j in self.app.jobs.recent(4) if j.running or j.id in shown or j.ended is not None]
        for job in reversed(wanted):
            if job.id in shown:
                shown[job.id].refresh_job()
            else:
                box.mount(JobProgressBar(job, clock=self.app.jobs.clock, id=f"job-{job.id}"), after=0)
        keep = {j.id for j in wanted}
        for job_id, bar in shown.items():
            if job_id not in keep:
                bar.remove()
        self.query_one("#no-jobs", Static).display = not wanted and not self.query_one(RestoreJobLine).display
        self._update_statusline()

    def on_restore_job_line_changed(self, _message: RestoreJobLine.Changed) -> None:
        self.show_jobs(None)
