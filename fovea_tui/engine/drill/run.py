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
   off-site volume copy with the same size (listed, never downloaded); the volume copy
   is not older than the dump;
4. measure the recovery time (start to a verified database, RTO) and the recovery point
   (the age of the backup, RPO);
5. drop the scratch database, whatever happened (failure, Ctrl-C), and drop leftovers of
   earlier drills older than a day before starting.

The result goes to `<state_dir>/drills/drill-<stamp>.json` and `.md` (checks, what each saw,
the runbook's manual checklist and the guide for the full drill on a separate host);
`status` and the dashboard read the newest one (`drill_status`), `metrics` too.

Never imports textual: the CLI and the TUI's Drill screen both call `run_drill`.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.infra import audit
from fovea_tui.engine.backups import encryption, manifest as mf
from fovea_tui.engine.infra.locks import acquire, ensure_private_dir
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle, no_progress
from fovea_tui.envfile import CRITICAL_KEYS, EnvFile
from fovea_tui.errors import Cancelled, ConfigError, FoveaError, SafetyRefusal

DRILLS_DIR = "drills"            # under state_dir; engine.metrics reads *.json here
SCRATCH_PREFIX = "fovea_drill_"
SCRATCH_FORMAT = "%Y%m%d_%H%M%S"  # UTC; lower case and digits, so no quoting surprises
LEFTOVER_AGE = timedelta(days=1)
LOCK_NAME = "drill"

# The runbook's step 5, to tick when the full drill runs on a separate host.
MANUAL_CHECKLIST = [
    "A user can log in (POST /api/auth/login, or the login page in a browser)",
    "A previously annotated video loads and plays",
    "Its annotations render on the timeline",
    "A re-run of summarization on a video produces output",
]

CHECK_TITLES = {
    "dump": "Newest dump fetched and verified",
    "restore": "Restored into a scratch database",
    "rows": "Rows per table as in the manifest",
    "migrations": "Migrations as in the manifest",
    "env_copy": "Env copy off-site with its secrets",
    "videos": "Every referenced video off-site",
    "volume_age": "Video copy not older than the dump",
    "cleanup": "Scratch database dropped",
}
CHECK_ORDER = list(CHECK_TITLES)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    status: str = ""        # "ok" | "failed" | "skipped"
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "ok" if self.ok else "failed"
        self.detail = masking.redact(self.detail)

    @property
    def title(self) -> str:
        return CHECK_TITLES.get(self.name, self.name)

    def as_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "ok": self.ok, "status": self.status, "detail": self.detail,
                "title": self.title}
        if self.duration_s is not None:
            data["duration_s"] = round(self.duration_s, 3)
        data.update(self.extra)
        return data


@dataclass
class DrillResult:
    dump: str | None
    source: str                      # "offsite" | "local"
    started_at: datetime
    finished_at: datetime | None = None
    checks: list[Check] = field(default_factory=list)
    rto_s: float | None = None
    rpo_s: float | None = None
    dump_time: datetime | None = None
    scratch_database: str = ""
    offsite: str | None = None
    volume_target: str | None = None
    env_key: str | None = None
    dump_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    report_json: Path | None = None
    report_md: Path | None = None
    guide: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def duration_s(self) -> float:
        end = self.finished_at or datetime.now(timezone.utc)
        return (end - self.started_at).total_seconds()

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dump": self.dump,
            "rto_s": None if self.rto_s is None else round(self.rto_s, 3),
            "rpo_s": None if self.rpo_s is None else round(self.rpo_s, 1),
            "checks": [c.as_dict() for c in self.checks],
            "failed": self.failed,
            "source": self.source,
            "dump_key": self.dump_key,
            "dump_time": _iso(self.dump_time),
            "env_key": self.env_key,
            "offsite": self.offsite,
            "volume_target": self.volume_target,
            "scratch_database": self.scratch_database,
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "warnings": list(self.warnings),
            "checklist": [{"item": item, "done": False} for item in MANUAL_CHECKLIST],
            "guide": self.guide,
            "report": {"json": str(self.report_json) if self.report_json else None,
                       "markdown": str(self.report_md) if self.report_md else None},
        }


