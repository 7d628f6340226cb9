"""What a volume sync will do: two key-sorted streams merged into a plan.

The local walk and the remote listing are two streams sorted by key (S3 lists in UTF-8
byte order, which is Python's `str` order), merged like the two halves of a merge sort.
Nothing holds the whole volume in memory: a directory with more names than `SORT_CHUNK`
is sorted in runs spilled to temporary files, and the plan (what to transfer, what to
delete) is spooled to temporary files too, so its totals are known before the first byte
moves. A long remote listing is read in key ranges at once when the store can list from
a key (`Store.lists_from_key`).
"""

from __future__ import annotations

import heapq
import json
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from fovea_tui.engine.infra.stores import TEMP_PREFIX
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle
from fovea_tui.engine.volume.listing import Snapshot, SnapshotWriter, is_marker
from fovea_tui.engine.volume.result import MAX_LISTED, SyncResult
from fovea_tui.errors import OperationFailed

SPLIT_EVERY = 1000           # local keys per remote listing range (one full S3 page)
LIST_WORKERS = 8             # remote listing ranges fetched at once
SORT_CHUNK = 20_000          # names sorted in memory per run before spilling to a temp file


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


def _checked_order(items: Iterable[Any], what: str) -> Generator[Any, None, None]:
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
    queues: list[queue.Queue[Any]] = [queue.Queue(maxsize=4) for _ in ranges]
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
    if store.lists_from_key and splits:
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


def _destination_error(root: Path, key: str) -> str | None:
    """Why `key` cannot be pulled under `root` (one error of the run), or None."""
    try:
        if safe_destination(root, key) is None:
            return f"refused object key {key!r}: it would be written outside {root}"
    except OSError as exc:  # ENAMETOOLONG: a key this file system cannot hold; the rest is pulled
        return f"{key}: cannot be written under {root}: {exc.strerror or exc}"
    return None


# --------------------------------------------------------------------------- the plan


@dataclass
class Plan:
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


def _new_plan() -> Plan:
    return Plan(tempfile.TemporaryFile("w+", encoding="utf-8"), tempfile.TemporaryFile("w+", encoding="utf-8"))


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


def plan_push(root: Path, store, result: SyncResult, *, replace_changed: bool, mirror_deletes: bool,
               progress: Callable[[ProgressEvent], None], cancel: CancelToken,
               snapshot: Snapshot | None = None, after: SnapshotWriter | None = None,
               local: Iterable[Any] | None = None) -> Plan:
    """Merge the local walk (or `local`: any sorted stream of key and size, such as the app's
    bucket) with the target's objects (listed, or from `snapshot`) into a plan; `after`
    receives what the target will hold once the plan has been carried out."""
    plan = _new_plan()
    keep = after.add if after is not None else (lambda key, size: None)
    scan = _Scan(progress)
    try:
        items = walk_sorted(root, result.warn) if local is None else local
        spool = _LocalSpool(_checked_order(items, f"videos in {result.source}"), SPLIT_EVERY)
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


def plan_pull(root: Path, store, result: SyncResult, *, replace_changed: bool,
               progress: Callable[[ProgressEvent], None], cancel: CancelToken,
               destination: Iterable[Any] | None = None) -> Plan:
    """What to download into `root`, or with `destination` (the sorted objects of the app's
    bucket) what to copy into that bucket, where any key is a safe one."""
    plan = _new_plan()
    scan = _Scan(progress)
    local: Iterator[Any]
    if destination is not None:
        local = _checked_order(destination, f"destination {result.target}")
    else:
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
            refused = _destination_error(root, ro.key) if destination is None else None
            if refused is not None:
                result.error(refused)
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
