"""The guided restore: choose, pre-flight, safety dump, confirm, stop, prepare, restore,
migrate, start, verify; with a way back.

The faces use this module only:

    job_id = start_restore(settings, "fovea-20260101T020000Z.sql.gz", confirmed=True)
    state = jobs.follow(settings, job_id, on_update)      # or load_job / latest_restore
    result = report(state)                                 # the contract's JSON shape

The steps (`steps.py`) run in a detached runner (`engine.jobs`), so a dropped SSH session does
not stop a restore half-way; `resume_restore` continues an interrupted job from its last
completed step and `rollback_restore` walks back through what ran (`rollback_plan` says what it
would do).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.backups import readahead
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.infra.locks import holder
from fovea_tui.engine.infra.stack import Stack
from fovea_tui.engine.restore import aftercare
from fovea_tui.engine.restore.runner import initial_records, rollback_plan, state_words
from fovea_tui.engine.restore.steps import acceptance_phrase
from fovea_tui.engine.restore.verify import CHECKLIST, check_login
from fovea_tui.envfile import DatabaseURL, EnvFile
from fovea_tui.errors import LockHeld, OperationFailed, SafetyRefusal

__all__ = [
    "CHECKLIST", "check_login", "start_restore", "resume_restore", "rollback_restore", "confirm", "cancel",
    "report", "latest_restore", "accept_missing_videos", "acceptance_phrase", "expected_database_name",
    "describe_status", "run_inline", "FINAL", "FinishedRestore", "finished_restore", "live_words",
    "ACTIVE", "active_restore", "unconfirmed", "safety_dump_name", "follow_command", "safety_copy",
    "check_services", "stopped_by", "rollback_plan", "confirm_question",
]

FINAL = jobs.FINAL
ACTIVE = ("pending", "running", "waiting", "rolling_back")  # a runner is at work on it


def expected_database_name(settings: Settings) -> str:
    """The name the operator types to confirm: the database the restore replaces."""
    if settings.database.mode == "direct":
        if settings.database.url:
            return DatabaseURL.parse(settings.database.url, source="database.url").database
        url = EnvFile.load(settings.install.env_file).database_url()
        if url is not None:
            return url.database
    return settings.database.name


def _refuse_if_locked(settings: Settings) -> None:
    info = holder(settings, "backups")
    if info is not None:
        raise LockHeld(f"backups lock is held by {info.describe()}",
                       hint="wait for it to finish; a restore cannot run beside a backup, a prune or another restore")


def start_restore(settings: Settings, dump: str, *, confirmed: bool = False, skip_migrate: bool = False,
                  no_rollback: bool = False, detach: bool = True, fork: bool = False, **params: Any) -> str:
    """Create the restore job and (with `detach`) start its runner; returns the job id. With
    `fork` the runner is a fork of this process (`jobs.spawn`): the CLI's choice."""
    _refuse_if_locked(settings)
    candidate = Path(dump)
    if candidate.is_file():
        dump = str(candidate.resolve())
    job_id = jobs.create_job(settings, "restore", {
        "dump": dump, "confirmed": confirmed, "skip_migrate": skip_migrate, "no_rollback": no_rollback,
        "database": expected_database_name(settings), **params,
    }, steps=initial_records())
    if detach:
        jobs.spawn(settings, job_id, "run", fork=fork, keep_fds=readahead.descriptors() if fork else ())
    return job_id


def _resumable(settings: Settings, job_id: str) -> jobs.JobState:
    state = jobs.load_state(settings, job_id)
    if state.kind != "restore":
        raise SafetyRefusal(f"job {job_id} is not a restore")
    if state.alive:
        raise SafetyRefusal(f"restore {job_id} is still running (pid {state.pid})",
                            hint="follow it in the TUI; resume or roll back only a restore that stopped")
    return state


def _patch_params(settings: Settings, job_id: str, **params: Any) -> None:
    directory = jobs.jobs_dir(settings)
    data = jobs.read_state(directory, job_id)
    data["params"].update(params)
    jobs.write_json_atomic(jobs.state_path(directory, job_id), data)


def resume_restore(settings: Settings, job_id: str, *, confirmed: bool = False, allow_missing_videos: bool = False,
                   attended: bool = False, detach: bool = True, fork: bool = False) -> str:
    """Continue an interrupted, held (or failed, not rolled back) restore from its last completed
    step; `allow_missing_videos` accepts that the backend deletes the videos still missing, and
    `attended` (a face the operator types in) makes the runner ask for that acceptance."""
    state = _resumable(settings, job_id)
    status = state.status
    if status == "ok" and aftercare.pending(state.as_state()):
        pass  # its runner stopped before the renamed database's safety dump was written: write it now
    elif status in ("ok", "rolled_back", "refused", "cancelled"):
        raise SafetyRefusal(f"restore {job_id} is {status}: nothing to resume")
    _refuse_if_locked(settings)
    if confirmed or attended:
        _patch_params(settings, job_id, confirmed=confirmed and not attended)
    if allow_missing_videos:
        _patch_params(settings, job_id, allow_missing_videos=True)
    _clear_reported(settings, job_id)
    if detach:
        jobs.spawn(settings, job_id, "resume", fork=fork)
    return job_id