# --------------------------------------------------------------------------- helpers


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(timezone.utc).isoformat() if t else None


def human_duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def scratch_name(now: datetime) -> str:
    return SCRATCH_PREFIX + now.astimezone(timezone.utc).strftime(SCRATCH_FORMAT)


def scratch_time(name: str) -> datetime | None:
    """The UTC time in a scratch database's name; None for a name that is not ours."""
    if not name.startswith(SCRATCH_PREFIX):
        return None
    try:
        return datetime.strptime(name[len(SCRATCH_PREFIX):], SCRATCH_FORMAT).replace(tzinfo=timezone.utc)
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


def video_key(row_path: str, filename: str, storage_path: str) -> str:
    """The key under `volume.target` of a `videos` row: its path under STORAGE_PATH (the
    sync's keys are paths relative to `volume.path`, which is STORAGE_PATH on the host)."""
    from fovea_tui.engine.restore.verify import video_file

    return video_file(row_path or "", filename or "", storage_path or "/videos", PurePosixPath("")).as_posix()


def parse_env_bytes(data: bytes, name: str) -> EnvFile:
    """An env copy read from a store, parsed like the install's .env (values registered as secrets)."""
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(data.decode("utf-8", "replace")), interpolate=False)
    return EnvFile(Path(name), {k: (v or "") for k, v in values.items() if k})


class _StreamCtx:
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


# --------------------------------------------------------------------------- choosing the dump


@dataclass
class _Chosen:
    name: str
    source: str
    manifest: mf.Manifest
    dump_key: str | None = None        # off-site key
    local_path: Path | None = None
    env_key: str | None = None          # off-site key of the env copy
    env_path: Path | None = None        # local env copy (local source)
    store: Any = None


def choose_dump(settings: Settings) -> _Chosen:
    """The newest regular dump with a manifest, off-site (local when none is configured).

    SafetyRefusal (exit 3) when there is none; OperationFailed when the store does not answer.
    """
    from fovea_tui.engine.backups.inventory import OFFSITE, load_inventory
    from fovea_tui.errors import OperationFailed

    from fovea_tui.engine.infra.stores import open_store

    offsite = bool(settings.backups.offsite)
    store = open_store(settings.backups.offsite, settings.s3) if offsite else None  # ConfigError: exit 2
    inventory = load_inventory(settings, include_offsite=offsite, store=store)
    if offsite and inventory.errors:
        raise OperationFailed("the off-site store did not answer: " + "; ".join(inventory.errors))
    for entry in inventory.entries:  # newest first
        if entry.kind != "regular":
            continue
        if offsite:
            if entry.offsite is None or entry.offsite.status == "corrupt" or OFFSITE not in entry.manifests:
                continue
            key = entry.manifests[OFFSITE]
            try:
                manifest = mf.parse(inventory.store.read_bytes(key), source=f"off-site manifest {key}")
            except FoveaError:
                continue
            return _Chosen(entry.name, "offsite", manifest, dump_key=entry.offsite.key,
                           env_key=entry.envs.get(OFFSITE), store=inventory.store)
        if entry.local is None or entry.local.status == "corrupt" or entry.manifest is None:
            continue
        path = settings.backups_dir / entry.local.key
        try:
            manifest = mf.read(mf.manifest_path(path))
        except FoveaError:
            continue
        env = mf.env_copy_path(path)
        return _Chosen(entry.name, "local", manifest, local_path=path, env_path=env if env.is_file() else None)
    where = f"off-site at {settings.backups.offsite}" if offsite else f"in {settings.backups_dir}"
    raise SafetyRefusal(f"no dump with a manifest {where} to drill",
                        hint="run `fovea-tui backup` first" + ("" if offsite else
                                                               "; set backups.offsite to drill the off-site copies"))


# --------------------------------------------------------------------------- the checks


