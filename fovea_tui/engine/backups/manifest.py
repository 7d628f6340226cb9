"""The manifest beside each dump: what it holds, how big, its sha256, and where it came from.

`fovea-YYYYMMDDTHHMMSSZ.sql.gz.manifest.json` is written last and atomically (temp file,
fsync, rename, directory fsync), so a manifest exists only for a dump that is complete.
This module also owns the file names of the contract: dumps, manifests and env copies.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.errors import SafetyRefusal

MANIFEST_SUFFIX = ".manifest.json"
DUMP_SUFFIX = ".sql.gz"
MANIFEST_FORMAT = 1
KINDS = ("regular", "pre-restore")

# fovea-20261101T020000Z.sql.gz, fovea-20261101T020000Z-pre-restore.sql.gz, and the
# runbook's cron dumps fovea-2026-11-01.sql.gz ("legacy": no manifest, no env copy).
# Always fullmatch: `$` would also match before a trailing newline ("...sql.gz\n").
_STAMPED = re.compile(r"fovea-(\d{8}T\d{6}Z)(-pre-restore)?\.sql\.gz")
_LEGACY = re.compile(r"fovea-(\d{4}-\d{2}-\d{2})\.sql\.gz")

REQUIRED_KEYS: dict[str, type | tuple[type, ...]] = {
    "created_at": str,
    "database": str,
    "server_version": str,
    "pg_dump_version": str,
    "size": int,
    "sha256": str,
    "tables": dict,
    "prisma_migrations": list,
    "env_file": (dict, type(None)),
    "duration_s": (int, float),
    "tool_version": str,
}


class ManifestError(SafetyRefusal):
    """A manifest that cannot be trusted: not JSON, keys missing, wrong types (exit 3)."""


@dataclass(frozen=True)
class DumpName:
    """What a dump's file name says: its time (UTC), kind, and whether it is a legacy cron dump."""

    name: str
    time: datetime
    kind: str          # "regular" | "pre-restore"
    legacy: bool

    @property
    def stem(self) -> str:
        return self.name[: -len(DUMP_SUFFIX)]

    @property
    def manifest_name(self) -> str:
        return self.name + MANIFEST_SUFFIX

    @property
    def env_name(self) -> str:
        return self.stem + ".env"


def dump_name(now: datetime, kind: str = "regular") -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown backup kind {kind!r}")
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"fovea-{stamp}{'-pre-restore' if kind == 'pre-restore' else ''}{DUMP_SUFFIX}"


