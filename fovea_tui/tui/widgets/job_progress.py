"""Progress of one job: a bar, the rate, the ETA and the item at hand.

The clock is injectable (seconds, like time.time) so snapshots of a running job are stable.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.app import ComposeResult
from textual.clock import Clock
from textual.containers import Vertical
from textual.widgets import Label, ProgressBar

from fovea_tui import formatting
from fovea_tui.tui.jobs import Job


def _amount(n: float, unit: str) -> str:
    if unit == "bytes":
        return formatting.size(n)
    return f"{int(n):,} {unit}"


def rate_and_eta(job: Job, now: float) -> tuple[str, str]:
    event = job.event
    if not job.running:
        end = job.ended if job.ended is not None else now
        return f"took {formatting.clock(end - job.started)}", ""
    elapsed = now - (job.phase_started if job.phase_started is not None else job.started)
    if event is None or elapsed <= 0 or event.done <= 0:
        return "", ""
    rate = event.done / elapsed
    rate_text = f"{_amount(rate, event.unit)}/s"
    if event.total and rate > 0 and event.done < event.total:
        return rate_text, f"ETA {formatting.clock((event.total - event.done) / rate)}"
    return rate_text, ""


class JobProgressBar(Vertical):
    """Shows one Job; call `refresh_job()` after the job changed (the app's jobs signal)."""

    DEFAULT_CSS = """
    JobProgressBar { height: auto; padding: 0 1; }
    JobProgressBar > .job-title { text-style: bold; }
    JobProgressBar ProgressBar { width: 1fr; }
    JobProgressBar ProgressBar Bar { width: 1fr; }
    JobProgressBar .job-rate { color: $text-muted; }
    JobProgressBar .job-current { color: $text-muted; }
    JobProgressBar.-failed > .job-title { color: $error; }
    JobProgressBar.-finished > .job-title { color: $success; }
    JobProgressBar.-cancelled > .job-title { color: $warning; }
    """

    def __init__(self, job: Job, clock: Callable[[], float] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.job = job
        self.clock = clock or time.time

    def compose(self) -> ComposeResult:
        yield Label("", classes="job-title")
        yield ProgressBar(total=None, show_eta=False, clock=Clock(get_time=self.clock))
        yield Label("", classes="job-rate")
        yield Label("", classes="job-current")

    def on_mount(self) -> None:
        self.refresh_job()

    def refresh_job(self) -> None:
        if not self.query(".job-title"):  # not composed yet: on_mount will draw it
            return
        job, event = self.job, self.job.event
        state = {"running": "", "finished": " — done", "failed": " — FAILED",
                 "cancelled": " — cancelled"}[job.state]
        phase = f" · {event.phase}" if event and event.phase else ""
        self.query_one(".job-title", Label).update(f"{job.title}{phase}{state}")
        self.set_class(job.state == "failed", "-failed")
        self.set_class(job.state == "finished", "-finished")
        self.set_class(job.state == "cancelled", "-cancelled")
        bar = self.query_one(ProgressBar)
        if event is not None and event.total:
            bar.update(total=event.total, progress=event.done)
        elif job.state == "finished":
            bar.update(total=1, progress=1)
        rate, eta = rate_and_eta(job, self.clock())
        done = ""
        if event is not None:
            done = _amount(event.done, event.unit)
            if event.total:
                done += f" of {_amount(event.total, event.unit)}"
        self.query_one(".job-rate", Label).update(" · ".join(p for p in (done, rate, eta) if p))
        current = job.error if job.state in ("failed", "cancelled") else (event.current or event.message if event else "")
        self.query_one(".job-current", Label).update(current or "")