def _check_env_copy(settings: Settings, chosen: _Chosen) -> tuple[Check, EnvFile | None]:
    name = chosen.name[: -len(mf.DUMP_SUFFIX)] + ".env"
    recorded = (chosen.manifest.env_file or {}).get("sha256")
    if chosen.source == "offsite":
        where = f"off-site at {settings.backups.offsite}"
        if not chosen.env_key:
            return Check("env_copy", False, f"no env copy {name} {where}: a rebuilt install would have no "
                         "SESSION_SECRET, no DATABASE_URL and no API_KEY_ENCRYPTION_KEY (stored API keys lost)"), None
        data = encryption.read_decrypted(chosen.store, chosen.env_key,
                                         identities=encryption.identities_for(settings, chosen.env_key))
        if chosen.env_key.endswith(encryption.AGE_SUFFIX):
            where += ", decrypted with encryption.identity_file"
    else:
        where = f"in {settings.backups_dir} (no off-site store configured)"
        if chosen.env_path is None:
            return Check("env_copy", False, f"no env copy {name} {where}"), None
        data = chosen.env_path.read_bytes()
    import hashlib

    env = parse_env_bytes(data, name)
    missing = [k for k in CRITICAL_KEYS if not env.has(k)]
    notes = []
    ok = not missing
    if missing:
        notes.append("missing or empty: " + ", ".join(missing))
    else:
        notes.append(", ".join(CRITICAL_KEYS) + " present and non-empty (values not shown)")
    if recorded:
        if hashlib.sha256(data).hexdigest() == recorded:
            notes.append("matches the sha256 in the manifest")
        else:
            ok = False
            notes.append("differs from the env copy recorded in the manifest")
    return Check("env_copy", ok, f"{name} {where}: " + "; ".join(notes)), env


def _video_rows(db, database: str) -> list[tuple[str, str, int | None]] | None:
    if db.psql("SELECT to_regclass('public.videos') IS NOT NULL;", database=database) != "t":
        return None
    has_size = db.psql("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
                       "AND table_name = 'videos' AND column_name = 'fileSize';", database=database) == "1"
    size_sql = '"fileSize"' if has_size else "NULL"
    out = db.psql("SELECT coalesce(json_agg(json_build_array(filename, path, " + size_sql
                  + ") ORDER BY filename), '[]') FROM public.videos;", database=database)
    rows = json.loads(out or "[]")
    return [(str(r[0] or ""), str(r[1] or ""), int(r[2]) if isinstance(r[2], (int, float)) else None) for r in rows]


def _check_videos(settings: Settings, db, database: str, storage: str, cancel: CancelToken,
                  progress) -> tuple[Check, datetime | None]:
    """Every video row's file in the volume copy, by listing (no download); also returns the
    newest object time for the age check."""
    target = settings.volume.target
    rows = _video_rows(db, database)
    if rows is None:
        return Check("videos", True, "the restored database has no videos table"), None
    if not target:
        return Check("videos", False, f"{len(rows)} videos referenced, but volume.target is not set: "
                     "the video volume is not backed up anywhere"), None
    from fovea_tui.engine.volume.listing import is_marker
    from fovea_tui.engine.infra.stores import open_store

    try:
        store = open_store(target, settings.s3, key="volume.target")
    except ConfigError as exc:
        raise ConfigError(str(exc.message).replace("backups.offsite", "volume.target"), key="volume.target") from None
    wanted: dict[str, tuple[str, int | None]] = {}
    for filename, path, size in rows:
        key = video_key(path, filename, storage)
        local = Path(settings.volume.path) / key
        try:
            expected = local.stat().st_size
        except OSError:
            expected = size
        wanted[key] = (filename, expected)
        if filename and filename != key:
            wanted.setdefault(filename, (filename, expected))
    found: dict[str, int] = {}
    newest: datetime | None = None
    listed = 0
    t0 = time.monotonic()
    throttle = Throttle(progress, 0.2)
    for obj in store.iter_objects(""):
        if is_marker(obj.key):
            continue  # sync's own bookkeeping, not a video (and its time is not the volume's)
        listed += 1
        if listed % 1000 == 0:
            cancel.check()
            throttle(ProgressEvent("videos", listed, None, "files", current=obj.key, started_at=t0))
        if newest is None or obj.mtime > newest:
            newest = obj.mtime
        if obj.key in wanted:
            found[obj.key] = obj.size
    missing, wrong = [], []
    for filename, path, _size in rows:
        key = video_key(path, filename, storage)
        got_key = key if key in found else (filename if filename in found else None)
        if got_key is None:
            missing.append(key)
            continue
        expected = wanted[key][1]
        if expected is not None and found[got_key] != expected:
            wrong.append(f"{key} ({found[got_key]} bytes off-site, {expected} expected)")
    def shown(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(rows)} referenced videos missing from {target}: {shown(missing)}")
        if wrong:
            parts.append(f"{len(wrong)} with another size: {shown(wrong)}")
        return Check("videos", False, "; ".join(parts) + " (run `fovea-tui sync`)",
                     extra={"missing": len(missing), "size_mismatch": len(wrong), "referenced": len(rows)}), newest
    return Check("videos", True, f"all {len(rows)} referenced videos present in {target} with the same size "
                 f"({listed} objects listed, nothing downloaded)", extra={"referenced": len(rows)}), newest


