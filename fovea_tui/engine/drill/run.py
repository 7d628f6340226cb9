"""The disaster-recovery drill: prove the newest backup restores, and record when that was.

The runbook asks for a quarterly drill because it is "the only way to catch backup gaps
before you need them". `run_drill` does the part a machine can do, on this host, without
touching the live database or stopping the stack:

1. pick the newest dump with a manifest off-site (local when no off-site store is
   configured), fetch it to a temp file and verify it (gzip, completion line, sha256);
2. restore it into a scratch database `fovea_drill_<UTC time>` on the same server
   (psql, one transaction, stop at the first error);
3. check: rows per table and migrations as the manifest says; the env copy of that
   backup exists off-site and holds SESSION_SECRET, DATABASE_URL and
   API_KEY_ENCRYPTION_KEY; every video the restored database references exists in the
   off-site video copy with the same size (listed, never downloaded): a restore of this
   dump could bring each back before the backend deletes its row;
4. measure the recovery time (start to a verified database, RTO) and the recovery point
   (the age of the backup, RPO);
5. drop the scratch database, whatever happened (failure, Ctrl-C), and drop leftovers of
   earlier drills older than a day before starting.

The result goes to `<state_dir>/drills/drill-<stamp>.json` and `.md` (checks, what each saw,
the runbook's manual checklist and the guide for the full drill on a separate host);
`status` and the dashboard read the newest one (`drill_status`), `metrics` too.

This module runs the drill; `choose` picks the dump, `checks` holds the checks, `result` the
result, `report` the report files and the guide. Never imports textual: the CLI and the
TUI's Drill screen both call `run_drill`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.backups import encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.drill.checks import check_env_copy, check_migrations, check_rows, check_videos
from fovea_tui.engine.drill.choose import Chosen, choose_dump
from fovea_tui.engine.drill.report import guide_steps, latest_report, write_reports
from fovea_tui.engine.drill.result import Check, DrillResult
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.database import open_database
from fovea_tui.engine.infra.files import identity, unchanged
from fovea_tui.engine.infra.locks import acquire, ensure_private_dir
from fovea_tui.engine.ops import monitor, notify
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle, no_progress
from fovea_tui.engine.restore.steps import stream_dump
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import Cancelled, ConfigError, FoveaError, SafetyRefusal
from fovea_tui.formatting import human_duration, plural

SCRATCH_PREFIX = "fovea_drill_"
SCRATCH_FORMAT = "%Y%m%d_%H%M%S"  # UTC; lower case and digits, so no quoting surprises
LEFTOVER_AGE = timedelta(days=1)
LOCK_NAME = "drill"


def scratch_name(now: datetime) -> str:
    return SCRATCH_PREFIX + now.astimezone(UTC).strftime(SCRATCH_FORMAT)


def scratch_time(name: str) -> datetime | None:
    """The UTC time in a scratch database's name; None for a name that is not ours."""
    if not name.startswith(SCRATCH_PREFIX):
        return None
    try:
        return datetime.strptime(name[len(SCRATCH_PREFIX):], SCRATCH_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def drop_leftovers(db, now: datetime, older_than: timedelta = LEFTOVER_AGE) -> list[str]:
    """Drop `fovea_drill_*` databases an interrupted drill left behind, older than a day
    (a younger one may belong to a drill running right now on another terminal)."""
    dropped = []
    for name in db.databases():
        when = scratch_time(name)
        if when is not None and now - when > older_than:
            db.drop_database(name)
            dropped.append(name)
    return dropped


class ScratchStreamContext:
    """What the restore's `stream_dump` needs of its context, for the scratch database."""

    def __init__(self, db, cancel: CancelToken, progress, name: str) -> None:
        self.db = db
        self.cancel = cancel
        self._progress = Throttle(progress, 0.1)
        self._name = name
        self.lines: list[str] = []
        self._t0 = time.monotonic()

    def progress(self, done: int, total: int | None, unit: str = "bytes") -> None:
        self._progress(ProgressEvent("restore", done, total, unit, current=self._name, started_at=self._t0),
                       force=total is not None and done >= total)

    def output(self, line: str) -> None:
        self.lines.append(line)


# --------------------------------------------------------------------------- the drill


def run_drill(settings: Settings, *, progress: Callable[[ProgressEvent], None] | None = None,
              cancel: CancelToken | None = None, on_check: Callable[[Check], None] | None = None,
              now: datetime | None = None, database=None, write_report: bool = True) -> DrillResult:
    """Run the drill; returns the result (`ok`, `checks`, `rto_s`...) and writes the report.

    Raises ConfigError (exit 2) for a bad configuration, SafetyRefusal (exit 3) when there
    is no dump to drill or another drill holds the lock, Cancelled when cancelled (the
    scratch database is dropped first). Everything else is a failed check (exit 1).
    """
    cancel = cancel or CancelToken()
    progress = progress or no_progress
    on_check = on_check or (lambda c: None)
    started = now or datetime.now(UTC)
    t0 = time.monotonic()
    # The dead-man's switch (monitor.drill_url, else ping_url) is pinged from here, so a drill
    # run from the TUI counts as much as one from cron; only once the lock is ours, so a drill
    # refused because another one runs does not mark the check failed.
    with acquire(settings, LOCK_NAME, purpose="restore drill"), monitor.Watch.for_job(settings, "drill") as watch:
        try:
            result = _Drill(settings, started, t0, progress, cancel, on_check).run(database)
        except Cancelled as exc:
            audit.record(settings, "drill", "cancelled", {"reason": str(exc)})
            raise
        except SafetyRefusal as exc:
            audit.record(settings, "drill", "refused", {"reason": str(exc)})
            raise
        result.finished_at = started + timedelta(seconds=time.monotonic() - t0)
        try:
            result.guide = guide_steps(settings, result.dump_key or result.dump, result.env_key)
        except FoveaError:
            result.guide = []
        if write_report:
            write_reports(settings, result)
        audit.record(settings, "drill", "ok" if result.ok else "failed", {
            "dump": result.dump, "rto_s": result.rto_s, "rpo_s": result.rpo_s, "failed": result.failed,
            "report": str(result.report_json) if result.report_json else None})
        watch.finish(result.exit_code, f"drill of {result.dump}: "
                     + ("passed" if result.ok else "FAILED: " + ", ".join(result.failed))
                     + f"; RTO {human_duration(result.rto_s)}")
    result.monitor = watch.as_list()
    if not result.ok:
        notify.send_alerts(settings, [notify.Alert(
            "critical", "drill:critical", f"restore drill of {result.dump} failed: {', '.join(result.failed)}",
            notify.NEXT_STEP["drill"])])
    return result


#: Errors that end the drill instead of failing one check.
_FATAL = (Cancelled, ConfigError)


class _Drill:
    """One drill run: each phase lands its checks in `result` as it goes."""

    def __init__(self, settings: Settings, started: datetime, t0: float, progress, cancel: CancelToken,
                 on_check: Callable[[Check], None]) -> None:
        self.settings = settings
        self.started = started
        self.t0 = t0
        self.progress = progress
        self.cancel = cancel
        self.on_check = on_check
        self.result: DrillResult
        self.created = False
        self.seen: tuple[int, ...] = ()  # the verified dump's identity: the one loaded must be it

    def phase(self, name: str, message: str) -> None:
        self.progress(ProgressEvent(name, message=message, started_at=self.t0))

    def land(self, check: Check) -> Check:
        self.result.checks.append(check)
        self.on_check(check)
        return check

    def skip(self, name: str, why: str) -> None:
        self.land(Check(name, False, why, status="skipped"))

    def run(self, database) -> DrillResult:
        settings, started = self.settings, self.started
        self.phase("prepare", "choosing the newest dump")
        chosen = choose_dump(settings)
        result = self.result = _new_result(settings, chosen, started)

        # The env copy needs no database: check it first, and whatever happens later.
        try:
            env_check, env_copy = check_env_copy(settings, chosen)
        except FoveaError as exc:
            env_check, env_copy = Check("env_copy", False, f"cannot read the env copy: {exc}"), None
        storage = _storage_path(settings, env_copy)

        db = database or open_database(settings)
        scratch = scratch_name(started)
        result.scratch_database = scratch
        self._drop_leftovers(db)
        try:
            with tempfile.TemporaryDirectory(dir=ensure_private_dir(settings.state_dir), prefix="drill-") as tmp:
                path, dump_ok = self._dump(chosen, Path(tmp))
                self.cancel.check()
                if dump_ok:
                    assert path is not None  # a dump that verified was fetched
                    self._restore(db, chosen, path, scratch)
                else:
                    self.skip("restore", "not run: the dump did not verify")
                restored = result.passed("restore")
                self.cancel.check()
                self._rows_and_migrations(db, scratch, chosen, restored)
                self.cancel.check()
                self.land(env_check)
                self._videos(db, scratch, storage, restored)
        finally:
            if self.created:
                _cleanup(db, scratch, result, self.land if not self.cancel.cancelled else result.checks.append)
        return result

    def _drop_leftovers(self, db) -> None:
        try:
            dropped = drop_leftovers(db, self.started)
            if dropped:
                self.result.warnings.append("dropped leftover scratch databases of earlier drills: "
                                            + ", ".join(dropped))
        except _FATAL:
            raise
        except FoveaError as exc:
            self.result.warnings.append(f"could not look for leftover scratch databases: {exc}")

    def _dump(self, chosen: Chosen, tmp: Path) -> tuple[Path | None, bool]:
        """1. The dump, fetched and verified."""
        settings = self.settings
        c0 = time.monotonic()
        path = None
        try:
            path = fetch_chosen(settings, chosen, tmp, self.progress, self.cancel)
            self.phase("verify", f"verifying {chosen.name}")
            self.seen = identity(path)
            verified = verify_dump(path, chosen.manifest, use_manifest_beside=False, cancel=self.cancel,
                                   progress=self.progress)
            unchanged(path, self.seen, "it was verified")
            where = f"fetched {chosen.dump_key} from {settings.backups.offsite}" if chosen.source == "offsite" \
                else f"local {path}"
            if chosen.dump_key and chosen.dump_key.endswith(encryption.AGE_SUFFIX):
                where += ", decrypted with encryption.identity_file"
            if verified.ok:
                dump_check = Check("dump", True, f"{chosen.name} ({where}): whole gzip stream, completion line, "
                                   "size and sha256 as in the manifest", duration_s=time.monotonic() - c0)
            else:
                dump_check = Check("dump", False, f"{chosen.name} ({where}) is corrupt: "
                                   + "; ".join(verified.reasons), duration_s=time.monotonic() - c0)
        except _FATAL:
            raise
        except FoveaError as exc:
            dump_check = Check("dump", False, f"cannot fetch {chosen.name}: {exc}")
        self.land(dump_check)
        return path, dump_check.ok

    def _restore(self, db, chosen: Chosen, path: Path, scratch: str) -> None:
        """2. The restore into a scratch database (`created` once it exists: dropped at the end)."""
        c0 = time.monotonic()
        self.phase("restore", f"creating scratch database {scratch}")
        try:
            owner = self.settings.database.user if self.settings.database.mode == "docker" else db.user
            db.create_database(scratch, owner=owner or None)
            self.created = True

            stream_dump(ScratchStreamContext(db, self.cancel, self.progress, chosen.name), path, scratch)
            unchanged(path, self.seen, "it was verified")  # the drill proves the verified bytes restore
            self.land(Check("restore", True, f"{chosen.name} restored into {scratch} on "
                            f"{db.describe()} (one transaction; the live database untouched)",
                            duration_s=time.monotonic() - c0))
        except _FATAL:
            raise
        except FoveaError as exc:
            self.land(Check("restore", False, f"restore into {scratch} failed: {exc}",
                            duration_s=time.monotonic() - c0))

    def _rows_and_migrations(self, db, scratch: str, chosen: Chosen, restored: bool) -> None:
        """3. Rows and migrations: a verified database (the recovery time ends here)."""
        if not restored:
            self.skip("rows", "not run: nothing restored")
            self.skip("migrations", "not run: nothing restored")
            return
        self.phase("check", "counting rows in the scratch database")
        for fn in (check_rows, check_migrations):
            try:
                self.land(fn(db, scratch, chosen.manifest))
            except _FATAL:
                raise
            except FoveaError as exc:
                self.land(Check(fn.__name__.removeprefix("check_"), False, str(exc)))
        if self.result.passed("rows") and self.result.passed("migrations"):
            self.result.rto_s = time.monotonic() - self.t0

    def _videos(self, db, scratch: str, storage: str, restored: bool) -> None:
        """4. Every video the restored database references, in the off-site video copy."""
        settings = self.settings
        if restored:
            self.phase("videos", f"listing {settings.volume.target or 'the volume copy'}")
            try:
                self.land(check_videos(settings, db, scratch, storage, self.cancel, self.progress))
            except _FATAL:
                raise
            except FoveaError as exc:
                self.land(Check("videos", False, f"cannot check the volume copy: {exc}"))
        else:
            self.skip("videos", "not run: nothing restored to read the videos table from")


def _new_result(settings: Settings, chosen: Chosen, started: datetime) -> DrillResult:
    result = DrillResult(dump=chosen.name, source=chosen.source, started_at=started,
                         offsite=settings.backups.offsite or None, volume_target=settings.volume.target or None,
                         dump_key=chosen.dump_key, env_key=chosen.env_key)
    parsed = mf.parse_dump_name(chosen.name)
    result.dump_time = chosen.manifest.created or (parsed.time if parsed else None)
    if result.dump_time is not None:
        result.rpo_s = (started - result.dump_time).total_seconds()
    if chosen.source == "local":
        result.warnings.append("no backups.offsite configured: the drill used the local copy; a lost host "
                               "takes the backups with it")
    return result


def _storage_path(settings: Settings, env_copy: EnvFile | None) -> str:
    """STORAGE_PATH of the backup's env copy, else of the install's env file, else /videos."""
    storage = (env_copy.get("STORAGE_PATH") if env_copy else "") or ""
    if not storage:
        try:
            storage = EnvFile.load(settings.install.env_file).get("STORAGE_PATH")
        except FoveaError:
            storage = ""
    return storage or "/videos"


def _cleanup(db, scratch: str, result: DrillResult, land) -> None:
    try:
        db.drop_database(scratch)
        gone = scratch not in db.databases()
        land(Check("cleanup", gone, f"scratch database {scratch} dropped" if gone
                   else f"scratch database {scratch} still exists after DROP DATABASE"))
    except FoveaError as exc:
        land(Check("cleanup", False, f"could not drop scratch database {scratch}: {exc} "
                   "(the next drill drops it once it is a day old)"))


def fetch_chosen(settings: Settings, chosen: Chosen, tmp: Path, progress, cancel: CancelToken) -> Path:
    """The chosen dump as a local file: itself when local, else fetched (and decrypted) into `tmp`."""
    if chosen.source == "local":
        assert chosen.local_path is not None  # choose sets it for every local pick
        return chosen.local_path
    dest = tmp / chosen.name
    t0 = time.monotonic()
    total = chosen.manifest.size

    def fetched(event: ProgressEvent) -> None:
        progress(ProgressEvent("fetch", event.done, event.total or total, "bytes", current=chosen.name,
                               started_at=t0))

    key = chosen.dump_key or chosen.name
    encryption.fetch(chosen.store, key, dest, identities=encryption.identities_for(settings, key),
                     record=encryption.file_record(chosen.manifest.as_dict(), key),
                     expected_sha256=chosen.manifest.sha256, progress=fetched, cancel=cancel)
    return dest


# --------------------------------------------------------------------------- status


def drill_status(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The `drill` section of status: the last drill's date and verdict, and alerts
    (never run, failed, older than `drill.interval_days`)."""
    now = now or datetime.now(UTC)
    interval = settings.drill.interval_days
    section: dict[str, Any] = {"ok": True, "last": None, "last_time": None, "age_s": None,
                               "interval_days": interval, "overdue": False, "due_at": None, "alerts": []}
    alerts = section["alerts"]
    data = latest_report(settings)
    if data is None:
        section.update(ok=False, overdue=bool(interval), summary="no restore drill on record",
                       error="no restore drill on record")
        alerts.append({"level": "warning", "subject": "drill",
                       "message": "no restore drill on record: run `fovea-tui drill`"})
        return section
    when_text = data.get("finished_at") or data.get("started_at")
    try:
        when = datetime.fromisoformat(str(when_text))
    except ValueError:
        when = None
    failed = [str(n) for n in data.get("failed") or [c.get("name") for c in data.get("checks", []) if not c.get("ok")]]
    last = {"time": when_text, "ok": bool(data.get("ok")), "dump": data.get("dump"), "rto_s": data.get("rto_s"),
            "rpo_s": data.get("rpo_s"), "failed": failed, "report": (data.get("report") or {}).get("json")}
    section["last"] = last
    section["last_time"] = when_text
    age = (now - when).total_seconds() if when else None
    section["age_s"] = round(age, 1) if age is not None else None
    verdict = "passed" if last["ok"] else "FAILED (" + ", ".join(failed) + ")"
    day = when.astimezone(UTC).strftime("%Y-%m-%d") if when else "?"
    summary = f"last drill {day}: {verdict}"
    if last["ok"] and isinstance(last["rto_s"], (int, float)):
        summary += f", RTO {human_duration(last['rto_s'])}"
    if interval and when is not None:
        due = when + timedelta(days=interval)
        section["due_at"] = due.isoformat()
        section["overdue"] = now > due
    section["summary"] = summary
    if not last["ok"]:
        alerts.append({"level": "critical", "subject": "drill",
                       "message": f"last restore drill ({day}) failed: {', '.join(failed)}"})
    if section["overdue"]:
        alerts.append({"level": "warning", "subject": "drill",
                       "message": f"last restore drill was {plural(int((age or 0) // 86400), 'day')} ago "
                                  f"(drill.interval_days = {interval}): run `fovea-tui drill`"})
    if alerts:
        section["ok"] = False
        section["error"] = summary + ("; overdue" if section["overdue"] else "")
    return section
