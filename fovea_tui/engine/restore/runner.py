"""Running the steps: forward, resume after a crash, and rollback. The runner's body.

`execute(handle, action)` is what `python -m fovea_tui.engine.infra.jobs run|resume|rollback ID`
calls for a restore job. It holds the backups lock for its whole life (no backup, prune or
second restore meanwhile), records every step's status, detail, timing and output in the
job's state file, and ends with one audit line and a message saying, in plain words, what
state the install is in.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from fovea_tui import masking
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.jobs import in_background, now_iso
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.infra.stack import import_sdk
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.restore import aftercare, incoming
from fovea_tui.engine.restore.context import RestoreContext
from fovea_tui.engine.restore.steps import Held, Skip, Step, build_steps, kept_aside
from fovea_tui.errors import Cancelled, FoveaError

DONE = ("ok", "skipped")
RAN = ("ok", "failed", "running")


def initial_records() -> list[dict]:
    return [{**s.describe(), "status": "pending", "detail": "", "output": []} for s in build_steps()]


def _index(steps: list[Step], name: str) -> int:
    return next(i for i, s in enumerate(steps) if s.name == name)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FoveaError):
        return str(exc)
    return f"unexpected {type(exc).__name__}: {exc}"


def execute(handle, action: str) -> None:
    settings = handle.settings
    project = None if settings.database.mode == "docker" else settings.install.compose_project
    in_background(lambda: import_sdk(project))  # beside the first steps, which mostly wait on the server
    ctx = RestoreContext(handle)
    data = handle.data
    data.pop("result_reported", None)
    if not data.get("steps"):
        data["steps"] = initial_records()
    steps = build_steps()
    outcome_details: dict = {"job": handle.id, "action": action, "dump": data["params"].get("dump")}
    try:
        with acquire(settings, "backups", purpose=f"restore (job {handle.id})"):
            try:
                if action == "rollback" or (action == "resume" and data.get("phase") == "rollback"):
                    _rollback(ctx, steps, reason=data.get("rollback", {}).get("reason") or "asked by the operator")
                else:
                    _forward(ctx, steps, resume=action == "resume")
            finally:
                _discard_incoming(ctx)
    except FoveaError as exc:  # the lock is held by someone else: this run touched nothing
        if action == "run":
            data["status"] = "refused" if exc.exit_code == 3 else "failed"
            data["message"] = f"Nothing was changed: {exc}"
        else:  # the job stays as it was (interrupted or failed): it can be tried again
            data["message"] = f"Could not {action} the restore: {exc}. {state_words(data)}"
    except BaseException as exc:  # noqa: BLE001 - record, then let the runner exit
        data["status"] = "failed"
        data["message"] = f"The runner crashed: {_error_text(exc)}. " + _state_words(ctx)
        print(masking.redact(traceback.format_exc()), flush=True)
    finally:
        data["ended_at"] = now_iso()
        data.pop("awaiting", None)
        handle.save()
        status = data.get("status")
        outcome = {"ok": "ok", "refused": "refused", "cancelled": "cancelled"}.get(status, "failed")
        outcome_details.update({
            "status": status, "message": data.get("message"),
            "steps": {r["name"]: r["status"] for r in data["steps"]},
            "safety_dump": (ctx.facts.get("safety_dump") or None),
        })
        audit.record(settings, "restore", outcome, outcome_details)
        if outcome != "ok":
            dump = _name(data["params"].get("dump"))
            from fovea_tui.engine.ops import notify  # only for an alert: not on every runner's start

            notify.send_alerts(settings, [notify.Alert(
                "critical", "restore:critical", f"restore of {dump} ended {status}: {data.get('message', '')}",
                notify.NEXT_STEP["restore"])])
        print(masking.redact(f"{now_iso()} {handle.id}: {status}: {data.get('message', '')}"), flush=True)
    if aftercare.pending(data):  # the result is out; the renamed database's dump comes after it
        data["result_reported"] = True  # a face following the restore may return now
        handle.save()
        aftercare.write_safety_dump(ctx)
        _drop_expired(ctx)
        print(masking.redact(f"{now_iso()} {handle.id}: safety copy: {ctx.facts['safety_copy'].get('detail')}"),
              flush=True)


def _discard_incoming(ctx: RestoreContext) -> None:
    """A run that ends before step 6 renamed the database created ahead into place drops it;
    one the server does not let go is said, and left to the job's next run."""
    try:
        incoming.discard(ctx)
    except FoveaError as exc:
        ctx.output(f"warning: could not drop database {ctx.facts.get('incoming')} (created ahead, empty): {exc}")


