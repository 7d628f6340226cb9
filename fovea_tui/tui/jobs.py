"""Long engine work off the UI thread: one JobRunner per app, one thread worker per job.

An engine callable `fn(settings, progress=..., cancel=..., **kwargs)` runs in a Textual
thread worker. Its ProgressEvents become `JobProgress` messages posted to the app; the end
becomes `JobFinished` or `JobFailed`. Jobs belong to the app, not to a screen, so they keep
running while the operator switches screens. One job per kind at a time: starting a second
backup while one runs is refused (never silently cancels the first).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

from fovea_tui import formatting, masking
from fovea_tui.engine.progress import CancelToken, ProgressEvent
from fovea_tui.errors import Cancelled, FoveaError

if TYPE_CHECKING:  # pragma: no cover
    from textual.app import App

PROGRESS_INTERVAL = 0.1  # seconds between posted progress messages per job (plus the last)


@dataclass
class Job:
    """What the UI knows of one engine call."""

    id: int
    kind: str                       # "backup", "sync", ... (one running per kind)
    title: str
    started: float                  # seconds, on the runner's clock
    cancel: CancelToken = field(default_factory=CancelToken)
    state: str = "running"          # running | finished | failed | cancelled
    event: ProgressEvent | None = None
    result: Any = None
    error: str = ""
    ended: float | None = None
    phase_started: float | None = None  # rates are per phase: a dump and an upload differ

    @property
    def running(self) -> bool:
        return self.state == "running"


class JobProgress(Message):
    """A job moved forward (posted from the worker thread)."""

    def __init__(self, job: Job, event: ProgressEvent) -> None:
        super().__init__()
        self.job = job
        self.event = event


class JobFinished(Message):
    def __init__(self, job: Job, result: Any) -> None:
        super().__init__()
        self.job = job
        self.result = result


class JobFailed(Message):
    def __init__(self, job: Job, error: str, cancelled: bool = False) -> None:
        super().__init__()
        self.job = job
        self.error = error
        self.cancelled = cancelled


class JobRunner:
    """Starts, tracks and cancels jobs for one app.

    The app handles the three messages (see FoveaApp.on_job_*), updates the Job with
    `apply(...)` and tells subscribed widgets through its `jobs_changed` signal.
    """

    def __init__(self, app: App, clock: Callable[[], float] | None = None) -> None:
        self.app = app
        self.clock = clock or time.time
        self.jobs: dict[int, Job] = {}
        self._ids = itertools.count(1)

    # --- queries ------------------------------------------------------------------

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.running]

    def running_kind(self, kind: str) -> Job | None:
        return next((j for j in self.running() if j.kind == kind), None)

    def recent(self, limit: int = 5) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: j.id, reverse=True)[:limit]

    # --- control ------------------------------------------------------------------

    def start(self, kind: str, title: str, fn: Callable[..., Any], settings: Any, **kwargs: Any) -> Job | None:
        """Run `fn(settings, progress=, cancel=, **kwargs)` in a thread; None if `kind` runs already."""
        if self.running_kind(kind) is not None:
            self.app.notify(f"A {kind} is already running.", title=title, severity="warning")
            return None
        job = Job(id=next(self._ids), kind=kind, title=title, started=self.clock())
        self.jobs[job.id] = job
        self.app.run_worker(
            lambda: self._run(job, fn, settings, kwargs),
            name=f"job-{job.id}-{kind}",
            group=f"job:{kind}",
            thread=True,
            exit_on_error=False,
        )
        return job

    def cancel(self, job_id: int | None = None, kind: str | None = None) -> bool:
        for job in self.running():
            if (job_id is not None and job.id == job_id) or (kind is not None and job.kind == kind):
                job.cancel.cancel("cancelled from the terminal UI")
                return True
        return False

    def cancel_all(self) -> None:
        for job in self.running():
            job.cancel.cancel("the terminal UI is closing")

    # --- the worker thread --------------------------------------------------------

    def _run(self, job: Job, fn: Callable[..., Any], settings: Any, kwargs: dict[str, Any]) -> None:
        last_post = 0.0

        def progress(event: ProgressEvent) -> None:
            nonlocal last_post
            now = time.monotonic()
            final = event.total is not None and event.done >= event.total
            if final or now - last_post >= PROGRESS_INTERVAL:
                last_post = now
                self.app.post_message(JobProgress(job, event))

        try:
            result = fn(settings, progress=progress, cancel=job.cancel, **kwargs)
        except Cancelled as exc:
            self.app.post_message(JobFailed(job, masking.redact(str(exc)), cancelled=True))
        except FoveaError as exc:
            self.app.post_message(JobFailed(job, masking.redact(str(exc))))
        except Exception as exc:  # noqa: BLE001 - a failed job must never take the UI down
            self.app.post_message(JobFailed(job, masking.redact(f"unexpected error: {type(exc).__name__}: {exc}")))
        else:
            self.app.post_message(JobFinished(job, result))

    # --- applied on the UI thread by the app's handlers ------------------------------

    def apply(self, message: Message) -> Job:
        if isinstance(message, JobProgress):
            job = message.job
            if job.event is None or job.event.phase != message.event.phase:
                job.phase_started = self.clock()
            job.event = message.event
        elif isinstance(message, JobFinished):
            failure = failure_of(message.result)
            message.job.state = "finished" if failure is None else "failed"
            message.job.result, message.job.error = message.result, failure or ""
            message.job.ended = self.clock()
        elif isinstance(message, JobFailed):
            message.job.state = "cancelled" if message.cancelled else "failed"
            message.job.error = message.error
            message.job.ended = self.clock()
        return message.job  # type: ignore[attr-defined]


def _as_data(result: Any) -> Any:
    if hasattr(result, "as_dict"):
        return result.as_dict()
    if hasattr(result, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(result)
    return result


def failure_of(result: Any) -> str | None:
    """Why a job that returned (rather than raised) did not do its work, or None when it did:
    a drill whose checks failed, a verify that found a corrupt dump, a sync with errors.
    The result says so itself, with `ok` False and a `summary` (or errors)."""
    data = _as_data(result)
    if not isinstance(data, dict) or data.get("ok") is not False:
        return None
    if data.get("summary"):
        return masking.redact(str(data["summary"]))
    if data.get("refused"):
        return masking.redact(f"refused: {data['refused']}")
    if data.get("error_count"):
        first = (data.get("errors") or [""])[0]
        return masking.redact(formatting.plural(data["error_count"], "error") + (f", the first: {first}" if first else ""))
    return "did not succeed"


def describe_result(result: Any) -> str:
    """One line for a finished job's notification, from whatever the engine returned."""
    if result is None:
        return "done"
    data = _as_data(result)
    if isinstance(data, dict) and data.get("summary"):
        return masking.redact(str(data["summary"]))[:200]
    if isinstance(data, dict):
        parts = []
        if "path" in data:
            parts.append(str(data["path"]).rsplit("/", 1)[-1])
        moved = ("downloaded", "skipped", "deleted") if data.get("direction") == "pull" else (
            "uploaded", "skipped", "deleted")
        for key in moved:
            if key in data:
                parts.append(f"{data[key]} {key}")
        if "size" in data and isinstance(data["size"], int):
            parts.append(formatting.size(data["size"]))
        if "duration_s" in data:
            parts.append(f"{float(data['duration_s']):.1f} s")
        return ", ".join(parts) or "done"
    return masking.redact(str(data))[:200]
