"""Named locks shared by cron runs, a terminal session and the TUI's workers.

`with acquire(settings, "backups", purpose="backup") as lock:` takes an exclusive
`fcntl.flock` on `<state_dir>/<name>.lock`. The file holds JSON naming the holder
(`pid`, `host`, `purpose`, `started_at`) so a second caller's `LockHeld` (exit 3) can say
who has it. flock belongs to the open file: when the holder dies, however it dies, the
kernel releases the lock, so a stale lock never needs breaking by hand.

Within one thread the lock is re-entrant: restore holds "backups" and then calls the
backup engine for its safety dump, which takes "backups" again. Another thread of the
same process (a second TUI worker) is refused like another process would be.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.infra.files import WRITABLE_HINT, ensure_private_dir  # noqa: F401 - callers find it here
from fovea_tui.errors import LockHeld, OperationFailed, SafetyRefusal

_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_held = threading.local()


@dataclass(frozen=True)
class LockInfo:
    """Who holds (or held) a lock, as written in its file."""

    name: str
    pid: int | None
    host: str
    purpose: str
    started_at: str

    def describe(self) -> str:
        who = self.purpose or "another fovea-tui operation"
        where = f"pid {self.pid}" if self.pid else "unknown pid"
        if self.host and self.host != socket.gethostname():
            where += f" on {self.host}"
        since = f", started {self.started_at}" if self.started_at else ""
        return f"{who} ({where}{since})"

    def as_dict(self) -> dict:
        return {"name": self.name, "pid": self.pid, "host": self.host, "purpose": self.purpose,
                "started_at": self.started_at}


@dataclass
class Lock:
    """A held lock; `info` is what other callers see."""

    name: str
    path: Path
    info: LockInfo
    fd: int
    depth: int = 1


def check_not_world_writable(path: Path, what: str = "backups directory") -> None:
    """Refuse (exit 3) a directory any user may write to without the sticky bit."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        raise SafetyRefusal(
            f"{what} {path} is writable by every user (mode {stat.S_IMODE(mode):04o}): "
            "anyone could replace a dump there",
            hint=f"chmod o-w {path}",
        )


def lock_path(settings: Settings, name: str) -> Path:
    if not _NAME.fullmatch(name):
        raise ValueError(f"bad lock name {name!r}")
    return settings.state_dir / f"{name}.lock"


def _read_info(name: str, fd: int) -> LockInfo:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096)
        data = json.loads(raw.decode("utf-8")) if raw.strip() else {}
        if not isinstance(data, dict):
            data = {}
    except (OSError, ValueError):
        data = {}
    pid = data.get("pid")
    return LockInfo(name=name, pid=pid if isinstance(pid, int) else None, host=str(data.get("host", "")),
                    purpose=str(data.get("purpose", "")), started_at=str(data.get("started_at", "")))


@contextlib.contextmanager
def open_if_held(path: Path) -> Iterator[int | None]:
    """For the block: a read-only fd on the lock file `path` while someone holds its lock
    (its holder info can be read from it), None when the file is missing or the lock is free."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        yield None
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            held = False
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            held = True
        if not held:
            fcntl.flock(fd, fcntl.LOCK_UN)
        yield fd if held else None
    finally:
        os.close(fd)


def holder(settings: Settings, name: str) -> LockInfo | None:
    """Who holds lock `name` right now, or None when it is free (for dashboards)."""
    with open_if_held(lock_path(settings, name)) as fd:
        return None if fd is None else _read_info(name, fd)


@contextlib.contextmanager
def acquire(settings: Settings, name: str, *, purpose: str, wait: float = 0.0) -> Iterator[Lock]:
    """Hold lock `name` for the block; `LockHeld` (exit 3) naming the holder if taken.

    `wait` seconds are spent retrying before giving up (0: fail at once).
    """
    held: dict[str, Lock] = getattr(_held, "locks", None) or {}
    _held.locks = held
    if name in held:
        held[name].depth += 1
        try:
            yield held[name]
        finally:
            held[name].depth -= 1
        return

    path = lock_path(settings, name)
    ensure_private_dir(path.parent)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:  # EROFS, EACCES, ENOSPC: one line, not a traceback
        raise OperationFailed(f"cannot take the {name} lock {path}: {exc.strerror or exc}",
                              hint=WRITABLE_HINT) from None
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                if time.monotonic() >= deadline:
                    info = _read_info(name, fd)
                    raise LockHeld(
                        f"{name} lock is held by {info.describe()}",
                        hint="wait for it to finish; a lock of a process that died is released by itself",
                    ) from None
                time.sleep(0.1)
        info = LockInfo(name=name, pid=os.getpid(), host=socket.gethostname(), purpose=purpose,
                        started_at=datetime.now(UTC).isoformat(timespec="seconds"))
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info.as_dict()) + "\n").encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    lock = Lock(name=name, path=path, info=info, fd=fd)
    held[name] = lock
    try:
        yield lock
    finally:
        del held[name]
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