def _check_volume_age(settings: Settings, dump_time: datetime | None, newest_object: datetime | None) -> Check:
    from fovea_tui.engine.volume.sync import read_summary

    target = settings.volume.target
    if not target:
        return Check("volume_age", False, "volume.target is not set: no off-site copy of the videos")
    summary = read_summary(settings) or {}
    when, how = None, ""
    # the last complete sync (`last_ok`) when the summary records it, else the last run
    stamp = summary.get("last_ok") if "last_ok" in summary else summary.get("time")
    if summary.get("target") == target and stamp:
        try:
            when = datetime.fromisoformat(str(stamp))
            how = "last complete sync (sync-last.json)" if "last_ok" in summary else "last sync (sync-last.json)"
        except ValueError:
            when = None
    if when is None and newest_object is not None:
        when, how = newest_object, "newest object in the copy"
    if when is None:
        return Check("volume_age", False, f"no sync to {target} on record and no object there")
    if dump_time is None:
        return Check("volume_age", True, f"{how} at {_iso(when)}; the dump's time is unknown")
    if when < dump_time:
        return Check("volume_age", False, f"the video copy ({how} at {_iso(when)}) is older than the dump "
                     f"({_iso(dump_time)}) by {human_duration((dump_time - when).total_seconds())}: videos "
                     "uploaded since are referenced but not copied (run `fovea-tui sync`)")
    return Check("volume_age", True, f"{how} at {_iso(when)}, not older than the dump ({_iso(dump_time)})")


def _check_rows(db, database: str, manifest: mf.Manifest) -> Check:
    actual = db.table_rows(database)
    expected = manifest.tables
    if not expected:
        return Check("rows", False, "the manifest records no row counts: nothing to compare")
    diffs = []
    for table in sorted(set(expected) | set(actual)):
        want, got = expected.get(table), actual.get(table)
        if want != got:
            diffs.append(f"{table}: {got if got is not None else 'missing'} restored, "
                         f"manifest says {want if want is not None else 'no such table'}")
    if diffs:
        return Check("rows", False, "; ".join(diffs), extra={"mismatched": len(diffs)})
    return Check("rows", True, f"{len(expected)} tables, {sum(expected.values())} rows, as in the manifest")


def _check_migrations(db, database: str, manifest: mf.Manifest) -> Check:
    actual = db.applied_migrations(database)
    expected = list(manifest.prisma_migrations)
    if actual == expected:
        return Check("migrations", True, f"{len(actual)} migrations recorded, as in the manifest"
                     + (f" (newest {actual[-1]})" if actual else ""))
    missing = [m for m in expected if m not in actual]
    extra = [m for m in actual if m not in expected]
    parts = []
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if extra:
        parts.append("not in the manifest: " + ", ".join(extra))
    if not parts:
        parts.append("same migrations in another order")
    return Check("migrations", False, "; ".join(parts))


