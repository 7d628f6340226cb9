"""Database backups that cannot lie.

pg_dump's plain SQL streams from the database (docker exec or a local pg_dump) through a
reader thread and a bounded queue into ISA-L's gzip, then into a temp file in the backups
directory (`.fovea-....partial`), hashing the compressed bytes on the way and counting
the rows of every COPY block. Only a stream that pg_dump finished with exit 0 *and* its
`-- PostgreSQL database dump complete` line is fsynced and renamed to
`fovea-YYYYMMDDTHHMMSSZ.sql.gz`; its env copy and its manifest follow, manifest last.
Anything else (pg_dump failing, the connection dropping, a full disk, a cancel) removes
every file the run created and raises with the reason. A run killed outright leaves only
dot-files named `.fovea-*.partial`, which the next run removes.

`run_backup()` is what the CLI's `backup`, the TUI's "Back up now" and restore's safety
dump call. The stream format it checks is `stream_format`; the off-site copy of the
finished backup is `offsite`.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from isal import isal_zlib

from fovea_tui import __version__, masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups import verify_cache
from fovea_tui.engine.backups.offsite import OffsiteFailed
from fovea_tui.engine.backups.offsite import upload as upload_offsite
from fovea_tui.engine.backups.stream_format import COMPLETION_LINE, StreamInspector
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.database import DatabaseError, open_database
from fovea_tui.engine.infra.files import fsync_dir
from fovea_tui.engine.infra.locks import acquire, check_not_world_writable, ensure_private_dir
from fovea_tui.engine.infra.streams import ToolProcess, condense
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle, no_progress
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import Cancelled, FoveaError, OperationFailed
from fovea_tui.formatting import plural

log = logging.getLogger(__name__)

COMPRESS_LEVEL = 1          # ISA-L levels are 0-3; 1 is standard gzip at several hundred MB/s
CHUNK = 1 << 20
QUEUE_CHUNKS = 16           # bounded: at most ~16 MiB of dump in flight, whatever its size
PIPE_SIZE = 1 << 20
PARTIAL_PREFIX = ".fovea-"
PARTIAL_SUFFIXES = (".partial", ".tmp")

# Plausibility: kept but flagged.
SHRINK_FRACTION = 0.5       # smaller than half the median of the recent manifests
RECENT_MANIFESTS = 7
MANY_ROWS = 10              # "a table that went from many rows to none"

# --------------------------------------------------------------------------- streaming


@dataclass
class StreamStats:
    raw_bytes: int
    size: int
    sha256: str
    tables: dict[str, int]
    complete: bool


def _widen_pipe(proc: ToolProcess) -> None:
    """Ask for a 1 MiB pipe from a local pg_dump: fewer, larger reads (best effort)."""
    inner = getattr(proc, "_proc", None)
    stdout = getattr(inner, "stdout", None)
    if stdout is None:
        return
    try:
        import fcntl

        fcntl.fcntl(stdout.fileno(), getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except (OSError, ValueError):
        pass


def stream_to_file(proc: ToolProcess, fd: int, *, cancel: CancelToken,
                   on_progress: Callable[[int, int], None] | None = None,
                   level: int = COMPRESS_LEVEL) -> StreamStats:
    """pg_dump's stdout -> bounded queue -> gzip (ISA-L) -> sha256 + `fd`.

    A reader thread keeps pg_dump flowing while this thread inspects, compresses, hashes
    and writes. Raises OSError from writes (disk full), Cancelled; the caller owns cleanup.
    """
    q: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    stop = threading.Event()
    _END = object()

    def reader() -> None:
        data: bytes | OSError | ValueError
        while not stop.is_set():
            try:
                data = proc.read(CHUNK)
            except (OSError, ValueError) as exc:
                data = exc
            while not stop.is_set():
                try:
                    q.put(data if data else _END, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if not data or isinstance(data, Exception):
                return

    thread = threading.Thread(target=reader, name="pg_dump-reader", daemon=True)
    thread.start()
    inspector = StreamInspector()
    compressor = isal_zlib.compressobj(level, isal_zlib.DEFLATED, 31)
    digest = hashlib.sha256()
    size = 0

    def emit(data: bytes) -> None:
        nonlocal size
        if not data:
            return
        digest.update(data)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        size += len(data)

    try:
        while True:
            item = q.get()
            if item is _END:
                break
            if isinstance(item, Exception):
                raise OperationFailed(f"reading the dump stream failed: {item}")
            cancel.check()
            inspector.feed(item)
            emit(compressor.compress(item))
            if on_progress is not None:
                on_progress(inspector.bytes, size)
        emit(compressor.flush())
    finally:
        stop.set()
        thread.join(timeout=0.1)
        if thread.is_alive():
            proc.kill()
            while thread.is_alive():
                try:
                    q.get(timeout=0.2)
                except queue.Empty:
                    pass
            thread.join()
    return StreamStats(raw_bytes=inspector.bytes, size=size, sha256=digest.hexdigest(),
                       tables=dict(inspector.tables), complete=inspector.complete)


# --------------------------------------------------------------------------- results


class BackupIncomplete(OperationFailed):
    """The dump and its manifest are complete and kept, but the env file configured in
    install.env_file could not be copied beside them (exit 1): the one thing no backup can
    replace is missing from this one. `result` describes what was kept."""

    def __init__(self, message: str, result: BackupResult, **kw) -> None:
        super().__init__(message, **kw)
        self.result = result


@dataclass
class BackupResult:
    """A finished backup: its manifest (what the dump holds) and where its files are."""

    path: Path
    manifest: mf.Manifest
    manifest_path: Path
    env_copy: Path | None
    warnings: list[str] = field(default_factory=list)
    offsite: dict[str, Any] | None = None
    offsite_error: str | None = None
    raw_bytes: int = 0
    env_error: str | None = None   # install.env_file is set but could not be copied

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.manifest.size

    @property
    def sha256(self) -> str:
        return self.manifest.sha256

    @property
    def tables(self) -> dict[str, int]:
        return self.manifest.tables

    @property
    def duration_s(self) -> float:
        return self.manifest.duration_s

    @property
    def created_at(self) -> str:
        return self.manifest.created_at

    @property
    def kind(self) -> str:
        return self.manifest.kind

    @property
    def mode(self) -> str:
        return self.manifest.mode

    @property
    def database(self) -> str:
        return self.manifest.database

    @property
    def server_version(self) -> str:
        return self.manifest.server_version

    @property
    def pg_dump_version(self) -> str:
        return self.manifest.pg_dump_version

    @property
    def prisma_migrations(self) -> list[str]:
        return self.manifest.prisma_migrations

    @property
    def ok(self) -> bool:
        return self.offsite_error is None and self.env_error is None

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "name": self.name,
            "path": str(self.path),
            "size": self.size,
            "sha256": self.sha256,
            "tables": dict(self.tables),
            "rows": self.rows,
            "duration_s": self.duration_s,
            "created_at": self.created_at,
            "kind": self.kind,
            "mode": self.mode,
            "database": self.database,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "prisma_migrations": len(self.prisma_migrations),
            "manifest": str(self.manifest_path),
            "env_copy": str(self.env_copy) if self.env_copy else None,
            "env_error": self.env_error,
            "warnings": list(self.warnings),
            "offsite": self.offsite,
            "offsite_error": self.offsite_error,
            "uncompressed_bytes": self.raw_bytes,
        }


# --------------------------------------------------------------------------- helpers


def prepare_backups_dir(settings: Settings) -> Path:
    """The backups directory, created 0700 if missing; refused (exit 3) if world-writable."""
    directory = settings.backups_dir
    check_not_world_writable(directory)
    ensure_private_dir(directory)
    check_not_world_writable(directory)
    return directory


def cleanup_partials(directory: Path) -> list[str]:
    """Remove temp files an interrupted run left (`.fovea-*.partial`, `.fovea-*.tmp`)."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return removed
    for entry in entries:
        name = entry.name
        if (name.startswith(PARTIAL_PREFIX) or name.startswith("." + PARTIAL_PREFIX)) \
                and name.endswith(PARTIAL_SUFFIXES) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


