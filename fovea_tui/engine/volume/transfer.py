"""Carrying out a volume sync's plan: uploads, downloads and deletions on a thread pool.

Each transfer goes through `Store.put_file` / `Store.get_file`, which make an object
visible only once complete and verify size and sha256; one failed file never stops the
others, and BREAKER failures in a row (the store is gone) stop the run. Progress from
the worker threads is folded into one monotonic stream with a rate and an ETA.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fovea_tui import formatting
from fovea_tui.engine.infra.stores import MULTIPART_THRESHOLD
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle
from fovea_tui.engine.volume.plan import Plan, safe_destination
from fovea_tui.engine.volume.result import MAX_LISTED, SyncResult
from fovea_tui.errors import Cancelled, FoveaError, OperationFailed
from fovea_tui.formatting import plural

LARGE_PARALLEL = 1           # multipart transfers at once (each runs `workers` part threads)
BREAKER = 8                  # consecutive failed transfers with no success: the store is gone
PROGRESS_INTERVAL = 0.1      # seconds between progress events (plus the first and the last)


# --------------------------------------------------------------------------- progress


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
        parts = [f"{self.files_done}/{plural(self.total_files, 'file')}"]
        if done and elapsed > 0.5:
            parts.append(formatting.rate(rate))
            if self.total_bytes > done and rate > 0:
                parts.append(f"ETA {formatting.eta((self.total_bytes - done) / rate)}")
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


# --------------------------------------------------------------------------- transfers


@dataclass
class _Breaker:
    """Consecutive failures across the pool; guarded by the caller's lock."""

    consecutive: int = 0
    tripped: bool = False
    last: str = ""


def run_transfers(plan: Plan, result: SyncResult, do_one: Callable[..., Any], *, phase: str,
                   workers: int, progress: Callable[[ProgressEvent], None], cancel: CancelToken) -> bool:
    """Transfer every planned item on a thread pool. Returns False if the breaker tripped.

    `do_one(key, size, progress=..., cancel=...)` transfers one item and returns its size.
    At most 2*workers items are in flight, so memory stays flat however long the plan is.
    """
    tracker = TransferProgress(phase, plan.transfer_count, plan.transfer_bytes, progress)
    tracker.start()
    lock = threading.Lock()
    state = _Breaker()

    def task(key: str, size: int, reason: str) -> None:
        ok = False
        try:
            if state.tripped:
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
                state.consecutive = 0
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
                state.consecutive += 1
                state.last = str(exc)
                if state.consecutive >= BREAKER:
                    state.tripped = True
        finally:
            tracker.finish(key, size if ok else 0, ok)

    inflight: set[Future] = set()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"fovea-{phase}") as pool:
        for key, size, reason in plan.iter_transfers():
            if cancel.cancelled or state.tripped:
                break
            while len(inflight) >= workers * 2:
                _, inflight = wait(inflight, return_when=FIRST_COMPLETED)
            inflight.add(pool.submit(task, key, size, reason))
        if inflight:
            wait(inflight)
    tracker.end()
    result.pending = plan.transfer_count - (result.uploaded + result.downloaded) - result.vanished
    if state.tripped:
        result.error(f"stopped after {BREAKER} transfers failed in a row (last: {state.last}); "
                     f"{plural(result.pending, 'file')} left for the next run")
        return False
    return True


def uploader(store, root: Path):
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
    def of(cls, root: Path, look_at: int = 10_000) -> FileLooks:
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


def downloader(store, root: Path, looks: FileLooks):
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


def delete_planned(plan: Plan, store, result: SyncResult, progress, cancel: CancelToken) -> None:
    total = plan.deletion_count
    throttle = Throttle(progress, 0.1)
    started = time.monotonic()
    batch: list[str] = []

    def flush() -> None:
        try:
            store.delete_many(batch)
        except FoveaError as exc:
            result.error(f"deleting {plural(len(batch), 'off-site object')}: {exc}")
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