# --------------------------------------------------------------------------- the drill


def run_drill(settings: Settings, *, progress: Callable[[ProgressEvent], None] = no_progress,
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
    started = now or datetime.now(timezone.utc)
    t0 = time.monotonic()
    with acquire(settings, LOCK_NAME, purpose="restore drill"):
        try:
            result = _drill(settings, started, t0, progress, cancel, on_check, database)
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
    return result


def _drill(settings: Settings, started: datetime, t0: float, progress, cancel: CancelToken,
           on_check: Callable[[Check], None], database) -> DrillResult:
    from fovea_tui.engine.infra.database import open_database

    def phase(name: str, message: str) -> None:
        progress(ProgressEvent(name, message=message, started_at=t0))

    phase("prepare", "choosing the newest dump")
    chosen = choose_dump(settings)
    result = DrillResult(dump=chosen.name, source=chosen.source, started_at=started,
                         offsite=settings.backups.offsite or None, volume_target=settings.volume.target or None,
                         dump_key=chosen.dump_key, env_key=chosen.env_key)
    result.dump_time = chosen.manifest.created or (mf.parse_dump_name(chosen.name).time
                                                    if mf.parse_dump_name(chosen.name) else None)
    if result.dump_time is not None:
        result.rpo_s = (started - result.dump_time).total_seconds()
    if chosen.source == "local":
        result.warnings.append("no backups.offsite configured: the drill used the local copy; a lost host "
                               "takes the backups with it")

    def land(check: Check) -> Check:
        result.checks.append(check)
        on_check(check)
        return check

    def skip(name: str, why: str) -> None:
        land(Check(name, False, why, status="skipped"))

    # The env copy needs no database: check it first, and whatever happens later.
    try:
        env_check, env_copy = _check_env_copy(settings, chosen)
    except FoveaError as exc:
        env_check, env_copy = Check("env_copy", False, f"cannot read the env copy: {exc}"), None
    storage = (env_copy.get("STORAGE_PATH") if env_copy else "") or ""
    if not storage:
        try:
            storage = EnvFile.load(settings.install.env_file).get("STORAGE_PATH")
        except FoveaError:
            storage = ""
    storage = storage or "/videos"

    db = database or open_database(settings)
    scratch = scratch_name(started)
    result.scratch_database = scratch
    try:
        dropped = drop_leftovers(db, started)
        if dropped:
            result.warnings.append("dropped leftover scratch databases of earlier drills: " + ", ".join(dropped))
    except (ConfigError, Cancelled):
        raise
    except FoveaError as exc:
        result.warnings.append(f"could not look for leftover scratch databases: {exc}")
    created = False
    try:
        with tempfile.TemporaryDirectory(dir=ensure_private_dir(settings.state_dir), prefix="drill-") as tmp:
            # 1. the dump, fetched and verified
            c0 = time.monotonic()
            try:
                path = _fetch(settings, chosen, Path(tmp), progress, cancel)
                phase("verify", f"verifying {chosen.name}")
                from fovea_tui.engine.backups.verify import verify_dump

                verified = verify_dump(path, chosen.manifest, use_manifest_beside=False, cancel=cancel,
                                       progress=progress)
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
            except (Cancelled, ConfigError):
                raise
            except FoveaError as exc:
                dump_check = Check("dump", False, f"cannot fetch {chosen.name}: {exc}")
            land(dump_check)
            cancel.check()

            # 2. the restore into a scratch database
            if dump_check.ok:
                c0 = time.monotonic()
                phase("restore", f"creating scratch database {scratch}")
                try:
                    owner = settings.database.user if settings.database.mode == "docker" else db.user
                    db.create_database(scratch, owner=owner or None)
                    created = True
                    from fovea_tui.engine.restore.steps import stream_dump

                    stream_dump(_StreamCtx(db, cancel, progress, chosen.name), path, scratch)
                    land(Check("restore", True, f"{chosen.name} restored into {scratch} on "
                               f"{db.describe()} (one transaction; the live database untouched)",
                               duration_s=time.monotonic() - c0))
                except (Cancelled, ConfigError):
                    raise
                except FoveaError as exc:
                    land(Check("restore", False, f"restore into {scratch} failed: {exc}",
                               duration_s=time.monotonic() - c0))
            else:
                skip("restore", "not run: the dump did not verify")
            restored = bool(result.check("restore") and result.check("restore").ok)
            cancel.check()

            # 3. rows and migrations: a verified database
            if restored:
                phase("check", "counting rows in the scratch database")
                for fn in (_check_rows, _check_migrations):
                    try:
                        land(fn(db, scratch, chosen.manifest))
                    except (Cancelled, ConfigError):
                        raise
                    except FoveaError as exc:
                        land(Check(fn.__name__.removeprefix("_check_"), False, str(exc)))
                if result.check("rows").ok and result.check("migrations").ok:
                    result.rto_s = time.monotonic() - t0
            else:
                skip("rows", "not run: nothing restored")
                skip("migrations", "not run: nothing restored")
            cancel.check()

            land(env_check)

            # 4. the videos the restored database references, in the volume copy
            newest_object = None
            if restored:
                phase("videos", f"listing {settings.volume.target or 'the volume copy'}")
                try:
                    check, newest_object = _check_videos(settings, db, scratch, storage, cancel, progress)
                    land(check)
                except (Cancelled, ConfigError):
                    raise
                except FoveaError as exc:
                    land(Check("videos", False, f"cannot check the volume copy: {exc}"))
            else:
                skip("videos", "not run: nothing restored to read the videos table from")
            try:
                land(_check_volume_age(settings, result.dump_time, newest_object))
            except FoveaError as exc:
                land(Check("volume_age", False, str(exc)))
    finally:
        if created:
            _cleanup(db, scratch, result, land if not cancel.cancelled else result.checks.append)
    return result


def _cleanup(db, scratch: str, result: DrillResult, land) -> None:
    try:
        db.drop_database(scratch)
        gone = scratch not in db.databases()
        land(Check("cleanup", gone, f"scratch database {scratch} dropped" if gone
                   else f"scratch database {scratch} still exists after DROP DATABASE"))
    except FoveaError as exc:
        land(Check("cleanup", False, f"could not drop scratch database {scratch}: {exc} "
                   "(the next drill drops it once it is a day old)"))


def _fetch(settings: Settings, chosen: _Chosen, tmp: Path, progress, cancel: CancelToken) -> Path:
    if chosen.source == "local":
        return chosen.local_path
    dest = tmp / chosen.name
    t0 = time.monotonic()
    total = chosen.manifest.size

    def fetched(event: ProgressEvent) -> None:
        progress(ProgressEvent("fetch", event.done, event.total or total, "bytes", current=chosen.name,
                               started_at=t0))

    encryption.fetch(chosen.store, chosen.dump_key, dest, identities=encryption.identities_for(settings, chosen.dump_key),
                     record=encryption.file_record(chosen.manifest.as_dict(), chosen.dump_key),
                     expected_sha256=chosen.manifest.sha256, progress=fetched, cancel=cancel)
    return dest


# --------------------------------------------------------------------------- the guide


def _offsite_fetch_command(settings: Settings, key: str, dest: str) -> str:
    """A shell line that fetches off-site `key` to `dest`, through `age -d` when it is encrypted."""
    url = settings.backups.offsite
    identity = settings.encryption.identity_file or "IDENTITY"
    encrypted = key.endswith(encryption.AGE_SUFFIX)
    if url.startswith("s3://"):
        endpoint = f" --endpoint-url {settings.s3.endpoint_url}" if settings.s3.endpoint_url else ""
        source = f"{url.rstrip('/')}/{key}"
        if encrypted:
            return f"aws s3 cp{endpoint} {source} - | age -d -i {identity} > {dest}"
        return f"aws s3 cp{endpoint} {source} {dest}"
    path = Path(url) / key if url else settings.backups_dir / key
    return f"age -d -i {identity} -o {dest} {path}" if encrypted else f"cp {path} {dest}"


def recover_command(settings: Settings, identity: str = "~/fovea-identity.txt") -> str:
    """The one line that rebuilds this install on a new host (see engine.drill.recover)."""
    url = settings.backups.offsite or "<backups.offsite: not configured, nothing to recover from>"
    prefix = f"AWS_ENDPOINT_URL={settings.s3.endpoint_url} " if url.startswith("s3://") and settings.s3.endpoint_url else ""
    key = f" --identity {identity}" if encryption.enabled(settings) else ""
    return f"{prefix}fovea-tui recover --from {url}{key}"


def guide_steps(settings: Settings, dump: str | None = None, env_key: str | None = None) -> list[dict[str, Any]]:
    """The full drill on a separate host, with this install's names filled in: `recover`
    first, then the same step by step for an operator who wants each piece in hand.

    `dump` is the dump to restore (an off-site key or name); None leaves a placeholder.
    """
    dump = dump or "<newest dump from `fovea-tui list`>"
    plain_dump = encryption.plain_name(dump)
    env_name = env_key or (plain_dump[: -len(mf.DUMP_SUFFIX)] + ".env" if plain_dump.endswith(mf.DUMP_SUFFIX)
                           else "<its .env copy>")
    env_dest = settings.install.env_file
    compose_dir = str(Path(env_dest).parent)
    target = settings.volume.target or "<volume.target: not configured, the videos are not backed up>"
    identity = settings.encryption.identity_file or "<the identity kept away from this host>"
    first = []
    if encryption.enabled(settings):
        first.append(f"scp {identity} NEW-HOST:~/fovea-identity.txt   # or the copy kept away from this host")
    steps = [
        {"title": "Stand up an empty stack on a separate host",
         "detail": f"Same compose file and images as this install (project {settings.install.compose_project}); "
                   "install fovea-tui; give it read access to the off-site store (AWS credentials in the "
                   "environment or ~/.aws, never in the config)"
                   + ("; bring the age identity: the off-site copies are encrypted." if first else "."),
         "commands": first + [f"cd {compose_dir} && docker compose up -d {settings.database.service} redis"]},
        {"title": "Recover from the off-site copy",
         "detail": "Lists the off-site backups, fetches, decrypts and verifies the newest verified one, writes "
                   "this host's config, installs the env copy (0600), pulls the video copy, then runs the guided "
                   "restore with its safety checks. Pass --config PATH to start from a config written for the "
                   "new host.",
         "commands": [recover_command(settings)]},
        {"title": "Adjust the env file for the new host",
         "detail": "As recover lists: DATABASE_URL (and SESSION_SECRET, as the runbook says); keep "
                   "API_KEY_ENCRYPTION_KEY: the stored API keys are encrypted with it.",
         "commands": [f"$EDITOR {env_dest}   # DATABASE_URL, SESSION_SECRET"]},
        {"title": "Start the rest of the stack",
         "commands": [f"cd {compose_dir} && docker compose up -d", "fovea-tui status"]},
        {"title": "Check by hand, and tick in the drill report",
         "detail": "; ".join(MANUAL_CHECKLIST) + ".",
         "commands": []},
        {"title": "Or the same step by step",
         "detail": f"Copy this host's config over, pull the videos ({target} into {settings.volume.path}), fetch "
                   "the env copy of that backup, then the guided restore.",
         "commands": ["fovea-tui sync --pull", _offsite_fetch_command(settings, env_name, env_dest),
                      f"chmod 600 {env_dest}", f"fovea-tui restore {plain_dump}"]},
    ]
    return steps


def render_guide(steps: list[dict[str, Any]]) -> str:
    lines = ["Full drill on a separate host (the runbook's quarterly drill):"]
    for i, step in enumerate(steps, 1):
        lines.append(f"  {i}. {step['title']}")
        if step.get("detail"):
            lines.append(f"     {step['detail']}")
        for cmd in step.get("commands", []):
            lines.append(f"       $ {cmd}")
    return "\n".join(lines)


def guide_for(settings: Settings) -> list[dict[str, Any]]:
    """The guide for the newest dump off-site (or local), without running a drill."""
    try:
        chosen = choose_dump(settings)
        return guide_steps(settings, chosen.dump_key or chosen.name, chosen.env_key)
    except FoveaError:
        last = latest_report(settings)
        if last and last.get("dump"):
            return guide_steps(settings, last.get("dump_key") or last["dump"], last.get("env_key"))
        return guide_steps(settings)


# --------------------------------------------------------------------------- reports


def drills_dir(settings: Settings) -> Path:
    return settings.state_dir / DRILLS_DIR


def render_markdown(data: dict[str, Any]) -> str:
    verdict = "PASSED" if data["ok"] else "FAILED"
    lines = [f"# Disaster-recovery drill {data['started_at']}: {verdict}", "",
             f"- Dump: `{data['dump']}` ({data['source']}" + (f", `{data['dump_key']}`" if data.get("dump_key") else "")
             + ")",
             f"- Dump taken: {data.get('dump_time') or 'unknown'}",
             f"- Recovery time (RTO, start to a verified database): {human_duration(data.get('rto_s'))}",
             f"- Recovery point (RPO, age of the backup): {human_duration(data.get('rpo_s'))}",
             f"- Scratch database: `{data['scratch_database']}` (dropped)",
             f"- Off-site: {data.get('offsite') or 'none configured'}; videos: {data.get('volume_target') or 'none configured'}",
             "", "## Checks", "", "| check | result | what it saw |", "|---|---|---|"]
    for c in data["checks"]:
        detail = str(c["detail"]).replace("|", "\\|")
        lines.append(f"| {c.get('title', c['name'])} (`{c['name']}`) | {c['status']} | {detail} |")
    if data.get("warnings"):
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in data["warnings"]]
    lines += ["", "## On a separate host: tick by hand", ""]
    lines += [f"- [ ] {item['item']}" for item in data["checklist"]]
    if data.get("guide"):
        lines += ["", "## The full drill on a separate host", ""]
        for i, step in enumerate(data["guide"], 1):
            lines.append(f"{i}. **{step['title']}**" + (f" {step['detail']}" if step.get("detail") else ""))
            if step.get("commands"):
                lines.append("")
                lines.append("   ```sh")
                lines += [f"   {cmd}" for cmd in step["commands"]]
                lines.append("   ```")
    return "\n".join(lines) + "\n"


