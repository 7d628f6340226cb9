"""The nightly run: backup, then prune, then volume sync, each attempted and recorded.

Rules:
- every step runs even when an earlier one failed, except prune, which is skipped when the
  backup failed: a failing backup must never lead to deleting older good ones;
- sync is skipped (with a note) when `volume.target` is empty;
- the run pings its dead-man's switch (`monitor.ping_url`) when it starts and ends, and each
  step with a URL of its own (`monitor.backup_url`, `sync_url`) pings that around the step;
- the run is recorded to `<state_dir>/nightly-last.json` and the audit log (action
  "nightly"), then notified (`engine.ops.notify`: webhooks and Apprise URLs) on failure, or
  on success with `notify.on_success` (`engine.ops.alerting.run_nightly`, what the command
  runs, then sends the status alerts that are new today). A ping or a channel that fails
  never fails the run.

One nightly run at a time (lock "nightly"); each engine takes its own locks as usual.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui import __version__, masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import prune
from fovea_tui.engine.backups.offsite import OffsiteFailed
from fovea_tui.engine.backups.pipeline import BackupIncomplete, run_backup
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import acquire, ensure_private_dir
from fovea_tui.engine.ops import monitor, notify
from fovea_tui.engine.progress import CancelToken, ProgressCallback, ProgressEvent, no_progress
from fovea_tui.engine.volume.sync import run_sync
from fovea_tui.errors import Cancelled, FoveaError
from fovea_tui.formatting import plural

LAST_FILE = "nightly-last.json"
STEPS = ("backup", "prune", "sync")

log = logging.getLogger(__name__)


@dataclass
class StepResult:
    name: str
    status: str = "skipped"        # ok | failed | skipped
    detail: str = ""
    duration_s: float = 0.0
    result: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "detail": self.detail,
                "duration_s": round(self.duration_s, 3), "result": self.result}


@dataclass
class NightlyResult:
    started_at: datetime
    finished_at: datetime | None = None
    steps: list[StepResult] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    monitor: list[dict[str, Any]] = field(default_factory=list)
    alerts: dict[str, Any] = field(default_factory=dict)    # set by engine.ops.alerting after the run
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(s.status != "failed" for s in self.steps)

    @property
    def outcome(self) -> str:
        return "cancelled" if self.cancelled else ("ok" if self.ok else "failed")

    @property
    def duration_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return round((end - self.started_at).total_seconds(), 3)

    def step(self, name: str) -> StepResult | None:
        return next((s for s in self.steps if s.name == name), None)

    def summary_lines(self) -> str:
        return "\n".join(f"{s.name:<7} {s.status:<8} {s.detail}".rstrip() for s in self.steps)

    def summary(self) -> str:
        parts = []
        for s in self.steps:
            parts.append(f"{s.name} {s.status}" + (f" ({s.detail})" if s.status != "ok" and s.detail else ""))
        return "; ".join(parts)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "outcome": self.outcome,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at) if self.finished_at else None,
            "duration_s": self.duration_s,
            "host": socket.gethostname(),
            "tool_version": __version__,
            "steps": [s.as_dict() for s in self.steps],
            "notifications": self.notifications,
            "monitor": self.monitor,
            "alerts": self.alerts,
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="seconds")


def _as_dict(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return value
    return {"result": str(value)}


# ---------------------------------------------------------------- the steps -------------

def _backup(settings: Settings, progress: ProgressCallback, cancel: CancelToken) -> tuple[dict[str, Any], str]:
    try:
        result = _as_dict(run_backup(settings, progress=progress, cancel=cancel, offsite=True))
    except (OffsiteFailed, BackupIncomplete) as exc:  # the local dump is fine, a piece is missing: a failure
        raise _StepFailed(str(exc), _as_dict(exc.result)) from None
    detail = f"{result.get('name') or Path(str(result.get('path', ''))).name}, {result.get('size', '?')} bytes"
    if result.get("offsite"):
        detail += ", copied off-site"
    return result, detail


def _prune(settings: Settings, progress: ProgressCallback, cancel: CancelToken) -> tuple[dict[str, Any], str]:
    outcome = prune.prune(settings, dry_run=False, progress=progress, cancel=cancel)
    result = outcome.to_json()
    detail = f"kept {len(result.get('keep', []))}, deleted {plural(len(result.get('deleted', [])), 'file')}"
    detail += _drop_renamed_due(settings, result)
    if not outcome.ok:
        failed = result.get("failed") or []
        raise _StepFailed(f"{plural(len(failed), 'deletion')} failed" + (f": {failed[0].get('error')}" if failed else ""),
                          result)
    return result, detail


def _drop_renamed_due(settings: Settings, result: dict[str, Any]) -> str:
    """The databases restores renamed aside and kept (`restore.keep_renamed_hours`) past their
    time: dropped here too, so a copy is not kept for as long as no restore runs."""
    from fovea_tui.engine.restore import aftercare

    try:
        with acquire(settings, "backups", purpose="dropping renamed databases kept past their time"):
            result["renamed_dropped"] = aftercare.drop_expired(settings)
    except FoveaError as exc:
        result["renamed_dropped_error"] = str(exc)
        return f"; the renamed databases kept past their time could not be dropped: {exc}"
    dropped = result["renamed_dropped"]
    return f"; dropped {', '.join(dropped)} (kept past restore.keep_renamed_hours)" if dropped else ""


def _sync(settings: Settings, progress: ProgressCallback, cancel: CancelToken) -> tuple[dict[str, Any], str]:
    outcome = run_sync(settings, dry_run=False, progress=progress, cancel=cancel)
    result = _as_dict(outcome)
    detail = (f"{result.get('uploaded', 0)} uploaded, {result.get('skipped', 0)} unchanged, "
              f"{result.get('deleted', 0)} deleted, {result.get('bytes', 0)} bytes")
    if not outcome.ok:
        if result.get("refused"):
            raise _StepFailed(f"refused: {result['refused']}", result)
        errors = result.get("errors") or []
        raise _StepFailed(f"{plural(result.get('error_count', len(errors)), 'error')}"
                          + (f": {errors[0]}" if errors else ""), result)
    return result, detail


class _StepFailed(FoveaError):
    """A step that returned but reports errors (e.g. a sync with failed files)."""

    def __init__(self, message: str, result: dict[str, Any]) -> None:
        super().__init__(message)
        self.result = result


StepFn = Callable[[Settings, ProgressCallback, CancelToken], tuple[dict[str, Any], str]]
STEP_FUNCTIONS: dict[str, StepFn] = {"backup": _backup, "prune": _prune, "sync": _sync}


# ---------------------------------------------------------------- the run ---------------

def run_nightly(settings: Settings, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                *, send_notifications: bool = True, now: Callable[[], datetime] | None = None,
                notify_options: dict[str, Any] | None = None) -> NightlyResult:
    """Run the three steps in order; never raises for a step's failure (LockHeld does)."""
    cancel = cancel or CancelToken()
    clock = now or (lambda: datetime.now(UTC))
    result = NightlyResult(started_at=clock())
    with acquire(settings, "nightly", purpose="nightly run"):
        run_watch = monitor.Watch.for_job(settings, "nightly")
        run_watch.start()
        step_watches: list[monitor.Watch] = []
        for name in STEPS:
            step = StepResult(name)
            result.steps.append(step)
            skip = _skip_reason(settings, result, name)
            if skip:
                step.detail = skip
                continue
            progress(ProgressEvent(phase="nightly", done=STEPS.index(name), total=len(STEPS), unit="steps",
                                   current=name, message=f"running {name}"))
            watch = monitor.Watch.for_job(settings, name, fallback=False) if name in monitor.JOBS else None
            if watch is not None:
                step_watches.append(watch)
                watch.start()
            started = time.monotonic()
            try:
                step.result, step.detail = STEP_FUNCTIONS[name](settings, progress, cancel)
                step.status = "ok"
            except Cancelled as exc:
                step.status, step.detail = "failed", f"cancelled: {exc}"
                result.cancelled = True
            except _StepFailed as exc:
                step.status, step.detail, step.result = "failed", str(exc), exc.result
            except FoveaError as exc:
                step.status, step.detail = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - one step's bug must not cost the others
                step.status, step.detail = "failed", f"unexpected error: {type(exc).__name__}: {exc}"
            step.detail = notify.scrub(step.detail)
            step.duration_s = time.monotonic() - started
            if watch is not None:
                watch.finish(0 if step.status == "ok" else 1, f"{name} {step.status}: {step.detail}")
        result.finished_at = clock()
        run_watch.finish(0 if result.ok else 1, result.summary_lines())
        result.monitor = run_watch.as_list() + [p for w in step_watches for p in w.as_list()]
        if send_notifications and (settings.notify.webhooks or settings.notify.urls) and (
                not result.ok or settings.notify.on_success):
            result.notifications = notify.deliver(settings, message(result), **(notify_options or {}))
        record(settings, result)
    return result


