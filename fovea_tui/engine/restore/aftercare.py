"""After a restore that renamed the old database aside: its safety dump, outside the recovery time.

The restore's result is reported first (the install is back); then the same runner dumps the
renamed database (`fovea-YYYYMMDDTHHMMSSZ-pre-restore.sql.gz` with its manifest, as a safety
dump taken before the restore would have been), verifies the file and compares its rows with
the renamed database's, and only then drops that database, or keeps it for
`restore.keep_renamed_hours`. When anything fails the renamed database is kept, the job says
so and a person is alerted: nothing is lost, the copy simply stays on the server.

Progress and the outcome live in the job's `facts.safety_copy`, which `fovea-tui restore
--follow JOB`, `status` and the TUI read.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.infra.database import open_database
from fovea_tui.engine.infra.jobs import now_iso
from fovea_tui.engine.restore.steps import is_the_copy
from fovea_tui.errors import FoveaError, OperationFailed


def pending(data: dict) -> bool:
    """A finished restore whose renamed database still waits for its safety dump."""
    facts = data.get("facts") or {}
    return (data.get("status") == "ok" and facts.get("safety_mode") == "rename" and bool(facts.get("renamed_to"))
            and not facts.get("safety_restored") and not facts.get("aside_dropped")
            and (facts.get("safety_copy") or {}).get("status") not in ("verified", "failed"))


def write_safety_dump(ctx) -> None:
    """Dump the renamed database, verify the dump, then drop (or keep) the renamed database."""
    facts, settings = ctx.facts, ctx.settings
    aside = facts["renamed_to"]
    info = facts["safety_copy"] = {"name": "safety_copy", "status": "running", "renamed_to": aside,
                                   "started_at": now_iso(), "output": []}
    ctx.current = info
    ctx.save()
    t0 = time.monotonic()
    try:
        ctx.output(f"writing the safety dump from {aside}")
        copy = ctx.db.on(aside)
        result = run_backup(settings, progress=lambda e: ctx.progress(e.done, e.total), cancel=ctx.cancel,
                            offsite=False, kind="pre-restore", database=copy, env=ctx.env)
        facts["safety_dump"] = str(result.path)
        info["dump"] = result.name
        ctx.save()
        ctx.output(f"verifying {result.name}")
        verified = verify_dump(result.path, mf.read_for(result.path), cancel=ctx.cancel)
        if not verified.ok:
            raise OperationFailed(f"{result.name} does not verify: " + "; ".join(verified.reasons))
        rows = copy.table_rows()
        if rows != dict(result.tables):
            raise OperationFailed(f"{result.name} holds other rows than {aside}: the dump is kept, so is {aside}")
        info["status"] = "verified"
        keep = settings.restore.keep_renamed_hours
        if keep:
            info["keep_until"] = (datetime.now(UTC) + timedelta(hours=keep)).replace(microsecond=0).isoformat()
            info["detail"] = (f"{result.name} written from {aside} and verified ({sum(rows.values())} rows); "
                              f"{aside} kept until {info['keep_until']} (restore.keep_renamed_hours = {keep})")
        else:
            facts["aside_dropped"] = True
            ctx.save()  # before the drop: a rollback from now on uses the dump
            copy.drop_database(aside)
            info["detail"] = f"{result.name} written from {aside} and verified ({sum(rows.values())} rows); {aside} dropped"
    except BaseException as exc:  # noqa: BLE001 - any failure keeps the renamed database and says so
        why = str(exc) if isinstance(exc, FoveaError) else f"unexpected {type(exc).__name__}: {exc}"
        info["status"] = "failed"
        try:
            kept = is_the_copy(ctx.db, aside, facts)
        except FoveaError:
            kept = True  # the server did not answer: as far as anyone knows, it is there
        if kept:
            info["detail"] = masking.redact(
                f"the safety dump from {aside} failed: {why}; database {aside} is kept as the way back. Take a dump "
                f"of it (`pg_dump {aside} | gzip`) or retry with `fovea-tui restore --resume {ctx.handle.id}`, "
                f"then drop it with DROP DATABASE \"{aside}\"")
        else:
            facts["aside_lost"] = True
            info["detail"] = masking.redact(
                f"the safety dump from {aside} failed: {why}; {aside}, the database as it was before the restore, is "
                "no longer on the server (dropped or renamed by someone else): this restore has no way back to it")
        from fovea_tui.engine.ops import notify  # only for an alert: not on every runner's start

        notify.send_alerts(settings, [notify.Alert("warning", "restore:safety_copy", info["detail"],
                                                   notify.NEXT_STEP["restore"])])
    finally:
        info["ended_at"] = now_iso()
        info["duration_s"] = round(time.monotonic() - t0, 2)
        ctx.current = None
        ctx.data["message"] = (ctx.data.get("message") or "").split(" Safety copy:")[0] + \
            f" Safety copy: {info.get('detail', '')}."
        ctx.save()


def drop_expired(settings: Settings) -> list[str]:
    """Drop the renamed databases kept past `keep_until` by earlier restores; their names."""
    dropped = []
    now = datetime.now(UTC)
    for data in jobs.list_jobs(settings, "restore"):
        facts = data.get("facts") or {}
        info = facts.get("safety_copy") or {}
        until = info.get("keep_until")
        if info.get("status") != "verified" or facts.get("aside_dropped") or not until or data.get("alive"):
            continue
        if datetime.fromisoformat(until) > now:
            continue
        db = open_database(settings)
        aside = facts["renamed_to"]
        if is_the_copy(db, aside, facts):
            db.drop_database(aside)
            info["detail"] = f"{info.get('detail', '')}; dropped at {now_iso()} (kept {settings.restore.keep_renamed_hours} h)"
        else:  # gone already, or its name taken by another database, which is not ours to drop
            info["detail"] = f"{info.get('detail', '')}; no longer on the server at {now_iso()}, when it was due"
        facts["aside_dropped"] = True
        jobs.write_json_atomic(jobs.state_path(jobs.jobs_dir(settings), data["id"]),
                               {k: v for k, v in data.items() if k != "alive"})
        dropped.append(aside)
    return dropped