def _drop_expired(ctx: RestoreContext) -> None:
    """Renamed databases that earlier restores kept for `restore.keep_renamed_hours`, now due."""
    try:
        for name in aftercare.drop_expired(ctx.settings):
            print(f"{now_iso()} dropped {name}: kept long enough", flush=True)
    except FoveaError as exc:
        print(masking.redact(f"{now_iso()} could not drop the renamed databases due: {exc}"), flush=True)


def _forward(ctx: RestoreContext, steps: list[Step], *, resume: bool) -> None:
    data = ctx.data
    records = data["steps"]
    start = 0
    if resume:
        start = next((i for i, r in enumerate(records) if r["status"] not in DONE), len(records))
        rerun_from = steps[start].rerun_from if start < len(records) else None
        if rerun_from:
            start = _index(steps, rerun_from)
        for rec in records[start:]:
            if rec["status"] != "pending":
                rec.setdefault("output", []).append(f"--- resumed ({rec['status']} before) ---")
            rec["status"] = "pending"
    data["phase"] = "forward"
    data["status"] = "running"
    data.setdefault("started_at", now_iso())
    ctx.save()
    for i in range(start, len(steps)):
        step, rec = steps[i], records[i]
        ctx.current = rec
        rec.update(status="running", started_at=now_iso(), detail="")
        rec.pop("progress", None)
        ctx.save()
        t0 = time.monotonic()
        try:
            detail = step.run(ctx)
            step.check(ctx)
            rec.update(status="ok", detail=detail)
        except Skip as skip:
            rec.update(status="skipped", detail=skip.detail)
        except BaseException as exc:  # noqa: BLE001 - every failure is reported and handled
            rec.update(status="failed", detail=masking.redact(_error_text(exc)))
            rec["duration_s"] = round(time.monotonic() - t0, 2)
            rec["ended_at"] = now_iso()
            if not isinstance(exc, FoveaError):
                ctx.output(traceback.format_exc())
            ctx.save()
            if isinstance(exc, Held):  # stopped on purpose before the services: nothing to undo
                data["status"] = "held"
                data["message"] = (f"The restore is held at step {step.name}: {exc.message} {_state_words(ctx)} "
                                   f"Next: {exc.hint}.")
                return
            _after_failure(ctx, steps, i, exc)
            if not isinstance(exc, (Exception, FoveaError)):
                raise  # KeyboardInterrupt / SystemExit: recorded, now let it go
            return
        finally:
            if rec["status"] != "failed":  # a failed step's time was taken before its rollback ran
                rec["duration_s"] = round(time.monotonic() - t0, 2)
                rec["ended_at"] = now_iso()
            ctx.current = None
            ctx.save()
    data["status"] = "ok"
    slow = (ctx.facts.get("still_starting") or []) + (ctx.facts.get("services_not_up") or [])
    running = [n for n in ctx.facts.get("was_running") or [] if n not in {s["service"] for s in slow}]
    data["message"] = (f"Restored {ctx.facts.get('dump')} into database {ctx.db_name}"
                       + (f"; {', '.join(running)} running again" if running else "")
                       + "".join(f"; {s['service']} {s['detail']}" for s in slow)
                       + (f"; safety dump {_name(ctx.facts.get('safety_dump'))} kept" if ctx.facts.get("safety_dump") else "")
                       + (f"; the database as it was is {ctx.facts['renamed_to']} until its safety dump is written "
                          f"(`fovea-tui restore --follow {ctx.handle.id}`)" if aftercare.pending(data) else "")
                       + "." + _expected_deletions(ctx.facts.get("videos") or {}))


def _expected_deletions(found: dict) -> str:
    """What the operator accepted to lose: the backend deletes the rows of missing videos."""
    if not found.get("missing"):
        return ""
    who = ", ".join(found.get("reconcilers") or []) or "the backend, once started,"
    return (f" {found['missing']} referenced videos were missing ({found.get('accepted')}): {who} is expected to "
            f"delete them with {found['annotations']} annotations, {found['summaries']} summaries and "
            f"{found['claims']} claims.")


def _name(path) -> str:
    return str(path).rsplit("/", 1)[-1] if path else ""