def plausibility_warnings(size: int, tables: dict[str, int], previous: list[mf.Manifest]) -> list[str]:
    """Why this dump looks implausible next to the recent ones (kept, but flagged)."""
    warnings: list[str] = []
    sizes = [m.size for m in previous if m.size > 0]
    if sizes:
        median = statistics.median(sizes)
        if size < SHRINK_FRACTION * median:
            warnings.append(
                f"dump is {size / median:.0%} of the median size of the last {len(sizes)} "
                f"backups ({_mib(size)} vs {_mib(median)}): was data deleted?")
    if previous:
        last = previous[-1]
        for table, before in sorted(last.tables.items()):
            now = tables.get(table)
            if before >= MANY_ROWS and not now:
                state = "is empty" if now == 0 else "is missing"
                warnings.append(f"table {table} {state} (had {plural(before, 'row')} in {last.dump or 'the previous backup'})")
    return warnings


def _mib(n: float) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _unlink_quiet(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - nothing better to do
                log.warning("could not remove %s: %s", path, exc)


def pg_dump_reason(stderr: str) -> str:
    """pg_dump's error and its detail lines (the server's own words), redacted, one line."""
    picked = []
    for line in stderr.splitlines():
        text = line.strip()
        if not text or "Command was:" in text:
            continue
        if any(tag in text for tag in ("error:", "detail:", "FATAL", "ERROR", "fatal:")):
            picked.append(text.replace("pg_dump: detail: ", "").replace("pg_dump: ", ""))
    if not picked:
        return condense(stderr) if stderr.strip() else "no error output (was it killed?)"
    return masking.redact(" | ".join(picked[-4:]))[:600]


def _stop(proc: ToolProcess) -> None:
    """Kill a tool whose output we no longer want, and reap it; errors here are moot."""
    try:
        proc.kill()
        proc.wait()
    except Exception:  # noqa: BLE001 - the first error is the one to report
        pass


def _write_error(path: Path, exc: OSError, what: str = "the dump") -> OperationFailed:
    """The error of a write in the backups directory; the caller removes every file of the run."""
    if exc.errno == errno.ENOSPC:
        return OperationFailed(f"no space left on the device of {path.parent} while writing {what}",
                               hint="free space or point backups.dir elsewhere; nothing was kept")
    if exc.errno == errno.EDQUOT:
        return OperationFailed(f"disk quota exceeded under {path.parent} while writing {what}; nothing was kept")
    return OperationFailed(f"cannot write under {path.parent}: {exc.strerror or exc}")


class _Metadata(threading.Thread):
    """Server version, pg_dump version and applied migrations, fetched while pg_dump runs."""

    def __init__(self, db) -> None:
        super().__init__(name="backup-metadata", daemon=True)
        self.db = db
        self.values: dict[str, Any] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.values["server_version"] = self.db.ping()
            self.values["pg_dump_version"] = self.db.tool_version("pg_dump")
            self.values["prisma_migrations"] = self.db.applied_migrations()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            self.error = exc


# --------------------------------------------------------------------------- the backup


def run_backup(settings: Settings, *, progress: Callable[[ProgressEvent], None] = no_progress,
               cancel: CancelToken | None = None, now: datetime | None = None, offsite: bool = True,
               kind: str = "regular", database=None, env: EnvFile | None = None) -> BackupResult:
    """Dump, compress, check, manifest, env copy, off-site copy. See the module doc.

    Raises FoveaError subclasses: OperationFailed (exit 1) with the reason, LockHeld /
    SafetyRefusal (exit 3), Cancelled; OffsiteFailed (exit 1) when everything local worked
    but the off-site copy did not, BackupIncomplete (exit 1) when the configured env file
    could not be copied (a regular backup; the dump is kept and uploaded all the same).
    Both carry `result`, which says where the backup is.
    """
    if kind not in mf.KINDS:
        raise ValueError(f"unknown backup kind {kind!r}")
    cancel = cancel or CancelToken()
    directory = prepare_backups_dir(settings)
    try:
        with acquire(settings, "backups", purpose=f"{kind} backup" if kind != "regular" else "backup"):
            removed = cleanup_partials(directory)
            if removed:
                log.info("removed %d temp file(s) of an interrupted run", len(removed))
            result = _backup_locked(settings, directory, progress=progress, cancel=cancel, now=now,
                                    kind=kind, database=database, env=env)
            offsite_failed: OffsiteFailed | None = None
            if offsite and settings.backups.offsite:
                try:
                    upload_offsite(settings, result, progress=progress, cancel=cancel)
                except OffsiteFailed as exc:
                    offsite_failed = exc
            if result.env_error is not None:
                also = f"; the off-site copy failed too: {result.offsite_error}" if offsite_failed else ""
                raise BackupIncomplete(
                    f"backup incomplete: {result.env_error}{also}; the dump {result.path} and its manifest "
                    "are complete and kept", result,
                    hint="fix install.env_file and back up again: a restore on a new host needs that file")
            if offsite_failed is not None:
                raise offsite_failed
    except (OffsiteFailed, BackupIncomplete) as exc:
        audit.record(settings, "backup", "failed", {**_audit_details(exc.result), "reason": exc.message})
        raise
    except FoveaError as exc:
        outcome = "cancelled" if isinstance(exc, Cancelled) else (
            "refused" if exc.exit_code == 3 else "failed")
        audit.record(settings, "backup", outcome, {"kind": kind, "reason": str(exc)})
        raise
    audit.record(settings, "backup", "ok", _audit_details(result))
    return result


def install_facts(settings: Settings) -> dict[str, str]:
    """Where this install keeps things (names and paths, no secret): what `recover` starts
    from on a new host that has only the off-site copy."""
    return {"compose_project": settings.install.compose_project, "env_file": settings.install.env_file,
            "database_mode": settings.database.mode, "volume_target": settings.volume.target}


def _audit_details(result: BackupResult) -> dict[str, Any]:
    return {"kind": result.kind, "name": result.name, "size": result.size, "sha256": result.sha256,
            "tables": len(result.tables), "rows": result.rows, "duration_s": result.duration_s,
            "mode": result.mode, "env_copy": result.env_copy.name if result.env_copy else None,
            "offsite": result.offsite["url"] if result.offsite else None, "warnings": result.warnings}


def _backup_locked(settings: Settings, directory: Path, *, progress, cancel: CancelToken,
                   now: datetime | None, kind: str, database, env: EnvFile | None) -> BackupResult:
    started = time.monotonic()
    warnings: list[str] = []
    env_error: str | None = None
    if env is None:
        try:
            env = EnvFile.load(settings.install.env_file)
        except FoveaError as exc:
            env_error = str(exc)
    db = database or open_database(settings, env=env)

    explicit_now = now is not None
    when = (now or _utc_now()).astimezone(UTC).replace(microsecond=0)
    name = mf.dump_name(when, kind)
    while (directory / name).exists():
        if explicit_now:
            raise OperationFailed(f"a dump named {name} already exists in {directory}")
        time.sleep(max(0.05, 1.0 - _utc_now().microsecond / 1e6))  # names are per second
        when = _utc_now().replace(microsecond=0)
        name = mf.dump_name(when, kind)

    final = directory / name
    tmp = directory / f"{PARTIAL_PREFIX}{name[len('fovea-'):]}.partial"
    env_final = mf.env_copy_path(final)
    env_tmp = directory / f"{PARTIAL_PREFIX}{env_final.name[len('fovea-'):]}.partial"
    manifest_final = mf.manifest_path(final)
    created: list[Path] = []

    throttle = Throttle(progress, 0.2)
    t0 = time.monotonic()

    def on_progress(raw: int, compressed: int) -> None:
        throttle(ProgressEvent(phase="dump", done=raw, unit="bytes", current=name,
                               message=f"{_mib(compressed)} compressed", started_at=t0))

    meta = _Metadata(db)
    meta.start()
    try:
        cancel.check()
        proc = db.dump()
        _widen_pipe(proc)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        created.append(tmp)
        try:
            try:
                stats = stream_to_file(proc, fd, cancel=cancel, on_progress=on_progress)
            except BaseException as exc:
                _stop(proc)
                if isinstance(exc, OSError):
                    raise _write_error(tmp, exc) from None
                raise
            code = proc.wait()
            if code != 0:
                raise DatabaseError(f"pg_dump on {db.describe()} failed (exit {code}): "
                                    f"{pg_dump_reason(proc.stderr_text)}")
            if not stats.complete:
                raise OperationFailed(
                    f"pg_dump on {db.describe()} exited 0 but its output does not end with "
                    f"'{COMPLETION_LINE.decode()}': the stream was cut short; nothing was kept")
            try:
                os.fsync(fd)
            except OSError as exc:
                raise _write_error(tmp, exc) from None
        finally:
            os.close(fd)
        throttle(ProgressEvent(phase="dump", done=stats.raw_bytes, total=stats.raw_bytes, unit="bytes",
                               current=name, message=f"{_mib(stats.size)} compressed", started_at=t0),
                 force=True)

        meta.join()
        if meta.error is not None:
            if isinstance(meta.error, FoveaError):
                raise meta.error
            raise OperationFailed(f"reading the server's details failed: {meta.error}")
        cancel.check()

        env_info = None
        if env is not None:
            try:
                env.copy_to(env_tmp)
                created.append(env_tmp)
                env_info = {"name": env_final.name, "sha256": mf.file_sha256(env_tmp)}
            except OSError as exc:
                _unlink_quiet(env_tmp, env_tmp.with_name(f".{env_tmp.name}.tmp"))
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _write_error(env_tmp, exc, "the env copy") from None
                env_error = f"env file {settings.install.env_file} could not be copied: {exc.strerror or exc}"
        if env_info is None:
            warnings.append(f"env file not copied with this backup: {env_error or 'no env file'}")
            if not settings.install.env_file:
                env_error = None  # none configured: nothing to copy, nothing missing
            elif kind != "regular":
                env_error = None  # a safety dump guards the database only; the env file stays put

        previous = mf.recent(directory, RECENT_MANIFESTS)
        warnings += plausibility_warnings(stats.size, stats.tables, previous)
        duration = round(time.monotonic() - started, 3)
        manifest = mf.Manifest(
            created_at=when.isoformat(),
            database=db.name,
            server_version=str(meta.values["server_version"]),
            pg_dump_version=str(meta.values["pg_dump_version"]),
            size=stats.size,
            sha256=stats.sha256,
            tables=stats.tables,
            prisma_migrations=list(meta.values["prisma_migrations"]),
            env_file=env_info,
            duration_s=duration,
            tool_version=__version__,
            kind=kind,
            warnings=warnings,
            mode=db.mode,
            dump=name,
            extra={"uncompressed_size": stats.raw_bytes, "compression": f"gzip (ISA-L level {COMPRESS_LEVEL})",
                   "install": install_facts(settings)},
        )
        # Manifest last: dump, then env copy, then the manifest, each renamed into place.
        os.rename(tmp, final)
        created.append(final)
        if env_info is not None:
            os.rename(env_tmp, env_final)
            created.append(env_final)
        fsync_dir(directory)
        # A failure from here on (a late ENOSPC on the directory fsync after the rename) may
        # leave the manifest in place: it is removed with the rest, never left an orphan.
        created.append(manifest_final)
        try:
            mf.write(manifest, manifest_final)
        except OSError as exc:
            raise _write_error(manifest_final, exc, f"the manifest {manifest_final.name}") from None
    except BaseException as exc:
        _unlink_quiet(*created)
        try:
            fsync_dir(directory)
        except OSError:
            pass
        if isinstance(exc, (FoveaError, KeyboardInterrupt)):
            raise
        if isinstance(exc, OSError):
            raise OperationFailed(f"backup failed: {exc.strerror or exc}") from None
        raise

    stat = final.stat()
    try:
        verify_cache.remember_verified(settings, final, size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                          sha256=stats.sha256, tables=stats.tables)
    except Exception as exc:  # noqa: BLE001 - a cache miss only costs a re-read later
        log.warning("could not record the verification: %s", masking.redact(str(exc)))

    return BackupResult(
        path=final, manifest=manifest, manifest_path=manifest_final,
        env_copy=env_final if env_info else None, warnings=warnings, raw_bytes=stats.raw_bytes,
        env_error=None if env_info else env_error,
    )