@dataclass(frozen=True)
class FinishedRestore:
    """A restore that completed: its database has been live, taking writes, since `since`."""

    job: str
    dump: str
    database: str
    since: str  # ISO time the restore ended
    live_for_s: float
    plan: str  # what the rollback does (`rollback_plan`)

    @property
    def question(self) -> str:
        return (f"Restore {self.job} of {self.dump} finished {live_words(self.live_for_s)} ago: database "
                f"{self.database!r} has been live since {self.since}. Rolling back discards every write made "
                f"since; a fresh safety dump of the database as it is now is taken first. Then: {self.plan}")


def live_words(seconds: float) -> str:
    """"3 d 4 h", "2 h 5 min", "40 s": how long a restored database has been live."""
    s = max(0, int(seconds))
    d, rest = divmod(s, 86400)
    h, rest = divmod(rest, 3600)
    m, sec = divmod(rest, 60)
    if d:
        return f"{d} d {h} h"
    if h:
        return f"{h} h {m} min"
    return f"{m} min {sec} s" if m else f"{sec} s"


def finished_restore(data: dict) -> FinishedRestore | None:
    """The restore job `data` if it completed (rolling it back is a new destructive act)."""
    if data.get("kind") != "restore" or jobs.effective_status(data) != "ok" or data.get("phase") != "forward":
        return None
    since = data.get("ended_at") or data.get("updated_at") or ""
    try:
        live = (datetime.now(UTC) - datetime.fromisoformat(since)).total_seconds()
    except (TypeError, ValueError):
        live = 0.0
    facts = data.get("facts") or {}
    return FinishedRestore(job=data["id"], dump=facts.get("dump") or Path(str(data["params"].get("dump", ""))).name,
                           database=data["params"].get("database", ""), since=since, live_for_s=live,
                           plan=rollback_plan(data))


def rollback_restore(settings: Settings, job_id: str, *, typed: str | None = None,
                     force_after_success: bool = False, detach: bool = True, fork: bool = False) -> str:
    """Walk back through what the restore ran: the database from the safety dump, services restarted.

    A restore that finished is only rolled back when confirmed like a restore: `typed` equal
    to the database name, or `force_after_success` (the CLI's `--yes --force-after-success`);
    otherwise SafetyRefusal (exit 3) saying how long the restored database has been live.
    Its runner takes a fresh safety dump of the live database before replacing it."""
    state = _resumable(settings, job_id)
    if state.status in ("rolled_back", "refused", "cancelled"):
        raise SafetyRefusal(f"restore {job_id} is {state.status}: nothing to roll back")
    if state.facts.get("database_dropped") and "safety_dump" not in state.facts \
            and state.facts.get("safety_mode") != "rename":
        raise OperationFailed(f"restore {job_id} has no safety dump to roll back to")
    finished = finished_restore(jobs.load_job(settings, job_id))
    if finished is not None:
        if not force_after_success and (typed or "").strip() != finished.database:
            raise SafetyRefusal(
                f"{finished.question} Nothing was changed.",
                hint=f"type the database name ({finished.database}) to confirm, or pass --yes --force-after-success")
    _refuse_if_locked(settings)
    if finished is not None:
        _mark_after_success(settings, job_id, finished)
    _clear_reported(settings, job_id)
    if detach:
        jobs.spawn(settings, job_id, "rollback", fork=fork)
    return job_id


def _clear_reported(settings: Settings, job_id: str) -> None:
    """A new run of the job reports its own outcome: the last run's "reported" mark goes."""
    directory = jobs.jobs_dir(settings)
    data = jobs.read_state(directory, job_id)
    if data.pop("result_reported", None) is not None:
        jobs.write_json_atomic(jobs.state_path(directory, job_id), data)


def _mark_after_success(settings: Settings, job_id: str, finished: FinishedRestore) -> None:
    """Record in the job that this rollback undoes a finished restore (the runner dumps the
    live database first and says so)."""
    directory = jobs.jobs_dir(settings)
    data = jobs.read_state(directory, job_id)
    data["rollback"] = {"after_success": True, "live_since": finished.since,
                        "live_for_s": round(finished.live_for_s),
                        "reason": f"asked by the operator after {live_words(finished.live_for_s)} live"}
    jobs.write_json_atomic(jobs.state_path(directory, job_id), data)