def _after_failure(ctx: RestoreContext, steps: list[Step], index: int, exc: BaseException) -> None:
    data = ctx.data
    failed = steps[index]
    reason = f"step {failed.name} failed: {_error_text(exc)}"
    touched = any(s.changes_install and data["steps"][i]["status"] in RAN for i, s in enumerate(steps[: index + 1]))
    if not touched:
        if isinstance(exc, Cancelled):
            data["status"] = "cancelled"
        else:
            data["status"] = "refused" if getattr(exc, "exit_code", 1) == 3 else "failed"
        safety = ctx.facts.get("safety_dump")
        data["message"] = f"Nothing was changed: {_error_text(exc).rstrip('.')}." + (
            f" The safety dump {Path(safety).name} is kept." if safety else "")
        return
    if ctx.params.get("no_rollback"):
        data["status"] = "failed"
        data["message"] = (f"The restore failed at step {failed.name} ({_error_text(exc)}); not rolled back "
                           f"(--no-rollback). {_state_words(ctx)} Resume with `fovea-tui restore --resume {ctx.handle.id}`"
                           f" or roll back with `fovea-tui restore --rollback {ctx.handle.id}`.")
        return
    _rollback(ctx, steps, reason=reason)


def _rollback(ctx: RestoreContext, steps: list[Step], *, reason: str) -> None:
    data = ctx.data
    ctx.cancel = CancelToken()  # a rollback is never cut short by the cancel that may have caused it
    data["phase"] = "rollback"
    data["status"] = "rolling_back"
    info = data.setdefault("rollback", {})
    info.setdefault("reason", reason)
    info.setdefault("started_at", now_iso())
    ctx.save()
    records = data["steps"]
    for i in reversed(range(len(steps))):
        step, rec = steps[i], records[i]
        if not step.changes_install or rec["status"] not in RAN:
            continue
        undo = rec.get("undo") or {}
        if undo.get("status") in DONE:
            continue
        ctx.current = rec
        rec["undo"] = {"status": "running", "started_at": now_iso()}
        ctx.save()
        t0 = time.monotonic()
        try:
            detail = step.undo(ctx)
            rec["undo"] = {"status": "ok" if detail else "skipped", "detail": detail or "nothing to undo"}
        except BaseException as exc:  # noqa: BLE001
            rec["undo"] = {"status": "failed", "detail": masking.redact(_error_text(exc))}
            data["status"] = "rollback_failed"
            info["failed_step"] = step.name
            what = ("The rollback of the finished restore" if info.get("after_success")
                    else f"The restore did not complete ({info['reason']}) and the rollback")
            _record_started_again(ctx)
            data["message"] = (f"{what} failed at step {step.name}: {_error_text(exc)}. {_state_words(ctx)} "
                               + rollback_advice(data, ctx.handle.id))
            return
        finally:
            rec["undo"]["duration_s"] = round(time.monotonic() - t0, 2)
            ctx.current = None
            ctx.save()
    data["status"] = "rolled_back"
    info["ended_at"] = now_iso()
    running = ctx.facts.get("was_running") or []
    if ctx.facts.get("safety_restored") and kept_aside(ctx.facts):
        db_words = f"the database is back as it was ({ctx.facts['renamed_to']} renamed back; no safety dump needed)"
    elif ctx.facts.get("safety_restored") and not ctx.facts.get("safety_dump"):
        db_words = f"database {ctx.db_name} is dropped again, as there was none before the restore"
    elif ctx.facts.get("safety_restored"):
        db_words = f"the database is back to the safety dump {_name(ctx.facts.get('safety_dump'))}"
    else:
        db_words = "the database was not touched"
    if info.get("after_success"):
        live = ctx.facts.get("live_dump")
        data["message"] = (f"Rolled back the finished restore of {ctx.facts.get('dump')} ({info['reason']}): "
                           f"{db_words}" + (f", and {', '.join(running)} are running again" if running else "")
                           + (f". The database as it was before the rollback is saved as {_name(live)}"
                              if live else "") + ".")
        return
    data["message"] = (f"The restore did not complete ({info['reason']}). Rolled back: {db_words}"
                       + (f", and {', '.join(running)} are running again" if running else "")
                       + ". The install is as it was before the restore.")


def _state_words(ctx: RestoreContext) -> str:
    return state_words(ctx.data)


def _record_started_again(ctx: RestoreContext) -> None:
    """Before the words of a failed rollback: which services this restore stopped are running
    again, as Docker says (`started_again`). A start that failed half-way may have started
    some; without this the job's record would name them all as stopped."""
    stopped = ctx.facts.get("was_running") or []
    if not stopped or ctx.stack is None:
        return
    try:
        running = {s.name for s in ctx.stack.services() if s.running}
    except Exception:  # noqa: BLE001 - no engine, or the SDK failing: the job's record stands
        return
    ctx.facts["started_again"] = [name for name in stopped if name in running]