def parse_dump_name(name: str) -> DumpName | None:
    """The DumpName of a file name of the contract, or None for anything else."""
    m = _STAMPED.fullmatch(name)
    if m:
        try:
            t = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            return None
        return DumpName(name, t, "pre-restore" if m.group(2) else "regular", False)
    m = _LEGACY.fullmatch(name)
    if m:
        try:
            t = datetime.strptime(m.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            return None
        return DumpName(name, t, "regular", True)
    return None


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


def env_copy_path(dump: Path) -> Path:
    return dump.with_name(dump.name[: -len(DUMP_SUFFIX)] + ".env")


def list_dumps(directory: Path) -> list[tuple[Path, DumpName]]:
    """Dumps named as the contract says in `directory`, oldest first."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        parsed = parse_dump_name(entry.name)
        if parsed and entry.is_file(follow_symlinks=False):
            found.append((Path(entry.path), parsed))
    found.sort(key=lambda item: (item[1].time, item[1].name))
    return found


@dataclass
class Manifest:
    created_at: str
    database: str
    server_version: str
    pg_dump_version: str
    size: int
    sha256: str
    tables: dict[str, int]
    prisma_migrations: list[str]
    env_file: dict[str, str] | None
    duration_s: float
    tool_version: str
    kind: str = "regular"
    warnings: list[str] = field(default_factory=list)
    mode: str = ""
    dump: str = ""
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "format": self.format,
            "dump": self.dump,
            "created_at": self.created_at,
            "kind": self.kind,
            "mode": self.mode,
            "database": self.database,
            "server_version": self.server_version,
            "pg_dump_version": self.pg_dump_version,
            "size": self.size,
            "sha256": self.sha256,
            "tables": dict(self.tables),
            "prisma_migrations": list(self.prisma_migrations),
            "env_file": self.env_file,
            "duration_s": self.duration_s,
            "tool_version": self.tool_version,
            "warnings": list(self.warnings),
        }
        data.update(self.extra)
        return data

    @property
    def created(self) -> datetime | None:
        try:
            t = datetime.fromisoformat(self.created_at)
        except ValueError:
            return None
        return t if t.tzinfo else t.replace(tzinfo=UTC)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "manifest") -> Manifest:
        if not isinstance(data, dict):
            raise ManifestError(f"{source} is not a JSON object")
        missing = [k for k in REQUIRED_KEYS if k not in data]
        if missing:
            raise ManifestError(f"{source} lacks {', '.join(missing)}")
        for key, kind in REQUIRED_KEYS.items():
            value = data[key]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ManifestError(f"{source}: {key} has the wrong type ({type(value).__name__})")
        if not re.fullmatch(r"[0-9a-f]{64}", data["sha256"]):
            raise ManifestError(f"{source}: sha256 is not a hex SHA-256 digest")
        if data["size"] < 0:
            raise ManifestError(f"{source}: size is negative")
        tables = data["tables"]
        if not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in tables.items()):
            raise ManifestError(f"{source}: tables must map table names to row counts")
        env = data["env_file"]
        if env is not None and not (isinstance(env.get("name"), str) and isinstance(env.get("sha256"), str)):
            raise ManifestError(f"{source}: env_file must hold a name and a sha256")
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["warnings"] = [str(w) for w in data.get("warnings") or []] if isinstance(data.get("warnings"), list) else []
        kwargs["prisma_migrations"] = [str(m) for m in data["prisma_migrations"]]
        kwargs.setdefault("kind", "regular")
        kwargs["mode"] = str(kwargs.get("mode") or "")
        kwargs["dump"] = str(kwargs.get("dump") or "")
        kwargs["format"] = kwargs.get("format") if isinstance(kwargs.get("format"), int) else MANIFEST_FORMAT
        return cls(**kwargs, extra={k: v for k, v in data.items() if k not in known})


def render(manifest: Manifest) -> bytes:
    return (json.dumps(manifest.as_dict(), indent=2, sort_keys=False, ensure_ascii=False) + "\n").encode("utf-8")


def write(manifest: Manifest, path: Path) -> Path:
    """Write the manifest atomically at `path` (0600: it names tables and migrations)."""
    return write_atomic(path, render(manifest))


def parse(data: bytes, *, source: str = "manifest") -> Manifest:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ManifestError(f"{source} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{source} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        raise ManifestError(f"{source} is not valid JSON ({exc})") from None
    except RecursionError:  # a hostile file of nested brackets: its own dump's problem only
        raise ManifestError(f"{source} is unreadable: nested too deeply to be a manifest") from None
    return Manifest.from_dict(parsed, source=source)


def read(path: Path) -> Manifest:
    """Read and validate a manifest; ManifestError (one clear line) when it cannot be trusted."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"manifest {path.name} does not exist") from None
    except OSError as exc:
        raise ManifestError(f"manifest {path.name} cannot be read: {exc.strerror}") from None
    return parse(data, source=f"manifest {path.name}")


def read_for(dump: Path) -> Manifest | None:
    """The manifest beside `dump`, None when there is none (ManifestError when it is bad)."""
    path = manifest_path(dump)
    if not path.exists():
        return None
    return read(path)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def check_against_dump(manifest: Manifest, dump: Path, *, sha256: str | None = None,
                       size: int | None = None) -> list[str]:
    """Reasons the dump does not match its manifest (empty: it matches).

    Pass `sha256`/`size` when already computed while reading the dump, else they are computed.
    """
    reasons = []
    if size is None:
        try:
            size = dump.stat().st_size
        except FileNotFoundError:
            return [f"{dump.name} does not exist"]
    if size != manifest.size:
        reasons.append(f"size {size} differs from the manifest's {manifest.size}")
    if sha256 is None and size == manifest.size:
        sha256 = file_sha256(dump)
    if sha256 is not None and sha256 != manifest.sha256:
        reasons.append("sha256 differs from the manifest's")
    return reasons


def recent(directory: Path, limit: int = 7, *, before: str | None = None) -> list[Manifest]:
    """The last `limit` readable manifests in `directory` (oldest first), optionally only
    those of dumps named before `before`. Unreadable ones are skipped."""
    out: list[Manifest] = []
    for path, parsed in list_dumps(directory):
        if before is not None and parsed.name >= before:
            continue
        try:
            manifest = read_for(path)
        except ManifestError:
            continue
        if manifest is not None:
            out.append(manifest)
    return out[-limit:] if limit else out