def run_inline(settings: Settings, job_id: str, action: str = "run") -> dict:
    """Run a job's runner body in this process, not in a detached runner; returns its state."""
    return jobs.run_job(jobs.jobs_dir(settings), job_id, action, live=settings)


def confirm(settings: Settings, job_id: str, typed: str) -> None:
    jobs.write_control(settings, job_id, "confirm", typed)


def accept_missing_videos(settings: Settings, job_id: str, typed: str) -> None:
    """The operator's typed acceptance (`acceptance_phrase`) that the backend deletes the
    videos still missing; anything else holds the restore."""
    jobs.write_control(settings, job_id, "accept", typed)


def cancel(settings: Settings, job_id: str) -> None:
    jobs.write_control(settings, job_id, "cancel")


def latest_restore(settings: Settings) -> dict | None:
    return jobs.latest_job(settings, "restore")


def active_restore(settings: Settings) -> dict | None:
    """The newest restore a runner is at work on (running, waiting for its confirmation,
    rolling back), or None: what quitting or leaving the wizard must not hide."""
    for data in jobs.list_jobs(settings, "restore"):
        if data.get("alive") and jobs.effective_status(data) in ACTIVE:
            return data
    return None


def unconfirmed(data: dict) -> bool:
    """True while the operator has not confirmed yet, so nothing has been changed and
    cancelling costs nothing (the safety dump, if taken, is kept)."""
    if (data.get("params") or {}).get("confirmed") or data.get("phase", "forward") != "forward":
        return False
    step = next((r for r in data.get("steps", []) if r.get("name") == "confirm"), None)
    return step is not None and step.get("status") in ("pending", "running")


def confirm_question(data: dict) -> str:
    """What the operator confirms by typing the database's name, from what pre-flight and the
    safety step found: both faces ask it in these words."""
    facts = data.get("facts") or {}
    name = (data.get("params") or {}).get("database", "")
    checks = {c.get("name"): c.get("data") or {} for c in facts.get("preflight") or []}
    if checks.get("room", {}).get("exists") is False:
        what = f"The restore creates database {name!r} (the server has none now) from {facts.get('dump')}."
    else:
        what = f"The restore replaces database {name!r} with {facts.get('dump')}."
    if checks.get("engine", {}).get("stack", True):
        what += " Every service but the database is stopped meanwhile; running jobs are interrupted."
    safety = safety_dump_name(data)
    if safety:
        what += f" Safety dump taken: {safety} (a roll back returns to it)."
    elif facts.get("safety_mode") == "rename":
        what += (" The current database is renamed aside, not dropped (a roll back renames it back); its "
                 "safety dump is written after the restore.")
    return what


def safety_dump_name(data: dict) -> str | None:
    path = (data.get("facts") or {}).get("safety_dump")
    return Path(path).name if path else None


def safety_copy(data: dict) -> dict[str, Any] | None:
    """How the way back was kept: {"mode": "rename"|"dump", "renamed_to", "status", "detail",
    "dump", "keep_until", "progress"}; None before the safety step decided, and when it chose the
    rename but nothing was renamed (cancelled at its confirmation, a refusal, a rename that
    failed): there is no copy to report. A renamed copy's status: "pending", "running",
    "verified", "failed" or "interrupted" (its safety dump after the restore); "kept" (the
    restore did not finish: the copy is the way back), "renamed_back" (rolled back: it is the
    database again), "lost" (someone dropped or renamed it)."""
    facts = data.get("facts") or {}
    mode = facts.get("safety_mode")
    aside = facts.get("renamed_to")
    if mode is None or (mode == "rename" and not (aside and facts.get("database_dropped"))):
        return None
    out: dict[str, Any] = {"mode": mode}
    if mode == "rename":
        info = facts.get("safety_copy") or {}
        status, detail = info.get("status"), info.get("detail")
        if status == "running" and not data.get("alive", True):
            status = "interrupted"
        elif status is None:
            status, detail = _copy_before_its_dump(data, aside)
        out.update({"renamed_to": aside, "status": status, "detail": detail,
                    "dump": info.get("dump"), "keep_until": info.get("keep_until"),
                    "dropped": bool(facts.get("aside_dropped")), "progress": info.get("progress")})
    return out


def _copy_before_its_dump(data: dict, aside: str | None) -> tuple[str | None, str | None]:
    """(status, detail) of a renamed copy whose safety dump has not started."""
    facts = data.get("facts") or {}
    if aftercare.pending(data):
        return "pending", None
    if jobs.effective_status(data) in ACTIVE:
        return None, None  # at work: the steps say where it stands
    if facts.get("aside_lost"):
        return "lost", f"{aside} is no longer on the server: dropped or renamed by someone else"
    if facts.get("safety_restored"):
        database = (data.get("params") or {}).get("database")
        return "renamed_back", f"{aside} renamed back to {database}: the database is as it was"
    return "kept", f"{aside} holds the database as it was; a rollback renames it back"


