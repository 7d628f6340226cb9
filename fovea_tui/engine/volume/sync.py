"""The video volume, copied to an object store (`volume.target`) and back.

The runbook does this with `rsync -av --delete`, which cannot write to S3 and which wipes
the off-site copy when run against an unmounted, empty volume. This module replaces it:

- The local walk and the remote listing are two streams sorted by key (S3 lists in
  UTF-8 byte order, which is Python's `str` order), merged like the two halves of a merge
  sort. Nothing holds the whole volume in memory: a directory with more names than
  `SORT_CHUNK` is sorted in runs spilled to temporary files. The plan (what to upload,
  what to delete) is spooled to a temporary file too, so its totals are known before the
  first byte moves, which is what gives progress a total and an ETA.
- Blobs are immutable: an object already off-site with the same size is skipped without
  reading the file. A file whose size differs from its off-site copy is reported and left
  alone unless `replace_changed` is asked for.
- Uploads run on a thread pool; each goes through `Store.put_file`, which makes the
  object visible only once complete (S3 multipart completes atomically, a directory gets
  a temp file and a rename) and verifies size and sha256. An interrupted run therefore
  leaves nothing partial under the target; the next run skips what arrived and starts by
  cleaning up incomplete uploads.
- `volume.delete` mirrors deletions behind a guard: refused (exit 3, nothing deleted) when
  the volume is missing or empty, or when more than `volume.max_delete_percent` of the
  off-site objects would go.
- A pull never writes outside its destination, whatever the object keys say.
- A push to S3 usually does not list the target: it reads what the last sync left it
  holding from a local snapshot, when a marker object and a sample say that can be
  trusted (offsite_listing). A pull always lists.

Never imports textual: the CLI and the TUI's Volume screen both call `run_sync`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import os
import queue
import stat
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator

from fovea_tui.config import Settings
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.engine.volume import listing as offsite_listing
from fovea_tui.engine.volume.listing import Snapshot, SnapshotWriter, is_marker
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle, no_progress
from fovea_tui.errors import Cancelled, ConfigError, FoveaError, OperationFailed, SafetyRefusal
from fovea_tui.formatting import ago

SUMMARY_FILE = "sync-last.json"
PULL_SUMMARY_FILE = "sync-last-pull.json"
LOCK_NAME = "volume"

DEFAULT_WORKERS = 10
SPLIT_EVERY = 1000           # local keys per remote listing range (one full S3 page)
LIST_WORKERS = 8             # remote listing ranges fetched at once
LARGE_PARALLEL = 1           # multipart transfers at once (each runs `workers` part threads)
SORT_CHUNK = 20_000          # names sorted in memory per run before spilling to a temp file
BREAKER = 8                  # consecutive failed transfers with no success: the store is gone
MAX_LISTED = 200             # errors/warnings kept in a result (the count is always exact)
MAX_PLANNED = 1_000          # dry run: transfers and deletions listed (counts are always exact)
STALE_UPLOAD_S = 0           # incomplete uploads under the target are ours (we hold the lock)
STALE_SYNC_DAYS = 7          # status warns when the last sync is older than this
PROGRESS_INTERVAL = 0.1      # seconds between progress events (plus the first and the last)

TEMP_PREFIX = ".fovea-tmp-"  # what the stores name their temp files; never synced


# --------------------------------------------------------------------------- results


@dataclass
class SyncResult:
    """What one run did (or, with dry_run, would do). `as_dict()` is the contract's shape."""

    direction: str                      # "push" | "pull"
    source: str
    target: str
    dry_run: bool = False
    uploaded: int = 0
    downloaded: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0                      # bytes transferred (uploaded or downloaded)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    changed: list[str] = field(default_factory=list)    # size differs from the off-site copy
    replaced: int = 0                   # changed files transferred because replace_changed
    planned: list[dict[str, Any]] = field(default_factory=list)  # dry run: the transfers
    deletions: list[str] = field(default_factory=list)  # planned (dry run) or done
    pending: int = 0                    # planned transfers that did not happen
    vanished: int = 0                   # planned transfers whose file was deleted meanwhile
    local_files: int = 0
    local_bytes: int = 0
    remote_objects: int = 0
    to_transfer: int = 0
    to_transfer_bytes: int = 0
    to_delete: int = 0                  # deletions planned (the guard's numerator)
    refused: str | None = None          # the delete guard's reason, when it refused
    cancelled: bool = False
    cleaned_up: int = 0                 # incomplete uploads aborted at start
    listing: dict[str, Any] | None = None  # push: full listing or trusted snapshot, and why
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    finished_at: datetime | None = None
    duration_s: float = 0.0

    # -- bookkeeping used by the engine (thread-safe through the caller's lock)
    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(message)

    @property
    def ok(self) -> bool:
        return not self.error_count and not self.refused and not self.cancelled

    @property
    def exit_code(self) -> int:
        if self.refused:
            return SafetyRefusal.exit_code
        if self.error_count or self.cancelled:
            return OperationFailed.exit_code
        return 0

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "direction": self.direction,
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "uploaded": self.uploaded,
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "bytes": self.bytes,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "warnings": list(self.warnings),
            "warning_count": self.warning_count,
            "changed": list(self.changed),
            "replaced": self.replaced,
            "deletions": list(self.deletions),
            "pending": self.pending,
            "local_files": self.local_files,
            "local_bytes": self.local_bytes,
            "remote_objects": self.remote_objects,
            "to_transfer": self.to_transfer,
            "to_transfer_bytes": self.to_transfer_bytes,
            "to_delete": self.to_delete,
            "refused": self.refused,
            "cancelled": self.cancelled,
            "cleaned_up": self.cleaned_up,
            "listing": self.listing,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
        }
        if self.dry_run:
            data["planned"] = list(self.planned)
        return data