def _skip_reason(settings: Settings, result: NightlyResult, name: str) -> str:
    if result.cancelled:
        return "cancelled"
    if name == "prune":
        backup = result.step("backup")
        if backup is not None and backup.status != "ok":
            return "the backup failed: older backups are kept untouched"
    if name == "sync" and not settings.volume.target:
        return "volume.target is empty: no volume sync configured"
    return ""


NEXT_AFTER_FAILURE = {
    "backup": "run `fovea-tui backup` on {host} and read its error; older backups were kept",
    "prune": "run `fovea-tui prune --dry-run` on {host} to see what it would delete",
    "sync": "run `fovea-tui sync` on {host} and read its errors",
}


def message(result: NightlyResult) -> notify.Message:
    """The run as a person reads it: outcome in the title, a line per step, what to run next."""
    host = socket.gethostname()
    head = "OK" if result.ok else result.outcome.upper()
    failed = [s.name for s in result.steps if s.status == "failed"]
    if result.ok:
        next_step = "nothing to do"
    elif result.cancelled:
        next_step = f"run `fovea-tui run-nightly` on {host} again"
    else:
        next_step = "; ".join(NEXT_AFTER_FAILURE[name].format(host=host) for name in failed)
    body = (f"fovea-tui nightly run on {host}: {head} in {result.duration_s:.0f} s\n\n{result.summary_lines()}"
            f"\n\nNext: {next_step}")
    return notify.Message(f"fovea-tui nightly on {host}: {head}", body, failure=not result.ok,
                          payload=payload(result))