def follow_command(job_id: str) -> str:
    return f"fovea-tui restore --follow {job_id}"


def stopped_by(data: dict) -> list[str]:
    """The services a job whose runner is not at work stopped and did not start again (by its
    record); what `check_services` asks Docker about."""
    stopped = (data.get("facts") or {}).get("was_running") or []
    started = any(r.get("name") == "start" and r.get("status") == "ok" for r in data.get("steps", []))
    return [] if started or jobs.effective_status(data) in ACTIVE else list(stopped)


def check_services(settings: Settings, data: dict) -> dict:
    """`data` with `still_stopped`: which services the restore stopped are not running now, as
    Docker says (left out when it does not answer: the job's record stands). Only for a job
    whose runner is not at work and did not start them again; the messages (`describe_status`,
    `state_words`) then name those, not every service the job record says it stopped: one may
    have been started by hand."""
    stopped = stopped_by(data)
    if not stopped:
        return data
    try:
        running = {s.name for s in Stack.connect(settings.install.compose_project).services() if s.running}
    except Exception:  # noqa: BLE001 - no engine, or the SDK failing: the job's record stands
        return data
    data["still_stopped"] = [name for name in stopped if name not in running]
    return data


def describe_status(data: dict) -> str:
    """The job's message, or for an interrupted runner what happened and what to do. With
    `check_services` asked first, the services named as stopped are those Docker says are."""
    status = jobs.effective_status(data)
    if status == "interrupted":
        running = next((r["name"] for r in data.get("steps", []) if r["status"] == "running"), "?")
        if data.get("phase") == "rollback":
            return (f"The rollback was interrupted during step {running}. {state_words(data)} "
                    f"Continue it with `fovea-tui restore --rollback {data['id']}`.")
        return (f"The restore runner stopped during step {running} (it crashed or was killed). "
                f"{state_words(data)} Resume with `fovea-tui restore --resume {data['id']}` "
                f"or roll back with `fovea-tui restore --rollback {data['id']}`.")
    if status in ("running", "rolling_back", "waiting", "pending"):
        current = next((r for r in data.get("steps", []) if r["status"] == "running"), None)
        return f"{status}: {current['title']}" if current else status
    message = data.get("message") or status
    if "still_stopped" in data:  # the runner's words of then, the services as they are now
        recorded = {k: v for k, v in data.items() if k != "still_stopped"}
        message = message.replace(state_words(recorded), state_words(data))
    return message


def _videos_report(found: dict | None) -> dict | None:
    """The video step's findings; `expected_deletions` when the backend starts with videos missing."""
    if not found:
        return found
    out = dict(found)
    if found.get("missing") and found.get("accepted"):
        out["expected_deletions"] = {k: found[k] for k in ("missing", "annotations", "summaries", "claims")}
        out["expected_deletions"]["videos"] = out["expected_deletions"].pop("missing")
    return out


def report(data: dict) -> dict[str, Any]:
    """The contract's restore JSON: {"ok", "dump", "steps": [...], "verification": {...}} and more."""
    status = jobs.effective_status(data)
    facts = data.get("facts") or {}
    steps = []
    for rec in data.get("steps", []):
        st = rec.get("status", "pending")
        entry = {
            "name": rec["name"],
            "status": st if st in ("ok", "failed", "skipped") else ("failed" if st == "running" else "skipped"),
            "detail": rec.get("detail") or ("not reached" if st == "pending" else ""),
            "duration_s": rec.get("duration_s"),
        }
        if st == "running":
            entry["detail"] = entry["detail"] or "interrupted"
        if rec.get("undo"):
            entry["undo"] = {k: v for k, v in rec["undo"].items() if k in ("status", "detail", "duration_s")}
        steps.append(entry)
    verification = dict(facts.get("verification") or {})
    verification.setdefault("checklist", list(CHECKLIST))
    return {
        "ok": status == "ok",
        "dump": facts.get("dump") or Path(str(data.get("params", {}).get("dump", ""))).name,
        "job": data.get("id"),
        "status": status,
        "message": describe_status(data),
        "database": data.get("params", {}).get("database"),
        "safety_dump": facts.get("safety_dump"),
        "safety_copy": safety_copy(data),
        "steps": steps,
        "preflight": facts.get("preflight") or [],
        "videos": _videos_report(facts.get("videos")),
        # services started by the restore that were not (yet) up when it ended: never a rollback
        "still_starting": list(facts.get("still_starting") or []),
        "services_not_up": list(facts.get("services_not_up") or []),
        "verification": verification,
        "rollback": data.get("rollback"),
        "started_at": data.get("started_at"),
        "ended_at": data.get("ended_at"),
    }
