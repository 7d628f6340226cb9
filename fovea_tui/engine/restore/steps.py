"""The restore as a list of steps, each with `run`, `check` and `undo`.

`run(ctx)` does the work and returns a one-line detail (or raises `Skip(detail)`);
`check(ctx)` confirms what `run` promised (raises when it does not hold); `undo(ctx)` puts
back what `run` changed and returns a detail. Rollback is walking back through the steps
that ran, newest first, calling `undo`. What a step learns that later steps (or a resumed
runner) need goes into `ctx.facts`, which is saved in the job's state file.
"""

from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from pathlib import Path

from fovea_tui.engine.backups import encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.inventory import load_inventory
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.infra.files import unchanged, write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.engine.infra.streams import condense
from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.engine.restore import incoming
from fovea_tui.engine.restore.loader import load_dump
from fovea_tui.engine.restore.preflight import run_preflight
from fovea_tui.engine.restore.verify import expected_rows, row_lines, run_verification
from fovea_tui.errors import Cancelled, ConfigError, FoveaError, OperationFailed, SafetyRefusal
from fovea_tui.formatting import plural


class Skip(Exception):
    """The step has nothing to do here; the detail says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CopyGone(OperationFailed):
    """The database a restore renamed aside is no longer on the server."""


class PreflightFailed(FoveaError):
    """A pre-flight check failed: nothing was changed."""

    def __init__(self, message: str, *, refused: bool) -> None:
        super().__init__(message)
        self.exit_code = 3 if refused else 1


class Step(ABC):
    name = ""
    title = ""
    #: On resume after a crash inside this step, start again from this step (its own name
    #: when unset): re-running a restore needs a freshly created database first.
    rerun_from: str | None = None
    #: Steps from here on change the install: a failure after one of them is rolled back.
    changes_install = False

    @abstractmethod
    def run(self, ctx) -> str:
        """Do the step; a one-line detail of what was done."""

    def check(self, ctx) -> None:  # noqa: B027  (a step with nothing to check keeps this default)
        """Raise OperationFailed when what `run` promised does not hold."""

    def undo(self, ctx) -> str | None:
        """Put back what `run` changed; None when there is nothing to put back."""
        return None

    def describe(self) -> dict:
        return {"name": self.name, "title": self.title}


# --------------------------------------------------------------------------- 1. choose


class ChooseDump(Step):
    name, title = "choose", "Choose the dump"

    def run(self, ctx) -> str:
        wanted = ctx.params["dump"]
        path = _local_dump(ctx, wanted)
        fetched = False
        if path is None:
            path = _fetch_offsite(ctx, wanted)
            fetched = True
        if mf.parse_dump_name(path.name) is None:
            raise SafetyRefusal(f"{path.name} is not named like a fovea dump (fovea-YYYYMMDDTHHMMSSZ.sql.gz)")
        ctx.facts["dump_path"] = str(path)
        ctx.facts["dump"] = path.name
        try:
            manifest = mf.read_for(path)
        except mf.ManifestError as exc:
            raise SafetyRefusal(f"the manifest beside {path.name} cannot be trusted: {exc.message}") from None
        ctx.facts["manifest"] = manifest.as_dict() if manifest else None
        where = "fetched from off-site into " + str(path.parent) if fetched else f"local: {path}"
        return f"{path.name} ({where}{'' if manifest else '; no manifest'})"

    def check(self, ctx) -> None:
        if not ctx.dump_path.is_file():
            raise OperationFailed(f"{ctx.dump_path} is gone")


def _local_dump(ctx, wanted: str) -> Path | None:
    candidate = Path(wanted)
    beside = ctx.settings.backups_dir / candidate.name
    for path in (candidate, beside):
        if path.is_symlink() and path.parent.resolve() == ctx.settings.backups_dir.resolve():
            # the inventory never counts it, so restore never takes it for the dump it names
            raise SafetyRefusal(f"{path.name} in {path.parent} is a symlink, not a regular file: "
                                "dumps are regular files")
    if candidate.is_file():
        return candidate.resolve()
    if beside.is_file():
        return beside
    return None


def _fetch_offsite(ctx, wanted: str) -> Path:
    settings = ctx.settings
    if not settings.backups.offsite:
        raise SafetyRefusal(f"no dump {wanted!r}: not a file, not in {settings.backups_dir}, and no off-site store")
    inventory = load_inventory(settings)
    if inventory.errors:
        raise OperationFailed("the off-site store did not answer: " + "; ".join(inventory.errors))
    entry = inventory.find(wanted)
    if entry is None or entry.offsite is None:
        raise SafetyRefusal(f"no dump {wanted!r} locally in {settings.backups_dir} nor off-site at {settings.backups.offsite}")
    store = inventory.store
    assert store is not None  # an off-site entry was listed from this store
    directory = ensure_private_dir(settings.backups_dir)
    dest = directory / entry.name
    expected = None
    raw = None
    if "offsite" in entry.manifests:
        raw = store.read_bytes(entry.manifests["offsite"])
        manifest = mf.parse(raw, source=f"off-site manifest of {entry.name}")
        expected = manifest.sha256
    total = entry.offsite.size

    def progress(event: ProgressEvent) -> None:
        ctx.progress(event.done, event.total or total)

    ctx.output(f"fetching {entry.offsite.key} from {settings.backups.offsite}")
    identities = encryption.identities_for(settings, entry.offsite.key)
    data = manifest.as_dict() if raw is not None else None
    encryption.fetch(store, entry.offsite.key, dest, identities=identities, expected_sha256=expected,
                     record=encryption.file_record(data, entry.offsite.key), progress=progress, cancel=ctx.cancel)
    if raw is not None:  # only beside a dump that arrived whole: never an orphan manifest
        write_atomic(mf.manifest_path(dest), raw)
    if "offsite" in entry.envs:
        env_key = entry.envs["offsite"]
        try:
            encryption.fetch(store, env_key, mf.env_copy_path(dest), identities=identities,
                             record=encryption.file_record(data, env_key), cancel=ctx.cancel,
                             expected_sha256=(manifest.env_file or {}).get("sha256") if raw is not None else None)
            os.chmod(mf.env_copy_path(dest), 0o600)
        except FoveaError as exc:
            ctx.output(f"env copy not fetched: {exc}")
    return dest


# --------------------------------------------------------------------------- 2. pre-flight


class Preflight(Step):
    name, title = "preflight", "Pre-flight checks"

    def run(self, ctx) -> str:
        ctx.facts["preflight"] = []

        def landed(check) -> None:
            ctx.facts["preflight"].append(check.as_dict())
            ctx.output(f"{'ok  ' if check.ok else 'FAIL' if check.fatal else 'warn'} {check.name}: {check.detail}")

        ahead = incoming.begin(ctx)  # the new database, created empty beside the checks
        try:
            checks = run_preflight(ctx, landed)
        finally:
            incoming.settle(ctx, ahead)
        failed = [c for c in checks if not c.ok and c.fatal]
        if failed:
            refused = any(c.refuse for c in failed)
            raise PreflightFailed("pre-flight failed: "  # the runner says nothing was changed
                                  + "; ".join(f"{c.name}: {c.detail}" for c in failed), refused=refused)
        warn = [c for c in checks if not c.ok]
        return f"{plural(len(checks), 'check')} passed" + (f", {plural(len(warn), 'warning')}" if warn else "")


# --------------------------------------------------------------------------- 3. safety dump


class SafetyDump(Step):
    """The way back. With room on the server for both databases (pre-flight's `room`), the
    current database is renamed aside in step 6 and dumped from there after the restore, so
    nothing is spent here; without room, it is dumped now, as the runbook does."""

    name, title = "safety_dump", "Safety dump of the current database"

    def run(self, ctx) -> str:
        existing = ctx.facts.get("safety_dump")
        if existing and Path(existing).is_file():
            return f"{Path(existing).name} (taken earlier in this job)"
        if ctx.facts.get("safety_mode") == "rename":
            return rename_words(ctx) + " (decided earlier in this job)"
        room = next((c for c in ctx.facts.get("preflight") or [] if c.get("name") == "room"), None)
        if room is not None and room.get("data", {}).get("rename"):  # pre-flight saw the database
            ctx.facts["safety_mode"] = "rename"
            ctx.facts["original_oid"] = room["data"].get("oid")  # which database is the one kept aside
            return rename_words(ctx)
        if ctx.db_name not in ctx.db.databases():
            ctx.facts["safety_dump"] = None
            raise Skip(f"database {ctx.db_name} does not exist yet: nothing to save")
        ctx.facts["safety_mode"] = "dump"
        incoming.discard(ctx)  # a drop and create, as the runbook's: the database created ahead is not used
        why = f"dump ({room['detail']}): " if room is not None else "dump: "

        def progress(event: ProgressEvent) -> None:
            ctx.progress(event.done, event.total)

        result = run_backup(ctx.settings, progress=progress, cancel=ctx.cancel, offsite=False,
                            kind="pre-restore", database=ctx.db, env=ctx.env)
        ctx.facts["safety_dump"] = str(result.path)
        ctx.facts["safety_tables"] = dict(result.tables)
        return f"{why}{result.name}: {result.rows} rows in {len(result.tables)} tables, {result.size} bytes"

    def check(self, ctx) -> None:
        path = ctx.facts.get("safety_dump")
        if path and not Path(path).is_file():
            raise OperationFailed(f"safety dump {path} is missing")


def kept_aside(facts: dict) -> str | None:
    """The name the database as it was is kept under, while it is (renamed aside, not dropped
    after its safety dump, not lost)."""
    if facts.get("safety_mode") != "rename" or facts.get("aside_dropped") or facts.get("aside_lost"):
        return None
    return facts.get("renamed_to")


def is_the_copy(db, aside: str, facts: dict) -> bool:
    """Is `aside` on the server, and the database this restore renamed (by its OID, when the
    job recorded it), not another that took the name?"""
    oid = db.database_oid(aside)
    return oid is not None and facts.get("original_oid") in (None, oid)


def rename_words(ctx) -> str:
    return (f"rename aside: database {ctx.db_name} is kept under a new name once the services are stopped "
            "(a way back in seconds); its safety dump is written from it after the restore")


def aside_name(database: str, when: datetime, job_id: str) -> str:
    """`<database>_pre_restore_<UTC stamp>_<the job id's own suffix>`, the database part cut to
    fit PostgreSQL's 63 bytes. The job's part keeps two restores in one second apart (the first
    may keep its copy for `restore.keep_renamed_hours`), and names the job the copy belongs to."""
    suffix = f"_pre_restore_{when.astimezone(UTC):%Y%m%dT%H%M%SZ}_{job_id.rsplit('-', 1)[-1]}"
    return database.encode()[: 63 - len(suffix)].decode("utf-8", "ignore") + suffix


def rename_aside(ctx) -> str:
    """Step 6 with a rename: the current database goes aside under `aside_name`, a new empty one
    takes its name. The job records the new name before the rename, so a runner killed at any
    point leaves the old database under one of the two names, and the next run finds which on
    the server."""
    db, name = ctx.db, ctx.db_name
    aside = ctx.facts.get("renamed_to")
    if not aside:  # the first run: pre-flight saw the database a moment ago; one round trip
        aside = aside_name(name, datetime.now(UTC), ctx.handle.id)
        ctx.facts.update(renamed_to=aside, database_dropped=True)
        ctx.save()  # before the rename: a resumed or rolling-back runner then looks for both names
        ctx.output(f"renaming database {name} to {aside} (its sessions ended), then creating database {name} "
                   f"with its owner, encoding and locale")
        ahead = incoming.ready(ctx)
        how = _rename(ctx, name, aside, first=True, ahead=ahead)
        ctx.facts.pop("incoming", None)  # renamed into place (or, gone, replaced by a CREATE)
        ctx.facts.pop("incoming_oid", None)
        if how == "moved_in" and ahead is not None:
            return f"renamed {name} to {aside}, and {ahead[0]} (created empty during pre-flight) to {name}"
        return f"renamed {name} to {aside}; database {name} created empty"
    present = set(db.databases())
    if is_the_copy(db, aside, ctx.facts):  # the copy, not a namesake
        if name in present:  # the new database of an earlier run, empty or partly restored
            ctx.output(f"dropping database {name}: the one created earlier in this job")
            db.drop_database(name)
        ctx.output(f"creating database {name} with the owner, encoding and locale of {aside}")
        db.psql(db.create_like_script(name, aside), database="postgres")
        how = f"{name} was renamed to {aside} earlier in this job"
    elif name not in present:
        raise OperationFailed(f"database {name} is not on the server, nor {aside}: nothing to rename aside")
    else:  # a resumed run whose first stopped before the rename
        ctx.output(f"renaming database {name} to {aside} (its sessions ended), then creating database {name} "
                   f"with its owner, encoding and locale")
        _rename(ctx, name, aside, first=False, ahead=None)
        how = f"renamed {name} to {aside}"
    return f"{how}; database {name} created empty"


def _rename(ctx, name: str, aside: str, *, first: bool, ahead: tuple[str, int] | None) -> str:
    """The rename and the new database (`ahead`, the one created during pre-flight, renamed in
    the same transaction; else a CREATE), one round trip, of the database pre-flight checked
    only: "moved_in" or "then" (rename_database). When the first try fails before anything went
    aside, the new database never took the name either: the job says the database is
    untouched. A resumed try that fails leaves that to the rollback, which asks the server (an
    earlier run may have renamed and created before the copy went missing)."""
    db = ctx.db
    try:
        how, named = db.rename_database(name, aside, then=db.create_like_script(name, aside),
                                        oid=ctx.facts.get("original_oid"), incoming=ahead)
        ctx.__dict__["_prepared"] = named  # for the step's check: the server's answer, asked after all that
        return how
    except FoveaError:
        if first:
            try:
                renamed = is_the_copy(db, aside, ctx.facts)
            except FoveaError:
                renamed = True  # cannot tell: the rollback asks the server again
            if not renamed:
                ctx.facts["database_dropped"] = False
                ctx.save()
        raise


def rename_back(ctx) -> str:
    """Rollback with a rename: drop the new database, give the old one its name back. Seconds,
    whatever the size, and one round trip (the server decides from the names it has, so a
    rerun after a crash half-way finds where things stand)."""
    db, name, aside = ctx.db, ctx.db_name, ctx.facts["renamed_to"]
    if (ctx.data.get("rollback") or {}).get("after_success"):
        present = set(db.databases())
        if aside in present and name in present:
            _dump_live_database(ctx)
    ctx.output(f"renaming {aside} back to {name}, the restored {name} dropped first")
    outcome = db.put_back(aside, name, oid=ctx.facts.get("original_oid"))
    if outcome == "untouched":
        return _aside_gone(ctx, name, aside)
    if outcome != "renamed":
        raise OperationFailed(f"neither database {name} nor {aside} is on the server: roll back from a dump by hand")
    ctx.facts["safety_restored"] = True
    ctx.save()
    saved = f"; the live database was saved first as {Path(ctx.facts['live_dump']).name}" \
        if ctx.facts.get("live_dump") else ""
    return f"database {name} put back: {aside} renamed back to {name}, the restored one dropped{saved}"


def _aside_gone(ctx, name: str, aside: str) -> str:
    """No `aside` on the server, and a database `name`: which one it is decides. The database
    as it was (the runner stopped before renaming it, or someone put it back by hand) is what
    a rollback wants; any other means the copy was dropped or renamed by someone else, and
    nothing here can bring it back."""
    original = ctx.facts.get("original_oid")
    prepared = any(r["name"] == "prepare" and r["status"] == "ok" for r in ctx.data["steps"])
    if original is None:  # a job from before the identity was recorded
        if prepared:
            raise OperationFailed(f"database {aside} is no longer on the server, and whether {name} is the database "
                                  "as it was cannot be told (this job did not record it): check it before using it")
        ctx.facts["database_dropped"] = False
        return f"database {name} was never renamed: untouched"
    if ctx.db.database_oid(name) == original:
        ctx.facts.pop("aside_lost", None)
        if not prepared:  # the runner stopped between recording the name and renaming
            ctx.facts["database_dropped"] = False
            return f"database {name} was never renamed: untouched"
        ctx.facts["safety_restored"] = True
        ctx.save()
        return f"database {name} is the database as it was: it was put back under its name by hand"
    ctx.facts["aside_lost"] = True
    ctx.save()
    which = "the one this restore created" if prepared else \
        "not the database as it was (the one this restore created before its runner stopped, or another put there since)"
    raise CopyGone(f"database {aside}, the database as it was before the restore, is no longer on the server "
                   f"(dropped or renamed by someone else), and {name} is {which}: there is nothing to rename "
                   "back. Restore a dump from before the restore (`fovea-tui list`), or bring that database "
                   f"back under the name {aside} and retry with `fovea-tui restore --rollback {ctx.handle.id}`")


# --------------------------------------------------------------------------- 4. confirm


class Confirm(Step):
    name, title = "confirm", "Confirm: type the database name"

    def run(self, ctx) -> str:
        if ctx.params.get("confirmed"):
            return "confirmed in advance (--yes)"
        expected = ctx.db_name
        timeout = float(ctx.params.get("confirm_timeout_s", 1800))
        ctx.data["awaiting"] = "confirm"
        ctx.data["status"] = "waiting"
        ctx.save()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if ctx.cancel.wait(0.2):
                    raise Cancelled("the restore was cancelled at its confirmation")
                typed = ctx.handle.read_control("confirm")
                if typed is None:
                    continue
                if typed.strip() == expected:
                    return f"the operator typed {expected!r}"
                raise Cancelled(f"the typed name did not match {expected!r}")
            raise Cancelled(f"nobody confirmed within {int(timeout)} s")
        finally:
            ctx.data.pop("awaiting", None)
            ctx.data["status"] = "running"


# --------------------------------------------------------------------------- 5. stop


class StopStack(Step):
    name, title = "stop", "Stop the stack (all but the database)"
    changes_install = True

    def run(self, ctx) -> str:
        if ctx.stack is None:
            ctx.facts.setdefault("was_running", [])
            raise Skip("no compose stack managed (direct mode without Docker): nothing to stop")
        if "was_running" not in ctx.facts:  # a resumed runner must not forget what ran before
            ctx.facts["was_running"] = [s.name for s in ctx.stack.services()
                                        if s.running and s.name != ctx.db_service]
            ctx.facts["was_stopped"] = [s.name for s in ctx.stack.services() if not s.running]
            ctx.save()
        names = ctx.facts["was_running"]
        if not names:
            raise Skip("no service but the database was running")
        clients = database_clients(ctx, names)
        later = [n for n in names if n not in clients]
        ctx.output("stopping " + ", ".join(reversed(names)) + " (in parallel"
                   + (f"; the restore goes on once {', '.join(clients)} stopped)" if later and clients else ")"))
        stop_services(ctx, names, wait_for=clients)
        detail = "stopped " + ", ".join(clients or names)
        if later and clients:
            detail += f"; {', '.join(later)} stopping in the background (they do not use the database)"
        return detail + " (they will be started again)"

    def check(self, ctx) -> None:
        if ctx.stack is None:
            return
        clients = database_clients(ctx, ctx.facts.get("was_running", []))
        still = [s.name for s in ctx.stack.services() if s.name in clients and s.running]
        if still:
            raise OperationFailed("still running after stop: " + ", ".join(still))

    def undo(self, ctx) -> str | None:
        names = ctx.facts.get("was_running") or []
        if ctx.stack is None or not names:
            return None
        ctx.output("starting again " + ", ".join(names))
        report = start_services(ctx, names, cancel=None)
        return "started again: " + ", ".join(names) + "".join(f"; {w}" for w in report.words())


def show_waits(ctx):
    """The on_wait callback of Stack.stop/start: the current step's countdowns ("backend:
    stopping, SIGKILL in 7 s") in the job state, where the CLI and the TUI draw them."""
    def shown(lines: list[str]) -> None:
        if ctx.current is None:
            return
        if lines:
            ctx.current["waiting"] = lines
        else:
            ctx.current.pop("waiting", None)
        ctx.save(throttle=0.5 if lines else 0.0)
    return shown


def stop_services(ctx, names: list[str], *, wait_for: list[str] | None = None) -> None:
    """Stop `names` in parallel, each with its grace period. With `wait_for` (the database
    clients), return once those are stopped: the others go on stopping in a thread of this
    runner, which `start_services` waits for, so a service that ignores SIGTERM (a frontend
    whose Node runs as PID 1: 10 s) spends its grace period beside the restore, not before it."""
    later = [n for n in names if wait_for and n not in wait_for]
    if later:
        stack, timeout = ctx.stack, ctx.settings.stack.stop_timeout_s
        failed: list[BaseException] = []

        def stop_later() -> None:
            try:
                stack.stop(later, default_timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - kept: start_services says it and stops them again
                failed.append(exc)

        thread = threading.Thread(target=stop_later, daemon=True, name="stop-in-background")
        thread.start()
        ctx.stopping = (thread, later, failed)
    now = [n for n in names if n not in later]
    if now:
        ctx.stack.stop(now, default_timeout=ctx.settings.stack.stop_timeout_s, on_wait=show_waits(ctx))


def finish_stopping(ctx, names: list[str]) -> None:
    """Before `names` start again: the background stop of this runner ended, and none of them
    still running (a runner killed while they stopped, or a stop that failed): a service
    started while its stop is still under way would be killed by that stop's SIGKILL."""
    stopping = ctx.stopping
    if stopping is not None:
        thread, later, failed = stopping
        if thread.is_alive():
            ctx.output(f"waiting for {', '.join(later)} to finish stopping (a stop grace period) before starting again")
        thread.join()
        ctx.stopping = None
        for exc in failed:
            ctx.output(f"warning: stopping {', '.join(later)} in the background failed: {exc}")
    still = [s.name for s in ctx.stack.services() if s.name in names and s.running]
    if still:
        ctx.output("still running, stopped first so that they start again with the restored database: "
                   + ", ".join(still))
        stop_services(ctx, still)


def database_clients(ctx, names: list[str]) -> list[str]:
    """The services of `names` that use the database: only they can fail a start."""
    stack = ctx.settings.stack
    return [n for n in names if n == stack.backend_service or n in stack.database_clients]


def start_services(ctx, names: list[str], *, cancel):
    """Start `names` as compose would; raises only for a database client that does not come up."""
    finish_stopping(ctx, names)
    return ctx.stack.start(names, must_run=database_clients(ctx, names), cancel=cancel, on_wait=show_waits(ctx))


# --------------------------------------------------------------------------- 6. prepare


def ensure_database_service(ctx) -> None:
    if ctx.stack is None:
        return
    try:
        svc = ctx.stack.service(ctx.db_service)
    except ConfigError:
        return  # no such service: the database is elsewhere, and its own checks say so
    if svc.ok:
        return  # up, and healthy or without a healthcheck: nothing to wait for
    if not svc.running:
        ctx.output(f"starting {ctx.db_service}")
        ctx.stack.start([ctx.db_service], timeout=float(ctx.params.get("health_timeout_s", 180)))
    ctx.stack.wait_healthy(ctx.db_service, timeout=float(ctx.params.get("health_timeout_s", 180)))


def recreate_database(ctx) -> None:
    db = ctx.db
    owner = ctx.settings.database.user if ctx.settings.database.mode == "docker" else db.user
    ctx.output(f"terminating other sessions on {db.name}")
    db.terminate_sessions(db.name)
    ctx.facts["database_dropped"] = True
    ctx.save()
    ctx.output(f"dropping database {db.name}")
    db.drop_database(db.name)
    ctx.output(f"creating database {db.name} owned by {owner}")
    db.create_database(db.name, owner=owner or None)


class PrepareDatabase(Step):
    name, title = "prepare", "Database up; a new, empty one in place"
    changes_install = True

    def run(self, ctx) -> str:
        ensure_database_service(ctx)
        if ctx.facts.get("safety_mode") == "rename":
            return rename_aside(ctx)
        recreate_database(ctx)
        how = "dropped and created empty" if ctx.facts.get("safety_mode") == "dump" else \
            "created empty (there was none before the restore)"
        return f"database {ctx.db_name} {how} (owner {ctx.settings.database.user if ctx.settings.database.mode == 'docker' else ctx.db.user})"

    def check(self, ctx) -> None:
        named = ctx.__dict__.pop("_prepared", None)  # asked in the rename's own round trip, after it
        if not (ctx.db_name in ctx.db.databases() if named is None else named):
            raise OperationFailed(f"database {ctx.db_name} does not exist after creating it")

    def undo(self, ctx) -> str | None:
        return restore_safety_dump(ctx)


# --------------------------------------------------------------------------- 7. restore


def stream_dump(ctx, path: Path, database: str, *, count: bool = False) -> dict[str, int] | None:
    """Load the gzip'd plain dump `path` into the fresh, empty `database` over several psql
    sessions (see `loader`); progress over the file's bytes; with `count`, the rows per table
    once it is loaded."""
    return load_dump(ctx, path, database, count=count)


def same_dump_as_verified(ctx, path: Path) -> None:
    """The dump is still the file pre-flight verified: one written or replaced since (a sync, a
    copy, a hand edit) is caught before the load and after it."""
    if ctx.facts.get("dump_identity") is not None:
        unchanged(path, ctx.facts["dump_identity"], "pre-flight verified it")


class RestoreDump(Step):
    name, title = "restore", "Restore the dump"
    rerun_from = "prepare"
    changes_install = True

    def run(self, ctx) -> str:
        path = ctx.dump_path
        t0 = time.monotonic()
        same_dump_as_verified(ctx, path)
        rows = stream_dump(ctx, path, ctx.db_name, count=True) or {}
        same_dump_as_verified(ctx, path)  # what was loaded is what pre-flight read
        ctx.facts["restored_rows"] = rows
        return f"{path.name} into {ctx.db_name}: {sum(rows.values())} rows in {len(rows)} tables " \
               f"in {time.monotonic() - t0:.1f} s"

    def check(self, ctx) -> None:
        """Rows per table as the dump holds them, compared now: before migrate, so nothing
        but the dump decides (a migration's changes are reported by step 10, never failed)."""
        rows = ctx.facts.get("restored_rows") or {}
        if not rows:
            raise OperationFailed(f"database {ctx.db_name} holds no tables after the restore")
        expected = expected_rows(ctx)
        differences = row_lines(expected, rows) if expected else []
        if differences:
            raise OperationFailed("the restored rows differ from the dump's: " + "; ".join(differences))

    def undo(self, ctx) -> str | None:
        return restore_safety_dump(ctx)


def _dump_live_database(ctx) -> None:
    """Before a finished restore is rolled back, its database has been live: save it as a
    safety dump first (once per rollback), so undoing the restore loses nothing."""
    if ctx.facts.get("live_dump") and Path(ctx.facts["live_dump"]).is_file():
        return
    ctx.output(f"saving database {ctx.db_name} as it is now, before rolling back")
    result = run_backup(ctx.settings, progress=lambda e: ctx.progress(e.done, e.total), cancel=ctx.cancel,
                        offsite=False, kind="pre-restore", database=ctx.db, env=ctx.env)
    ctx.facts["live_dump"] = str(result.path)
    ctx.save()
    ctx.output(f"saved as {result.name}: {result.rows} rows in {len(result.tables)} tables")


def restore_safety_dump(ctx) -> str | None:
    """Put the database back as it was before the restore (once per job, whoever asks first):
    the renamed copy renamed back, or, once that copy is gone, the safety dump restored."""
    if ctx.facts.get("safety_restored"):  # by the undo of a later step
        if kept_aside(ctx.facts):
            return f"database {ctx.db_name} already put back as it was ({ctx.facts.get('renamed_to')} renamed back)"
        return "database already restored from the safety dump"
    if not ctx.facts.get("database_dropped"):
        return None  # the database was never touched
    safety = ctx.facts.get("safety_dump")
    path = Path(safety) if safety is not None else None
    if ctx.facts.get("safety_mode") == "rename" and not ctx.facts.get("aside_dropped"):
        ensure_database_service(ctx)
        try:
            return rename_back(ctx)
        except CopyGone:
            if path is None or not path.is_file():
                raise
            # its safety dump was written and verified before it went: that is the database as it was
            ctx.output(f"{ctx.facts.get('renamed_to')} is gone: restoring its safety dump {path.name} instead")
    if path is not None and not path.is_file():
        raise OperationFailed(f"the safety dump {path} is gone: cannot roll back")
    ensure_database_service(ctx)
    if (ctx.data.get("rollback") or {}).get("after_success"):
        _dump_live_database(ctx)
    if path is None:
        ctx.db.drop_database(ctx.db_name)
        ctx.facts["safety_restored"] = True
        return f"database {ctx.db_name} dropped again: it did not exist before the restore"
    recreate_database(ctx)
    ctx.output(f"restoring the safety dump {path.name}")
    rows = stream_dump(ctx, path, ctx.db_name, count=True) or {}
    ctx.facts["safety_restored"] = True
    ctx.save()
    saved = f"; the live database was saved first as {Path(ctx.facts['live_dump']).name}" \
        if ctx.facts.get("live_dump") else ""
    return f"database {ctx.db_name} restored from the safety dump {path.name}: {sum(rows.values())} rows{saved}"


# --------------------------------------------------------------------------- 8. migrate


class Migrate(Step):
    name, title = "migrate", "Apply the backend's migrations"
    changes_install = True

    def run(self, ctx) -> str:
        settings = ctx.settings
        if ctx.params.get("skip_migrate"):
            raise Skip("--skip-migrate: migrations not applied")
        if ctx.stack is None:
            raise Skip("no Docker: run `npx prisma migrate deploy` in the backend yourself")
        command = list(settings.stack.migrate_command)
        bundled = ctx.facts.get("bundled_migrations")
        if bundled is not None and set(bundled) <= set(ctx.db.applied_migrations()):
            # As the runbook: migrate only a database behind the image. A one-off backend
            # container (node and prisma starting) is seconds the application stays down.
            ctx.facts["migrations_applied"] = []
            return (f"nothing to apply: the restored database has all {plural(len(bundled), 'migration')} "
                    f"bundled in the {settings.stack.backend_service} image (`{' '.join(command)}` not run)")
        ctx.output("$ " + " ".join(command) + f"  (one-off {settings.stack.backend_service} container)")
        code, out = ctx.stack.run_one_off(settings.stack.backend_service, command, cancel=ctx.cancel,
                                          on_output=ctx.output,
                                          timeout=float(ctx.params.get("migrate_timeout_s", 900)))
        if code != 0:
            raise OperationFailed(f"{' '.join(command)} exited with {code}: {condense(out)}")
        applied = [m for m in ctx.db.applied_migrations() if m in (ctx.facts.get("pending_migrations") or {})]
        ctx.facts["migrations_applied"] = applied
        return f"{' '.join(command)} succeeded" + (f"; applied {', '.join(applied)}" if applied else "; nothing pending")


# --------------------------------------------------------------------------- 9. videos


ACCEPT_CONTROL = "accept"   # the job control file the operator's typed acceptance arrives in


class Held(SafetyRefusal):
    """The restore stops before starting the services (status "held", nothing rolled back):
    the operator brings the missing files back and resumes, accepts the loss, or rolls back."""


def acceptance_phrase(count: int) -> str:
    """What the operator types to start the backend although `count` videos are missing."""
    return f"delete {count}"


class BringVideosBack(Step):
    """Every video the restored database references, present before a service that deletes
    the rows of missing files (stack.reconcile_services) starts; what `volume.target` holds of
    the missing ones is pulled first (only those, verified). Undo: nothing, it only adds files."""

    name, title = "videos", "Videos back before the backend starts"
    changes_install = True

    def run(self, ctx) -> str:
        from fovea_tui.engine.restore.videos import bring_back, missing_words

        found = bring_back(ctx)
        if found is None:
            raise Skip("the restored database has no videos table")
        ctx.facts["videos"] = found
        pulled = f"; pulled {found['pulled']} from {ctx.settings.volume.target}" if found["pulled"] else ""
        if not found["missing"]:
            return f"all {found['referenced']} referenced videos present in {found['storage']}{pulled}"
        starts = found["reconcilers"]
        words = missing_words(found)
        if not starts:
            found["accepted"] = "no reconciling service is started by this restore"
            ctx.output("warning: " + words)
            return (f"{words}{pulled}; no service in stack.reconcile_services is started by this restore: "
                    "bring the files back before starting the backend")
        how = _accepted(ctx, found)
        found["accepted"] = how
        ctx.output(f"accepted ({how}): {words}")
        return (f"{words}{pulled}; accepted ({how}): {', '.join(starts)} is expected to delete "
                f"{plural(found['missing'], 'video')} with {plural(found['annotations'], 'annotation')}, {plural(found['summaries'], 'summary')} "
                f"and {plural(found['claims'], 'claim')}")

    def undo(self, ctx) -> str | None:
        return None  # only files were added: a rollback leaves them, the old database may use them too


def _accepted(ctx, found: dict) -> str:
    """How the operator accepted the loss, or Held when they did not (in time)."""
    from fovea_tui.engine.restore.videos import missing_words

    if ctx.params.get("allow_missing_videos"):
        return "--allow-missing-videos"
    phrase = acceptance_phrase(found["missing"])
    held = Held(f"stopped before starting {', '.join(found['reconcilers'])}: {missing_words(found)}; "
                "nothing was deleted.",
                hint=f"bring the files back and `fovea-tui restore --resume {ctx.handle.id}`; or accept the loss "
                     f"with `fovea-tui restore --resume {ctx.handle.id} --allow-missing-videos`; or roll back with "
                     f"`fovea-tui restore --rollback {ctx.handle.id}`")
    if ctx.params.get("confirmed"):  # headless (--yes): nobody is there to type the acceptance
        raise held
    ctx.data["awaiting"] = "missing_videos"
    ctx.data["status"] = "waiting"
    ctx.save()
    deadline = time.monotonic() + float(ctx.params.get("confirm_timeout_s", 1800))
    try:
        while time.monotonic() < deadline:
            if ctx.cancel.wait(0.2):
                raise held
            typed = ctx.handle.read_control(ACCEPT_CONTROL)
            if typed is None:
                continue
            if typed.strip() == phrase:
                return f"the operator typed {phrase!r}"
            raise held
        raise held
    finally:
        ctx.data.pop("awaiting", None)
        ctx.data["status"] = "running"


# --------------------------------------------------------------------------- 10. start


class StartStack(Step):
    name, title = "start", "Start the services that were running"
    changes_install = True

    def run(self, ctx) -> str:
        names = ctx.facts.get("was_running") or []
        if ctx.stack is None or not names:
            raise Skip("no service to start" if ctx.stack is not None else "no compose stack managed")
        ctx.output("starting " + ", ".join(ctx.stack.start_order([s for s in ctx.stack.services() if s.name in names]))
                   + " (each once its depends_on conditions hold)")
        report = start_services(ctx, names, cancel=ctx.cancel)
        ctx.facts["still_starting"] = report.still_starting
        ctx.facts["services_not_up"] = report.not_up
        for line in report.words():
            ctx.output(line)
        kept = ctx.facts.get("was_stopped") or []
        slow = {s["service"] for s in report.still_starting + report.not_up}
        up = [n for n in names if n not in slow]
        return ("started: " + (", ".join(up) or "none") + "".join(f"; {w}" for w in report.words())
                + (f"; left stopped: {', '.join(kept)}" if kept else ""))

    def check(self, ctx) -> None:
        # The start waited for each database client's health (Docker's verdict, or its own test
        # passing when run by the start); now only an exit or Docker's "unhealthy" fails it.
        needed = database_clients(ctx, ctx.facts.get("was_running") or [])
        down = [s.name for s in ctx.stack.services() if s.name in needed and (not s.running or s.health == "unhealthy")]
        if down:
            raise OperationFailed("not running, or declared unhealthy by Docker: " + ", ".join(down))

    def undo(self, ctx) -> str | None:
        names = ctx.facts.get("was_running") or []
        if ctx.stack is None or not names:
            return None
        stop_services(ctx, names)
        return "stopped again for the rollback: " + ", ".join(names)


# --------------------------------------------------------------------------- 11. verify


class Verify(Step):
    name, title = "verify", "Verify the restored install"
    changes_install = True

    def run(self, ctx) -> str:
        result = run_verification(ctx)
        ctx.facts["verification"] = result
        failed = [c for c in result["checks"] if not c["ok"] and c["severity"] == "error"]
        warned = [c for c in result["checks"] if not c["ok"] and c["severity"] != "error"]
        if failed:
            raise OperationFailed("verification failed: " + "; ".join(f"{c['name']}: {c['detail']}" for c in failed))
        return f"{plural(len(result['checks']), 'check')} passed" + (
            f", {plural(len(warned), 'warning')}: " + "; ".join(f"{c['name']}: {c['detail']}" for c in warned) if warned else "")


STEPS: tuple[type[Step], ...] = (ChooseDump, Preflight, SafetyDump, Confirm, StopStack, PrepareDatabase,
                                 RestoreDump, Migrate, BringVideosBack, StartStack, Verify)


def build_steps() -> list[Step]:
    return [cls() for cls in STEPS]