# --------------------------------------------------------------------------- sorted streams


@dataclass(frozen=True)
class LocalFile:
    key: str
    size: int
    path: Path


def _spill(names: list[str]) -> Any:
    """Write a sorted run to a temp file (one JSON string per line: names may hold newlines)."""
    fh = tempfile.TemporaryFile("w+", encoding="utf-8")
    for name in names:
        fh.write(json.dumps(name))
        fh.write("\n")
    fh.seek(0)
    return fh


def _read_run(fh) -> Iterator[str]:
    try:
        for line in fh:
            yield json.loads(line)
    finally:
        fh.close()


def external_sorted(items: Iterable[str], chunk: int = SORT_CHUNK) -> Iterator[str]:
    """The strings in sorted order, holding at most `chunk` of them in memory at a time."""
    buf: list[str] = []
    runs = []
    try:
        for item in items:
            buf.append(item)
            if len(buf) >= chunk:
                buf.sort()
                runs.append(_spill(buf))
                buf = []
        buf.sort()
    except BaseException:
        for fh in runs:
            fh.close()
        raise
    if not runs:
        yield from buf
        return
    yield from heapq.merge(*(_read_run(fh) for fh in runs), iter(buf))


def _entry_names(directory: Path, rel: str, warn: Callable[[str], None]) -> Iterator[str]:
    """Names in one directory, directories suffixed with "/", skipping what a sync must not copy."""
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith(TEMP_PREFIX) or (not rel and is_marker(name)):
                    continue
                try:
                    name.encode("utf-8")
                except UnicodeEncodeError:
                    warn(f"skipped {rel}{name.encode('utf-8', 'surrogateescape')!r}: file name is not UTF-8")
                    continue
                try:
                    if entry.is_symlink():
                        warn(f"skipped symbolic link {rel}{name}")
                    elif entry.is_dir(follow_symlinks=False):
                        yield name + "/"
                    elif entry.is_file(follow_symlinks=False):
                        yield name
                    else:
                        warn(f"skipped special file {rel}{name}")
                except OSError as exc:
                    warn(f"skipped {rel}{name}: {exc.strerror}")
    except PermissionError:
        raise OperationFailed(f"volume directory {directory} is not readable by this user") from None


def walk_sorted(root: Path, warn: Callable[[str], None] = lambda m: None, rel: str = "") -> Iterator[LocalFile]:
    """Every regular file under `root` as (key, size), in S3 key order, streamed.

    A directory's names are sorted with a "/" after directory names, which makes the
    depth-first walk come out in the order of the full keys.
    """
    directory = root / rel if rel else root
    for name in external_sorted(_entry_names(directory, rel, warn)):
        if name.endswith("/"):
            yield from walk_sorted(root, warn, rel + name)
            continue
        path = directory / name
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            continue  # deleted while we walked
        except OSError as exc:
            warn(f"skipped {rel}{name}: {exc.strerror}")
            continue
        yield LocalFile(rel + name, st.st_size, path)


def _checked_order(items: Iterable[Any], what: str) -> Iterator[Any]:
    """Pass items through, failing loudly if keys are not strictly increasing.

    The merge is only correct on sorted input; on unsorted input it would plan uploads of
    files that are there and deletions of objects that are needed.
    """
    previous: str | None = None
    for item in items:
        if previous is not None and item.key <= previous:
            raise OperationFailed(f"{what} is not in key order ({previous!r} before {item.key!r}); "
                                  "refusing to plan a sync on it")
        previous = item.key
        yield item


