"""Where fovea-tui writes: `backups.dir` and the directory targets `backups.offsite` and
`volume.target`, checked before they are saved and prepared before they are used.

A directory target is created 0700 the first time a run uses it, the way `backups.dir` is.
Once used, a target that has gone is refused, never made again: an empty directory on the
root disk must not stand in for a backup disk that is not mounted. Setup asks the same
questions (`check_location`) before it saves; the faces only show the verdicts.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.infra.files import ensure_private_dir, writable_hint, write_atomic
from fovea_tui.errors import OperationFailed

KNOWN_FILE = "targets.json"  # in the state dir: directory targets runs have used
DIRECTORY_KEYS = ("backups.dir", "backups.offsite", "volume.target")
# S3's bucket naming rules (MinIO and the others follow them): the shape only.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
DEFAULT_BACKUPS_DIR = Path("/var/backups")


@dataclass(frozen=True)
class LocationCheck:
    """The verdict on one location key: `ok`, and one line that says why."""

    key: str
    value: str
    ok: bool
    verdict: str


def check_location(key: str, value: str) -> LocationCheck:
    """Can fovea-tui write where `key` points? A directory is probed (created and removed
    again, nothing is left); an S3 URL is checked for its shape only, nothing is contacted."""
    value = value.strip()

    def verdict(ok: bool, text: str) -> LocationCheck:
        return LocationCheck(key, value, ok, text)

    if not value:
        if key == "backups.dir":
            return verdict(False, "empty: the local backups need a directory")
        return verdict(True, "empty: " + ("no off-site copy of the backups" if key == "backups.offsite"
                                          else "the videos are not copied anywhere"))
    if key != "backups.dir" and value.startswith("s3://"):
        return _check_s3_shape(key, value)
    if "://" in value:
        return verdict(False, "not a directory or an s3://bucket/prefix/ URL")
    if not os.path.isabs(value):
        return verdict(False, "a relative path: give an absolute one (cron starts elsewhere)")
    ok, text = _probe_directory(Path(value))
    return verdict(ok, text)


def check_locations(settings: Settings) -> list[LocationCheck]:
    """The three location keys of `settings`, and the target not overlapping the volume."""
    checks = [check_location(key, value) for key, value in (
        ("backups.dir", settings.backups.dir), ("backups.offsite", settings.backups.offsite),
        ("volume.target", settings.volume.target))]
    target = settings.volume.target.strip()
    if target and not target.startswith("s3://") and overlaps(target, settings.volume.path):
        checks[2] = LocationCheck("volume.target", target, False,
                                  f"overlaps volume.path {settings.volume.path}: use a directory outside the volume")
    return checks


def overlaps(target: str, volume_path: str) -> bool:
    """A directory target inside the volume, or holding it (a sync would copy into itself)."""
    vol, tgt = Path(volume_path).resolve(), Path(target).resolve()
    return tgt == vol or vol in tgt.parents or tgt in vol.parents


def suggest_backups_dir(project: str) -> str:
    """Beside other backups on this host, named after the compose project."""
    name = re.sub(r"[^A-Za-z0-9._-]", "-", project.strip()).lstrip(".") or "fovea"
    return str(DEFAULT_BACKUPS_DIR / name)


def _check_s3_shape(key: str, value: str) -> LocationCheck:
    bucket, _, prefix = value[len("s3://"):].partition("/")
    if not bucket:
        return LocationCheck(key, value, False, "names no bucket: s3://bucket/prefix/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        return LocationCheck(key, value, False, f"{bucket!r} is not a bucket name (3-63 of a-z 0-9 . -)")
    if "//" in prefix:
        return LocationCheck(key, value, False, "the prefix holds an empty part (//)")
    where = f"prefix {prefix}" if prefix else "the whole bucket"
    return LocationCheck(key, value, True, f"S3 bucket {bucket}, {where} (shape checked; the store is "
                                           "contacted at the first run)")


def _probe_directory(path: Path) -> tuple[bool, str]:
    """(ok, why): an existing directory takes a file; a missing one could be made in its
    nearest existing parent. The probes are removed again."""
    if path.exists():
        if not path.is_dir():
            return False, f"{path} exists and is not a directory"
        try:
            fd, name = tempfile.mkstemp(dir=path, prefix=".fovea-tui-probe-")
            os.close(fd)
            os.unlink(name)
        except OSError as exc:
            return False, f"cannot write in {path}: {exc.strerror or exc}"
        return True, "exists and is writable"
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return False, f"{parent} is not a directory, so {path} cannot be made"
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=".fovea-tui-probe-"))
    except OSError as exc:
        return False, f"cannot be created in {parent}: {exc.strerror or exc}"
    return True, "does not exist yet: created (0700) at the first run"


# --------------------------------------------------------------------------- before a run


def prepare_directory_target(settings: Settings, key: str, path: Path, *, create: bool = True) -> bool:
    """Make the directory behind `key` ready for a run; True when it exists afterwards.

    Missing and never used: created 0700 (or, with `create` false, left for the run to
    make, and False returned). Missing after a run used it: refused with what to do.
    """
    path = Path(path)
    known = _known(settings)
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise OperationFailed(f"{key} directory {path} is not writable by this user", hint=writable_hint(key))
        _remember(settings, known, path)
        return True
    if str(path) in known:
        raise OperationFailed(
            f"{key} directory {path} was used before and is gone now: is its disk mounted? Nothing was written",
            hint=f"mount it, or create it again with mkdir -m 700 {path}, or set {key} to where it is now")
    if not create:
        return False
    ensure_private_dir(path, key)
    _remember(settings, known, path)
    return True


def _known_path(settings: Settings) -> Path:
    return settings.state_dir / KNOWN_FILE


def _known(settings: Settings) -> set[str]:
    try:
        data = json.loads(_known_path(settings).read_text())
    except (OSError, ValueError):
        return set()  # none yet, or unreadable: every target counts as new
    return {p for p in data.get("directories", []) if isinstance(p, str)} if isinstance(data, dict) else set()


def _remember(settings: Settings, known: set[str], path: Path) -> None:
    if str(path) in known:
        return
    ensure_private_dir(settings.state_dir)
    write_atomic(_known_path(settings), json.dumps({"directories": sorted(known | {str(path)})}, indent=1))