def _not_started_again(facts: dict) -> list[str]:
    """The services this restore stopped, as its own record has them now: less those a failed
    rollback's start got going (`started_again`)."""
    again = facts.get("started_again") or []
    return [n for n in facts.get("was_running") or [] if n not in again]


def rollback_advice(data: dict, job_id: str) -> str:
    """How to finish a rollback that failed, from what it had already done: once the database
    is put back, only the services are left, and the words never ask for a DROP of a database
    that is again the one as it was."""
    facts = data.get("facts") or {}
    database = (data.get("params") or {}).get("database")
    retry = f"retry with `fovea-tui restore --rollback {job_id}`"
    renamed, safety = kept_aside(facts), facts.get("safety_dump")
    if facts.get("safety_restored") or not facts.get("database_dropped"):
        stopped = _not_started_again(facts)
        return f"Once the server answers, {retry}" + (
            f": the database needs nothing more; it starts {', '.join(stopped)} again." if stopped else ".")
    if renamed:
        return (f"Once the server answers, {retry}, or by hand: DROP DATABASE \"{database}\"; "
                f"ALTER DATABASE \"{renamed}\" RENAME TO \"{database}\".")
    if safety:
        return f"The safety dump is {safety}; {retry} or restore it by hand (gunzip -c it into psql)."
    return ""


def rollback_plan(data: dict) -> str:
    """What a rollback of this job would do, in words, from what it recorded: the question a
    face asks before starting one."""
    facts = data.get("facts") or {}
    database = (data.get("params") or {}).get("database")
    aside, safety = kept_aside(facts), facts.get("safety_dump")
    if facts.get("safety_restored") or not facts.get("database_dropped"):
        what = f"Database {database} is as it was: nothing to put back"
    elif aside:
        what = f"Drop the restored database {database} and rename {aside} (the database as it was) back to {database}"
    elif facts.get("aside_lost") and not safety:
        what = (f"{facts.get('renamed_to')}, the database as it was, is no longer on the server: the rollback "
                "finds out again whether it is back, and fails if it is not")
    elif safety:
        what = f"Restore the safety dump {_name(safety)} into database {database}"
    else:
        what = f"Drop database {database} (it did not exist before the restore)"
    records = {r["name"]: r["status"] for r in data.get("steps", [])}
    stopped = facts.get("was_running") or []
    if stopped and records.get("start") != "ok":
        what += f", then start {', '.join(stopped)} again"
    return what + "."


def state_words(data: dict) -> str:
    """What state the install is in, in words, from the facts a job recorded so far and, for the
    services, what Docker said of them when a face asked (`still_stopped`, set by
    `engine.restore.check_services`): a service started again by hand is not named."""
    facts = data.get("facts") or {}
    records = {r["name"]: r["status"] for r in data.get("steps", [])}
    renamed = kept_aside(facts)
    if facts.get("safety_restored"):
        db = ("The database is back as it was (renamed back)." if renamed
              else "The database is back to the safety dump." if facts.get("safety_dump")
              else "The database is dropped again: there was none before the restore.")
    elif facts.get("aside_lost"):
        db = (f"The database as it was ({facts.get('renamed_to')}) is no longer on the server; database "
              f"{(data.get('params') or {}).get('database')} holds what the restore left.")
    elif not facts.get("database_dropped"):
        db = "The database is untouched."
    elif renamed and records.get("restore") != "ok":
        # the name is recorded before the rename: only a prepare step that ended ok proves it happened
        maybe = "" if records.get("prepare") == "ok" else \
            " (or still under its own name if the runner stopped before renaming it)"
        db = f"The database as it was is kept as {renamed}{maybe}; the rollback renames it back."
    elif records.get("restore") == "ok":
        db = f"The database holds the restored dump {facts.get('dump')}" + (
            "" if records.get("migrate") in ("ok", "skipped") else " without the pending migrations") + "."
    else:
        db = "The database is in an unknown state (empty or partly restored)."
    stopped = facts.get("was_running") or []
    if not stopped or records.get("start") == "ok":
        return db
    still = data["still_stopped"] if "still_stopped" in data else _not_started_again(facts)
    if not still:
        return db + f" The services the restore stopped are running again: {', '.join(stopped)}."
    return db + f" Stopped by the restore and not yet started again: {', '.join(still)}."