def merge_sorted(local: Iterable[Any], remote: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
    """(local, remote) pairs by key from two sorted streams; the missing side is None."""
    li, ri = iter(local), iter(remote)
    lo, ro = next(li, None), next(ri, None)
    while lo is not None or ro is not None:
        if ro is None or (lo is not None and lo.key < ro.key):
            yield lo, None
            lo = next(li, None)
        elif lo is None or ro.key < lo.key:
            yield None, ro
            ro = next(ri, None)
        else:
            yield lo, ro
            lo, ro = next(li, None), next(ri, None)


class _LocalSpool:
    """The sorted local walk written to a temp file, with every SPLIT_EVERY-th key kept:
    those keys cut the remote listing into ranges that are listed concurrently."""

    def __init__(self, files: Iterable[LocalFile], every: int) -> None:
        self._fh = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.splits: list[str] = []
        count = 0
        for f in files:
            self._fh.write(json.dumps([f.key, f.size, str(f.path)]) + "\n")
            count += 1
            if count % every == 0:
                self.splits.append(f.key)
        self._fh.flush()
        self._fh.seek(0)

    def __iter__(self) -> Iterator[LocalFile]:
        for line in self._fh:
            key, size, path = json.loads(line)
            yield LocalFile(key, size, Path(path))

    def close(self) -> None:
        self._fh.close()


_DONE = object()


def _ranged_listing(store, splits: list[str], workers: int = LIST_WORKERS) -> Iterator[Any]:
    """The store's listing in key order, fetched as disjoint ranges on a few threads.

    Range i holds the keys in (bounds[i], bounds[i+1]]; each is listed with StartAfter and
    stops at its upper bound. The consumer drains the ranges in order; each range buffers
    at most a few pages, so memory stays bounded whatever the bucket holds.
    """
    bounds = [""] + splits
    ranges = [(bounds[i], bounds[i + 1] if i + 1 < len(bounds) else None) for i in range(len(bounds))]
    queues = [queue.Queue(maxsize=4) for _ in ranges]
    stop = threading.Event()

    def put(q: queue.Queue, item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def lister(i: int) -> None:
        lo, hi = ranges[i]
        q = queues[i]
        batch: list[Any] = []
        try:
            if stop.is_set():
                return
            for obj in store.iter_objects(start_after=lo, page_size=SPLIT_EVERY + 16):
                if hi is not None and obj.key > hi:
                    break
                batch.append(obj)
                if len(batch) >= 256:
                    if not put(q, batch):
                        return
                    batch = []
            if (not batch or put(q, batch)):
                put(q, _DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(q, exc)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fovea-list")
    try:
        for i in range(len(ranges)):
            pool.submit(lister, i)
        for q in queues:
            while True:
                item = q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield from item
    finally:
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _listing(store, splits: list[str]) -> Iterator[Any]:
    from fovea_tui.engine.infra.stores import S3Store

    if isinstance(store, S3Store) and splits:
        return _ranged_listing(store, splits)
    return store.iter_objects()


def _remote_objects(store, result: SyncResult, splits: list[str] | None = None,
                    snapshot: Snapshot | None = None) -> Iterator[Any]:
    """The target's objects in key order: listed, or read from a trusted snapshot."""
    for obj in (iter(snapshot) if snapshot is not None else _listing(store, splits or [])):
        if obj.key.endswith("/") or PurePosixPath(obj.key).name.startswith(TEMP_PREFIX) or is_marker(obj.key):
            continue  # "folder" markers made by consoles; stores' own temp files; our listing marker
        result.remote_objects += 1
        yield obj


def safe_destination(root: Path, key: str) -> Path | None:
    """Where `key` lands under `root`, or None when it would land anywhere else.

    Refuses absolute keys, "..", "." and empty segments, NUL and backslashes, and keys
    whose parent directory resolves (through symlinks already in the destination)
    outside the destination.
    """
    if not key or key.startswith("/") or "\x00" in key or "\\" in key:
        return None
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0].endswith(":"):
        return None
    dest = root.joinpath(*parts)
    real_root = root.resolve()
    parent = dest.parent.resolve()
    if parent != real_root and real_root not in parent.parents:
        return None
    if dest.is_symlink():
        return None
    return dest


# --------------------------------------------------------------------------- progress


def _fmt_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def _fmt_rate(rate: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if rate < 1024 or unit == "GiB":
            return f"{rate:.1f} {unit}/s" if unit != "B" else f"{rate:.0f} B/s"
        rate /= 1024
    return ""  # pragma: no cover


class TransferProgress:
    """Aggregates per-file byte callbacks from worker threads into one monotonic stream.

    `done` only grows: it is the completed files' sizes plus the most each in-flight file
    has reported. Events are emitted under a lock, so callers see them in order.
    """

    def __init__(self, phase: str, total_files: int, total_bytes: int,
                 progress: Callable[[ProgressEvent], None], interval: float | None = None) -> None:
        self.phase = phase
        self.total_files = total_files
        self.total_bytes = total_bytes
        self._throttle = Throttle(progress, PROGRESS_INTERVAL if interval is None else interval)
        self._lock = threading.Lock()
        self._completed = 0
        self._inflight: dict[str, int] = {}
        self.files_done = 0
        self._last_done = 0
        self._current = ""
        self.started = time.monotonic()

    def _event(self) -> ProgressEvent:
        done = self._completed + sum(self._inflight.values())
        done = max(done, self._last_done)
        self._last_done = done
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = done / elapsed
        parts = [f"{self.files_done}/{self.total_files} files"]
        if done and elapsed > 0.5:
            parts.append(_fmt_rate(rate))
            if self.total_bytes > done and rate > 0:
                parts.append(f"ETA {_fmt_duration((self.total_bytes - done) / rate)}")
        return ProgressEvent(self.phase, done, self.total_bytes, "bytes", current=self._current,
                             message=", ".join(parts), started_at=self.started)

    def start(self) -> None:
        with self._lock:
            self._throttle(self._event(), force=True)

    def callback(self, key: str) -> Callable[[ProgressEvent], None]:
        def on_event(event: ProgressEvent) -> None:
            with self._lock:
                if event.done > self._inflight.get(key, 0):
                    self._inflight[key] = event.done
                self._current = key
                self._throttle(self._event())
        return on_event

    def finish(self, key: str, size: int, ok: bool) -> None:
        with self._lock:
            partial = self._inflight.pop(key, 0)
            if ok:
                self._completed += size
                self.files_done += 1
            else:
                self._completed += partial  # keep `done` monotonic; the total stays honest
            self._current = key
            self._throttle(self._event())

    def end(self) -> None:
        with self._lock:
            self._throttle(self._event(), force=True)


# --------------------------------------------------------------------------- the plan


@dataclass
class _Plan:
    transfers: Any                     # temp file: JSON lines [key, size, reason]
    deletions: Any                     # temp file: JSON lines key
    transfer_count: int = 0
    transfer_bytes: int = 0
    deletion_count: int = 0

    def add_transfer(self, key: str, size: int, reason: str) -> None:
        self.transfers.write(json.dumps([key, size, reason]) + "\n")
        self.transfer_count += 1
        self.transfer_bytes += size

    def add_deletion(self, key: str) -> None:
        self.deletions.write(json.dumps(key) + "\n")
        self.deletion_count += 1

    def iter_transfers(self) -> Iterator[tuple[str, int, str]]:
        self.transfers.seek(0)
        for line in self.transfers:
            key, size, reason = json.loads(line)
            yield key, size, reason

    def iter_deletions(self) -> Iterator[str]:
        self.deletions.seek(0)
        for line in self.deletions:
            yield json.loads(line)

    def close(self) -> None:
        self.transfers.close()
        self.deletions.close()


def _new_plan() -> _Plan:
    return _Plan(tempfile.TemporaryFile("w+", encoding="utf-8"), tempfile.TemporaryFile("w+", encoding="utf-8"))


class _Scan:
    """Throttled progress for the planning pass (files compared so far; total unknown)."""

    def __init__(self, progress: Callable[[ProgressEvent], None]) -> None:
        self._throttle = Throttle(progress, 0.25)
        self.seen = 0
        self.started = time.monotonic()

    def tick(self, key: str, planned: int) -> None:
        self.seen += 1
        if self.seen & 63 == 1:  # building an event per file would cost more than the merge
            self._throttle(ProgressEvent("scan", self.seen, None, "files", current=key,
                                         message=f"{planned} to transfer", started_at=self.started))

    def end(self, planned: int) -> None:
        self._throttle(ProgressEvent("scan", self.seen, self.seen, "files",
                                     message=f"{planned} to transfer", started_at=self.started), force=True)


def _plan_push(root: Path, store, result: SyncResult, *, replace_changed: bool, mirror_deletes: bool,
               progress: Callable[[ProgressEvent], None], cancel: CancelToken,
               snapshot: Snapshot | None = None, after: SnapshotWriter | None = None) -> _Plan:
    """Merge the local walk with the target's objects (listed, or from `snapshot`) into a plan;
    `after` receives what the target will hold once the plan has been carried out."""
    plan = _new_plan()
    keep = after.add if after is not None else (lambda key, size: None)
    scan = _Scan(progress)
    try:
        spool = _LocalSpool(_checked_order(walk_sorted(root, result.warn), f"local volume {root}"), SPLIT_EVERY)
    except BaseException:
        plan.close()
        raise
    what = f"snapshot {snapshot.path}" if snapshot is not None else f"listing of {store.describe()}"
    remote = _checked_order(_remote_objects(store, result, spool.splits, snapshot), what)
    try:
        for lo, ro in merge_sorted(spool, remote):
            if scan.seen % 256 == 0:
                cancel.check()
            if lo is not None:
                result.local_files += 1
                result.local_bytes += lo.size
            if lo is not None and ro is None:
                plan.add_transfer(lo.key, lo.size, "new")
                keep(lo.key, lo.size)
            elif lo is not None and ro is not None:
                if lo.size == ro.size:
                    result.skipped += 1
                    keep(ro.key, ro.size)
                else:
                    if len(result.changed) < MAX_LISTED:
                        result.changed.append(lo.key)
                    if replace_changed:
                        plan.add_transfer(lo.key, lo.size, "changed")
                    keep(lo.key, lo.size if replace_changed else ro.size)
                    outcome = ("replacing the off-site copy (--replace-changed)" if replace_changed
                               else "not replaced (use --replace-changed to upload it)")
                    result.warn(f"{lo.key} changed locally ({lo.size} bytes, off-site {ro.size}): {outcome}")
            elif ro is not None and mirror_deletes:
                plan.add_deletion(ro.key)
            elif ro is not None:
                keep(ro.key, ro.size)
            scan.tick((lo or ro).key, plan.transfer_count)
        scan.end(plan.transfer_count)
    except BaseException:
        plan.close()
        raise
    finally:
        remote.close()
        spool.close()
    plan.transfers.flush()
    plan.deletions.flush()
    return plan


def _plan_pull(root: Path, store, result: SyncResult, *, replace_changed: bool,
               progress: Callable[[ProgressEvent], None], cancel: CancelToken) -> _Plan:
    plan = _new_plan()
    scan = _Scan(progress)
    local = _checked_order(walk_sorted(root, lambda m: None), f"destination {root}") if root.is_dir() else iter(())
    remote = _checked_order(_remote_objects(store, result), f"listing of {store.describe()}")
    try:
        for lo, ro in merge_sorted(local, remote):
            if scan.seen % 256 == 0:
                cancel.check()
            if lo is not None:
                result.local_files += 1
                result.local_bytes += lo.size
            if ro is None:
                scan.tick(lo.key, plan.transfer_count)
                continue  # a pull never deletes local files
            if safe_destination(root, ro.key) is None:
                result.error(f"refused object key {ro.key!r}: it would be written outside {root}")
            elif lo is None:
                plan.add_transfer(ro.key, ro.size, "new")
            elif lo.size == ro.size:
                result.skipped += 1
            elif replace_changed:
                if len(result.changed) < MAX_LISTED:
                    result.changed.append(ro.key)
                plan.add_transfer(ro.key, ro.size, "changed")
            else:
                if len(result.changed) < MAX_LISTED:
                    result.changed.append(ro.key)
                result.warn(f"{ro.key} differs locally ({lo.size} bytes, off-site {ro.size}): "
                            "not replaced (use --replace-changed to download it)")
            scan.tick(ro.key, plan.transfer_count)
        scan.end(plan.transfer_count)
    except BaseException:
        plan.close()
        raise
    plan.transfers.flush()
    return plan


# --------------------------------------------------------------------------- transfers


def _run_transfers(plan: _Plan, result: SyncResult, do_one: Callable[..., Any], *, phase: str,
                   workers: int, progress: Callable[[ProgressEvent], None], cancel: CancelToken) -> bool:
    """Transfer every planned item on a thread pool. Returns False if the breaker tripped.

    `do_one(key, size, progress=..., cancel=...)` transfers one item and returns its size.
    At most 2*workers items are in flight, so memory stays flat however long the plan is.
    """
    tracker = TransferProgress(phase, plan.transfer_count, plan.transfer_bytes, progress)
    tracker.start()
    lock = threading.Lock()
    state = {"consecutive": 0, "tripped": False, "last": ""}

    def task(key: str, size: int, reason: str) -> None:
        ok = False
        try:
            if state["tripped"]:
                return  # queued before the breaker tripped: left for the next run
            cancel.check()
            sent = do_one(key, size, progress=tracker.callback(key), cancel=cancel)
            ok = True
            with lock:
                result.bytes += sent
                if phase == "upload":
                    result.uploaded += 1
                else:
                    result.downloaded += 1
                if reason == "changed":
                    result.replaced += 1
                state["consecutive"] = 0
        except Cancelled:
            pass
        except FileNotFoundError:
            with lock:
                result.warn(f"{key} vanished before it could be copied")
                result.vanished += 1
        except (FoveaError, OSError, Exception) as exc:  # noqa: BLE001 - one failed file never stops the others
            message = f"{key}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
            with lock:
                result.error(message)
                state["consecutive"] += 1
                state["last"] = str(exc)
                if state["consecutive"] >= BREAKER:
                    state["tripped"] = True
        finally:
            tracker.finish(key, size if ok else 0, ok)

    inflight: set[Future] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fovea-{phase}") as pool:
        for key, size, reason in plan.iter_transfers():
            if cancel.cancelled or state["tripped"]:
                break
            while len(inflight) >= workers * 2:
                _, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            inflight.add(pool.submit(task, key, size, reason))
        if inflight:
            wait(inflight)
    tracker.end()
    result.pending = plan.transfer_count - (result.uploaded + result.downloaded) - result.vanished
    if state["tripped"]:
        result.error(f"stopped after {BREAKER} transfers failed in a row (last: {state['last']}); "
                     f"{result.pending} files left for the next run")
        return False
    return True


# --------------------------------------------------------------------------- the runs


def _check_target(settings: Settings) -> None:
    if not settings.volume.target:
        raise ConfigError("config key volume.target is not set: nowhere to sync the volume to",
                          key="volume.target", hint='set it to "s3://bucket/prefix/" or a directory')
    target = settings.volume.target
    if not target.startswith("s3://"):
        vol = Path(settings.volume.path).resolve()
        tgt = Path(target).resolve()
        if tgt == vol or vol in tgt.parents or tgt in vol.parents:
            raise ConfigError(f"volume.target {target} overlaps volume.path {settings.volume.path}",
                              key="volume.target", hint="use a directory outside the volume")


def _open(settings: Settings, workers: int):
    from fovea_tui.engine.infra.stores import open_store

    target = settings.volume.target
    try:
        if target.startswith("s3://"):
            return open_store(target, settings.s3, key="volume.target", max_concurrency=workers)
        return open_store(target, settings.s3, key="volume.target")
    except ConfigError as exc:
        raise ConfigError(str(exc.message).replace("backups.offsite", "volume.target"),
                          key="volume.target", hint=exc.hint) from None


def _lock(settings: Settings, dry_run: bool):
    import contextlib

    if dry_run:
        return contextlib.nullcontext()
    from fovea_tui.engine.infra.locks import acquire

    return acquire(settings, LOCK_NAME, purpose="sync")


def run_sync(settings: Settings, *, dry_run: bool = False, pull: bool = False, to: str | os.PathLike | None = None,
             replace_changed: bool = False, full_listing: bool = False,
             progress: Callable[[ProgressEvent], None] | None = None,
             cancel: CancelToken | None = None, workers: int = DEFAULT_WORKERS) -> SyncResult:
    """Sync the volume to `volume.target` (or, with pull, back into `volume.path` or `to`).

    A push to S3 reads what the target holds from the snapshot its last run left, when that
    can be trusted (see offsite_listing); `full_listing` makes it list the target anyway.

    Returns the result; a delete-guard refusal is `result.refused` (exit code 3), failed
    files are `result.errors` (exit code 1). Raises ConfigError for a bad configuration,
    SafetyRefusal when the volume is missing and deletions are mirrored, LockHeld when
    another sync runs, and Cancelled (after recording the summary) when cancelled.
    """
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    _check_target(settings)
    if to is not None and not pull:
        raise ConfigError("--to only goes with --pull", key="--to")
    if pull:
        return _pull(settings, Path(to) if to is not None else Path(settings.volume.path), dry_run=dry_run,
                     replace_changed=replace_changed, progress=progress, cancel=cancel, workers=workers)
    return _push(settings, dry_run=dry_run, replace_changed=replace_changed, full_listing=full_listing,
                 progress=progress, cancel=cancel, workers=workers)


def _finish(result: SyncResult, t0: float) -> SyncResult:
    result.finished_at = datetime.now(timezone.utc)
    result.duration_s = time.monotonic() - t0
    return result


def _push(settings: Settings, *, dry_run: bool, replace_changed: bool, full_listing: bool, progress,
          cancel: CancelToken, workers: int) -> SyncResult:
    root = Path(settings.volume.path)
    mirror = settings.volume.delete
    result = SyncResult("push", str(root), settings.volume.target, dry_run=dry_run)
    t0 = time.monotonic()
    if not root.is_dir():
        message = f"volume path {root} does not exist or is not a directory: is it mounted?"
        if mirror:
            raise SafetyRefusal(message, hint="refusing to sync with volume.delete = true; nothing was deleted")
        raise OperationFailed(message)
    with _lock(settings, dry_run):
        store = _open(settings, workers)
        try:
            if not dry_run:
                result.cleaned_up = store.cleanup_incomplete(older_than_s=STALE_UPLOAD_S)
            listing_started = datetime.now(timezone.utc)
            choice = offsite_listing.choose(settings, store, full_listing=full_listing, now=listing_started)
            result.listing = choice.as_dict(listing_started)
            after = SnapshotWriter() if choice.remembers and not dry_run else None
            try:
                plan = _plan_push(root, store, result, replace_changed=replace_changed, mirror_deletes=mirror,
                                  progress=progress, cancel=cancel, snapshot=choice.snapshot, after=after)
            except BaseException:
                if after is not None:
                    after.close()
                raise
        except (SafetyRefusal, Cancelled):
            raise
        except FoveaError as exc:  # the store is unreachable, the listing failed: status must know
            if not dry_run:
                result.error(str(exc))
                write_summary(settings, _finish(result, t0))
            raise
        try:
            result.to_transfer, result.to_transfer_bytes = plan.transfer_count, plan.transfer_bytes
            result.to_delete = plan.deletion_count
            if mirror and plan.deletion_count:
                if result.local_files == 0:
                    result.refused = (f"volume {root} is empty (is it mounted?): refusing to delete "
                                      f"{plan.deletion_count} off-site objects")
                elif plan.deletion_count * 100 > settings.volume.max_delete_percent * result.remote_objects:
                    share = 100 * plan.deletion_count / result.remote_objects
                    result.refused = (f"{plan.deletion_count} of {result.remote_objects} off-site objects "
                                      f"({share:.1f}%) would be deleted, more than volume.max_delete_percent "
                                      f"= {settings.volume.max_delete_percent}%: nothing deleted")
            if result.local_files == 0:
                result.warn(f"volume {root} is empty: is it mounted?")
            if dry_run:
                _list_planned(plan, result, "upload")
                result.deletions = list(itertools.islice(plan.iter_deletions(), MAX_PLANNED))
                result.to_delete = plan.deletion_count
                return _finish(result, t0)
            changes = plan.transfer_count or (plan.deletion_count and not result.refused)
            if changes:
                offsite_listing.discard(settings)  # stopped half-way, the next run must list
            with _recorded(settings, result, t0, cancel):
                reachable = _run_transfers(plan, result, _uploader(store, root), phase="upload",
                                           workers=workers, progress=progress, cancel=cancel)
                if mirror and plan.deletion_count and not result.refused and reachable and not cancel.cancelled:
                    _delete(plan, store, result, progress, cancel)
                if after is not None and (changes or choice.snapshot is None):
                    _remember(settings, store, result, after, plan, cancel,
                              listed_at=choice.last_full_listing(listing_started))
            return result
        finally:
            plan.close()
            if after is not None:
                after.close()


def _remember(settings: Settings, store, result: SyncResult, after: SnapshotWriter, plan: _Plan,
              cancel: CancelToken, *, listed_at: datetime) -> None:
    """Keep what the target now holds, so the next push can skip listing it; only after a run
    that did everything it planned (otherwise the next run lists in full)."""
    done = (not result.error_count and not result.refused and not cancel.cancelled and not result.pending
            and not result.vanished
            and result.deleted == (plan.deletion_count if settings.volume.delete else 0))
    if not done:
        return
    try:
        after.commit(settings, store, listed_at=listed_at, now=datetime.now(timezone.utc))
    except (OSError, FoveaError) as exc:
        result.warn(f"could not record what {settings.volume.target} holds ({exc}): the next sync lists it in full")


def _list_planned(plan: _Plan, result: SyncResult, action: str) -> None:
    """A dry run's answer: the first MAX_PLANNED transfers (`action` is upload or download)."""
    for key, size, reason in itertools.islice(plan.iter_transfers(), MAX_PLANNED):
        result.planned.append({"key": key, "size": size, "action": action, "reason": reason})
    result.pending = plan.transfer_count


@contextlib.contextmanager
def _recorded(settings: Settings, result: SyncResult, t0: float, cancel: CancelToken) -> Iterator[None]:
    """Around a sync's transfers: however they end, the result is finished and written as the
    last sync; then, if they were cancelled, Cancelled is raised."""
    try:
        yield
    finally:
        result.cancelled = cancel.cancelled
        _finish(result, t0)
        write_summary(settings, result)
    if result.cancelled:
        raise Cancelled(cancel.reason)


def _uploader(store, root: Path):
    from fovea_tui.engine.infra.stores import MULTIPART_THRESHOLD

    # A multipart upload runs its own part threads: let only LARGE_PARALLEL of them run at
    # once, so the connection pool (sized for the workers) is never oversubscribed.
    gate = threading.Semaphore(LARGE_PARALLEL)

    def upload(key: str, size: int, *, progress, cancel) -> int:
        if size >= MULTIPART_THRESHOLD:
            with gate:
                cancel.check()
                return store.put_file(root / key, key, progress=progress, cancel=cancel).size
        return store.put_file(root / key, key, progress=progress, cancel=cancel).size
    return upload


def _delete(plan: _Plan, store, result: SyncResult, progress, cancel: CancelToken) -> None:
    total = plan.deletion_count
    throttle = Throttle(progress, 0.1)
    started = time.monotonic()
    batch: list[str] = []

    def flush() -> None:
        try:
            store.delete_many(batch)
        except FoveaError as exc:
            result.error(f"deleting {len(batch)} off-site objects: {exc}")
        else:
            result.deleted += len(batch)
            for key in batch:
                if len(result.deletions) < MAX_LISTED:
                    result.deletions.append(key)
        throttle(ProgressEvent("delete", result.deleted, total, "files", current=batch[-1],
                               message=f"{result.deleted}/{total} deleted", started_at=started), force=True)
        batch.clear()

    for key in plan.iter_deletions():
        cancel.check()
        batch.append(key)
        if len(batch) >= 1000:
            flush()
    if batch:
        flush()


def _pull(settings: Settings, root: Path, *, dry_run: bool, replace_changed: bool, progress,
          cancel: CancelToken, workers: int) -> SyncResult:
    result = SyncResult("pull", settings.volume.target, str(root), dry_run=dry_run)
    t0 = time.monotonic()
    if root.exists() and not root.is_dir():
        raise OperationFailed(f"pull destination {root} is not a directory")
    with _lock(settings, dry_run):
        store = _open(settings, workers)
        plan = _plan_pull(root, store, result, replace_changed=replace_changed, progress=progress, cancel=cancel)
        try:
            result.to_transfer, result.to_transfer_bytes = plan.transfer_count, plan.transfer_bytes
            if dry_run:
                _list_planned(plan, result, "download")
                return _finish(result, t0)
            looks = FileLooks.of(root)  # before anything is pulled into it
            ensure_private_dir(root)
            with _recorded(settings, result, t0, cancel):
                _run_transfers(plan, result, _downloader(store, root, looks), phase="download", workers=workers,
                               progress=progress, cancel=cancel)
            return result
        finally:
            plan.close()


@dataclass(frozen=True)
class FileLooks:
    """The mode and owner pulled files and directories get: those of the destination's own
    files and of its root directory, so the Fovea backend reads a pulled video as it reads
    the others. A destination fovea-tui creates itself, or one without a file yet, keeps
    what fovea-tui writes: files 0600, directories 0700, owned by whoever runs it."""

    file_mode: int = 0o600
    file_owner: tuple[int, int] | None = None
    dir_mode: int = 0o700
    dir_owner: tuple[int, int] | None = None

    @classmethod
    def of(cls, root: Path, look_at: int = 10_000) -> "FileLooks":
        try:
            st = root.stat()
        except FileNotFoundError:
            return cls()
        looks = cls(dir_mode=stat.S_IMODE(st.st_mode), dir_owner=(st.st_uid, st.st_gid))
        todo, seen = [root], 0
        while todo and seen < look_at:  # breadth first: the volume's own top-level files come first
            try:
                with os.scandir(todo.pop(0)) as entries:
                    for entry in entries:
                        seen += 1
                        if entry.name.startswith("."):
                            continue
                        if entry.is_file(follow_symlinks=False):
                            f = entry.stat(follow_symlinks=False)
                            return cls(stat.S_IMODE(f.st_mode) & 0o777, (f.st_uid, f.st_gid),
                                       looks.dir_mode, looks.dir_owner)
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(Path(entry.path))
            except OSError:
                continue
        return looks

    def make_dirs(self, root: Path, directory: Path) -> None:
        """Create the missing directories from `root` down to `directory`, each with the look."""
        missing = []
        probe = directory
        while probe != root and not probe.exists():
            missing.append(probe)
            probe = probe.parent
        for path in reversed(missing):
            try:
                path.mkdir(mode=0o700)
            except FileExistsError:
                continue
            self._apply(path, self.dir_mode, self.dir_owner)

    def apply_file(self, path: Path) -> None:
        self._apply(path, self.file_mode, self.file_owner)

    @staticmethod
    def _apply(path: Path, mode: int, owner: tuple[int, int] | None) -> None:
        if owner is not None and owner != (os.geteuid(), os.getegid()):
            try:
                os.chown(path, *owner)
            except PermissionError:
                pass  # not root: it stays ours, with the mode of the others
        os.chmod(path, mode)  # after chown, which clears set-id bits


def _downloader(store, root: Path, looks: FileLooks):
    def download(key: str, size: int, *, progress, cancel) -> int:
        dest = safe_destination(root, key)  # again: a symlink may have appeared since planning
        if dest is None:
            raise OperationFailed(f"refused object key {key!r}: it would be written outside {root}")
        looks.make_dirs(root, dest.parent)
        if safe_destination(root, key) is None:
            raise OperationFailed(f"refused object key {key!r}: it would be written outside {root}")
        store.get_file(key, dest, progress=progress, cancel=cancel)
        looks.apply_file(dest)
        return dest.stat().st_size
    return download


# --------------------------------------------------------------------------- summary and status


def _summary_path(settings: Settings, direction: str = "push") -> Path:
    return settings.state_dir / (SUMMARY_FILE if direction == "push" else PULL_SUMMARY_FILE)


def write_summary(settings: Settings, result: SyncResult) -> Path | None:
    """Record the run for `status` and the dashboard (atomically; a failure here is not fatal)."""
    path = _summary_path(settings, result.direction)
    data = {
        "time": (result.finished_at or datetime.now(timezone.utc)).isoformat(),
        "started_at": result.started_at.isoformat(),
        "duration_s": round(result.duration_s, 3),
        "direction": result.direction,
        "source": result.source,
        "target": result.target,
        "uploaded": result.uploaded,
        "downloaded": result.downloaded,
        "skipped": result.skipped,
        "deleted": result.deleted,
        "bytes": result.bytes,
        "errors": result.errors[:20],
        "error_count": result.error_count,
        "warning_count": result.warning_count,
        "changed": len(result.changed),
        "pending": result.pending,
        "local_files": result.local_files,
        "remote_objects": result.remote_objects,
        "refused": result.refused,
        "cancelled": result.cancelled,
        "listing": result.listing,
        # the last run that copied everything it planned (status ages the backup by it)
        "last_ok": None,
    }
    clean = not result.error_count and not result.cancelled
    data["last_ok"] = data["time"] if clean else (read_summary(settings, result.direction) or {}).get("last_ok")
    try:
        ensure_private_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as fh:
            fh.write(json.dumps(data, indent=2))
        os.replace(tmp, path)
        return path
    except (OSError, FoveaError):
        return None


def read_summary(settings: Settings, direction: str = "push") -> dict[str, Any] | None:
    try:
        return json.loads(_summary_path(settings, direction).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _age_text(seconds: float) -> str:
    now = datetime.now(timezone.utc)
    return ago(now - timedelta(seconds=seconds), now)


def volume_sync_summary(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The `sync` section of status: last run, its age, files pending, and alerts.

    `alerts` is a list of {"subject", "level", "message"} for collect_status to raise.
    """
    now = now or datetime.now(timezone.utc)
    target = settings.volume.target or None
    last = read_summary(settings)
    section: dict[str, Any] = {"ok": True, "target": target, "last": None, "age_s": None, "pending": None,
                               "error_count": 0, "alerts": []}
    alerts = section["alerts"]
    if last is None:
        if target:
            section["summary"] = f"never synced to {target}"
            alerts.append({"subject": "sync", "level": "critical", "message": f"volume never synced to {target}"})
        else:
            section["summary"] = "no volume.target configured"
        return section
    run_age = (now - datetime.fromisoformat(last["time"])).total_seconds()
    ok_time = last.get("last_ok", last["time"])  # files written before last_ok existed: the run itself
    age = (now - datetime.fromisoformat(ok_time)).total_seconds() if ok_time else None
    section.update({
        "last": ok_time, "age_s": round(age, 1) if age is not None else None,
        "last_run": last["time"], "last_run_age_s": round(run_age, 1), "pending": last.get("pending", 0),
        "error_count": last.get("error_count", len(last.get("errors", []))),
        "uploaded": last.get("uploaded", 0), "skipped": last.get("skipped", 0),
        "deleted": last.get("deleted", 0), "bytes": last.get("bytes", 0),
        "changed": last.get("changed", 0), "refused": last.get("refused"),
        "cancelled": last.get("cancelled", False), "last_target": last.get("target"),
        "listing": last.get("listing"),
    })
    text = (f"last synced {_age_text(age)} to {last.get('target')}" if age is not None
            else f"no complete sync to {last.get('target')} yet")
    if ok_time != last["time"]:
        text += f"; last run {_age_text(run_age)} " + ("was interrupted" if section["cancelled"] else "failed")
    if section["pending"]:
        text += f", {section['pending']} files pending"
    section["summary"] = text
    if section["error_count"]:
        alerts.append({"subject": "sync", "level": "warning",
                       "message": f"last volume sync had {section['error_count']} errors"
                                  f"{', ' + str(section['pending']) + ' files pending' if section['pending'] else ''}"})
    if section["refused"]:
        alerts.append({"subject": "sync", "level": "warning", "message": f"last volume sync refused deletions: {section['refused']}"})
    elif section["cancelled"]:
        alerts.append({"subject": "sync", "level": "warning", "message": f"last volume sync was interrupted; "
                                                      f"{section['pending']} files pending"})
    if section["changed"]:
        alerts.append({"subject": "sync", "level": "warning", "message": f"{section['changed']} video files changed locally "
                                                      "but were not replaced off-site"})
    if target and age is None:
        alerts.append({"subject": "sync", "level": "critical", "message": f"volume never synced completely to {target}"})
    elif target and age > STALE_SYNC_DAYS * 86400:
        alerts.append({"subject": "sync", "level": "warning", "message": f"volume last synced {_age_text(age)}"})
    if target and last.get("target") and last.get("target") != target:
        alerts.append({"subject": "sync", "level": "warning", "message": f"volume never synced to the configured target {target}"})
    return section
