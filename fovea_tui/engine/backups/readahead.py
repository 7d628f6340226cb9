"""Pre-flight's read of a dump, begun in a child process as soon as the CLI knows which dump a
restore takes: the read (inflate, hash, the videos scan) runs on another core while the CLI
imports the engine and forks the runner, whose pre-flight then takes the answer instead of
reading the file again. On a small dump that read and those imports are most of what a restore
adds to the runbook's `gunzip | psql`.

The answer is taken only by the process that began the read or a fork of it (the runner keeps
the pipe's descriptor, `descriptors()`), only for the same file: same path, device, inode, size,
mtime and ctime (a write changes the ctime, which no tool can set back). Anything else (no
read-ahead, another file, a child that died or was killed, a broken answer) is None, and
pre-flight reads the dump itself, as it always did.
"""

from __future__ import annotations

import functools
import os
import pickle
import select
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fovea_tui.engine.backups.dumpscan import DumpScanner
from fovea_tui.engine.backups.verify import DumpRead, read_dump
from fovea_tui.engine.infra.files import identity
from fovea_tui.engine.infra.jobs import close_descriptors, in_background
from fovea_tui.engine.progress import CancelToken

PROGRESS_EVERY_S = 0.2
_HEADER = struct.Struct("!cQ")  # kind, value: b"p" and the bytes read so far, or b"r" and the answer's length


@dataclass
class _Pending:
    path: Path
    identity: tuple[int, ...]
    pid: int
    fd: int


_pending: _Pending | None = None  # begun by this process (or the process this one is a fork of)


def begin(path: Path) -> bool:
    """Start reading `path` in a child process; False when it is not started (a process with
    threads must not fork, or one is already pending)."""
    global _pending
    if _pending is not None or threading.active_count() != 1:
        return False
    path = path.resolve()
    seen = identity(path)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        _pending = _Pending(path, seen, pid, read_end)
        return True
    code = 1
    try:
        os.setsid()  # like the runner it feeds: a terminal's Ctrl-C or hang-up is not for it
        devnull = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):  # never holding the CLI's terminal or pipes open
            os.dup2(devnull, std)
        close_descriptors(keep=(write_end,))
        _read_into(path, write_end)
        code = 0
    finally:
        os._exit(code)  # never the CLI's atexit handlers, buffers or finally blocks


def _read_into(path: Path, fd: int) -> None:
    """The child: the dump read as pre-flight reads it, progress frames, then the answer. When
    nobody will take it (every read end closed), the next frame fails (EPIPE) and it ends."""
    last = [0.0]

    def progress(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PROGRESS_EVERY_S:
            last[0] = now
            _write_all(fd, _HEADER.pack(b"p", done))

    answer = pickle.dumps(read_dump(path, on_progress=progress, inspector=DumpScanner()))
    _write_all(fd, _HEADER.pack(b"r", len(answer)) + answer)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def descriptors() -> tuple[int, ...]:
    """What a forked runner must keep open to take the answer."""
    return (_pending.fd,) if _pending is not None else ()


def release() -> None:
    """This process will not take the answer (its runner does, or nobody: the restore was
    refused before a runner started): close its end, so a child nobody reads from ends, and
    collect the child when it does. The child is never signalled: once it has ended, its pid
    may be another process's."""
    global _pending
    pending, _pending = _pending, None
    if pending is None:
        return
    os.close(pending.fd)
    in_background(functools.partial(_reap, pending.pid))


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def take(path: Path, *, cancel: CancelToken | None = None,
         on_progress: Callable[[int], None] | None = None) -> DumpRead | None:
    """The read of `path` begun ahead, once it is done; None when there is none for this file
    (the caller then reads it itself)."""
    global _pending
    pending, _pending = _pending, None
    if pending is None:
        return None
    try:
        if path.resolve() != pending.path or identity(pending.path) != pending.identity:
            return None
        answer = _receive(pending.fd, cancel, on_progress)
        if answer is None or identity(pending.path) != pending.identity:
            return None  # changed while it was read: the caller reads what is there now
        return answer
    except OSError:
        return None
    finally:
        os.close(pending.fd)  # a child still reading ends at its next frame


def _receive(fd: int, cancel: CancelToken | None, on_progress: Callable[[int], None] | None) -> DumpRead | None:
    buf = bytearray()
    while True:
        if cancel is not None:
            cancel.check()
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return None  # the child ended without an answer: killed, or the read failed
        buf += chunk
        while len(buf) >= _HEADER.size:
            kind, value = _HEADER.unpack_from(buf)
            if kind == b"p":
                del buf[:_HEADER.size]
                if on_progress is not None:
                    on_progress(value)
                continue
            if kind != b"r":
                return None
            if len(buf) < _HEADER.size + value:
                break
            answer = pickle.loads(buf[_HEADER.size:_HEADER.size + value])
            return answer if isinstance(answer, tuple) and len(answer) == 4 else None