def payload(result: NightlyResult) -> dict[str, Any]:
    """What a webhook receives: outcome and per-step status, never a secret or a result body."""
    host = socket.gethostname()
    head = "OK" if result.ok else result.outcome.upper()
    return {
        "source": "fovea-tui",
        "event": "nightly",
        "ok": result.ok,
        "outcome": result.outcome,
        "host": host,
        "started_at": _iso(result.started_at),
        "finished_at": _iso(result.finished_at) if result.finished_at else None,
        "duration_s": result.duration_s,
        "steps": [{"name": s.name, "status": s.status, "detail": s.detail} for s in result.steps],
        "text": f"fovea-tui nightly on {host}: {head} ({result.summary()})",
        "tool_version": __version__,
    }


# ---------------------------------------------------------------- the record ------------

def last_path(settings: Settings) -> Path:
    return settings.state_dir / LAST_FILE


def record(settings: Settings, result: NightlyResult) -> None:
    """nightly-last.json (atomic) and one audit line; a state dir we cannot write never raises."""
    data = result.as_dict()
    audit.record(settings, "nightly", result.outcome, {
        "started_at": data["started_at"], "finished_at": data["finished_at"], "duration_s": data["duration_s"],
        "steps": [{"name": s.name, "status": s.status, "detail": s.detail} for s in result.steps],
        "notifications": [{"channel": n["channel"], "url": n["url"], "ok": n["ok"]} for n in result.notifications],
        "monitor": [{"job": p["job"], "event": p["event"], "url": p["url"], "ok": p["ok"]} for p in result.monitor],
    })
    try:
        path = last_path(settings)
        ensure_private_dir(path.parent)
        write_atomic(path, masking.redact(json.dumps(data, indent=2, default=str, ensure_ascii=False)) + "\n")
    except (OSError, FoveaError) as exc:
        log.warning("%s not written: %s", last_path(settings), getattr(exc, "strerror", None) or exc)


def read_last(settings: Settings) -> dict[str, Any] | None:
    """The last run's record, or None (absent or unreadable)."""
    try:
        data = json.loads(last_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
