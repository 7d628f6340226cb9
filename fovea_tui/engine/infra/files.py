"""Files that are either whole or absent: one atomic write for every state, report and config file.

A crash (kill -9, power loss) at any point leaves the old file or the new one, never a torn
one: the data goes to a temp name beside the target (unique per process and thread, so
concurrent writers never share it), created with `mode` from the first byte, fsynced,
renamed over the target, and the directory fsynced so the rename itself survives.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from fovea_tui.errors import OperationFailed


def identity(path: Path) -> tuple[int, ...]:
    """What changes whenever a file's bytes may have: device, inode, size, mtime and ctime (a
    write sets the ctime, which no one can set back, so a rewrite that restores the size and
    the mtime still shows)."""
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def unchanged(path: Path, seen, since: str) -> None:
    """`path` is still the file whose `identity` was `seen` (a dump that was checked, then
    loaded): OperationFailed when it was written or replaced `since`."""
    try:
        now = identity(path)
    except OSError as exc:
        raise OperationFailed(f"{path.name} is gone since {since} ({exc.strerror or exc}): what was checked "
                              "cannot be used") from None
    if list(now) != list(seen):
        raise OperationFailed(f"{path.name} changed since {since} (written or replaced): what would be used is not "
                              "what was checked; run it again once nothing writes to it")


def fsync_dir(directory: Path) -> None:
    """Make the directory's entries (a rename, a new file) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    """Write `data` (str as UTF-8) to `path`: temp file in the same directory, fsync, rename,
    fsync the directory. The file has exactly `mode`, whatever the umask."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def writable_hint(key: str) -> str:
    """What to do when the directory behind config key `key` cannot be created or written."""
    return f"{key} must be writable by this user: is it mounted read-only, or owned by another user?"


WRITABLE_HINT = writable_hint("backups.dir")


def ensure_private_dir(path: Path, key: str = "backups.dir") -> Path:
    """Create `path` (and missing parents) as 0700 directories; leave existing ones be.
    `key` is the config key the path comes from, named in the error."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OperationFailed(f"cannot create the directory {directory}: {exc.strerror or exc}",
                                  hint=writable_hint(key)) from None
        os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask
    if not path.is_dir():
        raise OperationFailed(f"{path} exists and is not a directory", hint=f"set {key} to a directory")
    return path
