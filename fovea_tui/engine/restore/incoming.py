"""The restore's new database, created empty while pre-flight runs.

CREATE DATABASE copies the template: a fifth of a second here, as long as the runbook's
`createdb`, and in a rename-aside restore it was the one server step left between the stop
and the load. Created ahead (with the owner, encoding and locale of the database it
replaces), step 6 only renames: the current database aside and this one into its name, in one
transaction. It stays empty until then: the load starts only after the rename.

The job records the name before the CREATE and the OID after it; only a database with both is
ever dropped or renamed in (one that took the name is a stranger). Whatever ends a run before
the rename (a refusal, a cancel, a failure, a rollback) drops it; a runner killed first leaves
it to the job's next run, which drops it. Without it (the CREATE failed, or the job is resumed
after pre-flight), step 6 creates the database itself, as it always did.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

from fovea_tui.errors import FoveaError


def name_for(database: str, when: datetime, job_id: str) -> str:
    """`<database>_restore_new_<UTC stamp>_<the job id's own suffix>`, cut to PostgreSQL's 63 bytes."""
    suffix = f"_restore_new_{when.astimezone(UTC):%Y%m%dT%H%M%SZ}_{job_id.rsplit('-', 1)[-1]}"
    return database.encode()[: 63 - len(suffix)].decode("utf-8", "ignore") + suffix


def begin(ctx) -> Future:
    """Start creating the new database beside pre-flight; `settle` waits for it. An earlier
    run's (this job resumed) is dropped first: a new one is made, never one of unknown state."""
    if ctx.facts.get("incoming"):
        discard(ctx)
    name = name_for(ctx.params.get("database") or "fovea", datetime.now(UTC), ctx.handle.id)
    ctx.facts["incoming"], ctx.facts["incoming_oid"] = name, None
    ctx.save()  # before the CREATE: a runner killed during it leaves a name the next run looks for
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="incoming")
    try:  # the database (and in docker mode the stack) is opened in the thread, beside pre-flight's
        return pool.submit(lambda: ctx.db.create_like(name, ctx.db_name))
    finally:
        pool.shutdown(wait=False)


def settle(ctx, future: Future) -> None:
    """Wait for the CREATE begun by `begin`; record its OID. When it failed (the current
    database missing, say), step 6 creates one itself; the name stays recorded without an
    OID, so the run's end still drops a database of that name that holds nothing."""
    try:
        ctx.facts["incoming_oid"] = future.result()
    except FoveaError as exc:
        ctx.output(f"the new database is created in step 6, not during pre-flight: {exc}")
    ctx.save()


def ready(ctx) -> tuple[str, int] | None:
    """(name, OID) of the new database created ahead, for step 6's rename; None without one."""
    name, oid = ctx.facts.get("incoming"), ctx.facts.get("incoming_oid")
    return (name, oid) if name and oid is not None else None


def discard(ctx) -> None:
    """Drop the new database created ahead while it is still under its own name (not renamed
    into place) and is the one this job created. A runner killed during the CREATE never
    learnt the OID: a database of that name is then dropped only if it holds nothing, else kept
    and said."""
    name, oid = ctx.facts.get("incoming"), ctx.facts.get("incoming_oid")
    if not name:
        return  # the usual end: renamed into place, or never begun (the server is not asked)
    db = ctx.db
    if oid is None:
        oid = db.database_oid(name)
        if oid is not None and not db.is_empty(name):
            ctx.output(f"warning: database {name} has this restore's name for the database it creates ahead, "
                       "but holds tables: it is not this restore's, and is kept")
            oid = None
    if oid is not None and db.drop_database_if(name, oid):
        ctx.output(f"dropped database {name}: created empty ahead of the rename, not used")
    ctx.facts.pop("incoming", None)
    ctx.facts.pop("incoming_oid", None)
    ctx.save()