def write_reports(settings: Settings, result: DrillResult) -> tuple[Path, Path]:
    directory = ensure_private_dir(drills_dir(settings))
    stem = "drill-" + result.started_at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    result.report_json = directory / f"{stem}.json"
    result.report_md = directory / f"{stem}.md"
    data = result.as_dict()
    mf.write_bytes_atomic(result.report_md, masking.redact(render_markdown(data)).encode("utf-8"))
    mf.write_bytes_atomic(result.report_json,
                          (masking.redact(json.dumps(data, indent=2, default=str)) + "\n").encode("utf-8"))
    return result.report_json, result.report_md


_REPORT = re.compile(r"^drill-\d{8}T\d{6}Z\.json$")


def latest_report(settings: Settings) -> dict[str, Any] | None:
    """The newest drill report (by its name, which is its start time), or None."""
    try:
        names = sorted((p for p in drills_dir(settings).iterdir() if _REPORT.match(p.name)), reverse=True)
    except OSError:
        return None
    for path in names:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "ok" in data:
            data.setdefault("report", {})["json"] = str(path)
            return data
    return None


def drill_status(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The `drill` section of status: the last drill's date and verdict, and alerts
    (never run, failed, older than `drill.interval_days`)."""
    now = now or datetime.now(timezone.utc)
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
    day = when.astimezone(timezone.utc).strftime("%Y-%m-%d") if when else "?"
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
                       "message": f"last restore drill was {int((age or 0) // 86400)} days ago "
                                  f"(drill.interval_days = {interval}): run `fovea-tui drill`"})
    if alerts:
        section["ok"] = False
        section["error"] = summary + ("; overdue" if section["overdue"] else "")
    return section
