"""The backup inventory: every dump in `backups.dir` and in `backups.offsite`, merged by name.

One `Entry` per dump name, with its time (parsed from the name, UTC), its copies (local,
offsite) and their sizes, its siblings (manifest, env copy) per location, a status and the
warnings an operator should see. Nothing here hashes a dump: statuses come from cheap facts
(0 bytes, a size that differs from the manifest) and from the verification cache of
`engine.verify`; `verify_entries()` is the explicit, slow path (`list --verify`). A status
from a cheap fact is a guess (`Copy.read` is False): prune reads such a dump before it
deletes it as corrupt, since a whole dump whose manifest was edited is a "mismatch".

Statuses: verified, unverified, corrupt, mismatch (a whole dump that disagrees with its
manifest's size or sha256; see `engine.backups.verify`).

Names (see the contract):

- `fovea-YYYYMMDDTHHMMSSZ.sql.gz`: a regular dump;
- `fovea-YYYYMMDDTHHMMSSZ-pre-restore.sql.gz`: a safety dump taken before a restore;
- `fovea-YYYY-MM-DD.sql.gz`: a legacy dump of the runbook's cron line. Only the day is known;
  its time is that day's 12:00 UTC, so it lands on its own calendar day in every zone from
  UTC-11 to UTC+11 when retention buckets it (`time_precision` is "day").

A file that looks like a dump (`fovea-*.sql.gz`) but whose name does not parse (an impossible
date, a stray suffix) is listed in `Inventory.unrecognised`, never a crash and never a
retention candidate. Manifests and env copies without their dump are listed as orphans
(typically what a prune that failed half-way left behind: see `engine.prune`).

Listing stays fast for thousands of dumps: one `scandir` of the local directory, the S3
prefix listed page by page (`S3_PAGE_SIZE`, with a delimiter so nested prefixes such as a
video mirror are not walked), local manifests parsed once per (path, size, mtime), off-site
manifests never downloaded unless asked (`Inventory.load_manifest`).
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as _manifest
from fovea_tui.engine.backups import verify_cache
from fovea_tui.engine.backups.encryption import AGE_SUFFIX, file_record, plain_name
from fovea_tui.engine.backups.prune_journal import read_journal
from fovea_tui.engine.backups.retention import Candidate
from fovea_tui.engine.backups.verify import verify_many
from fovea_tui.engine.infra.stores import Store, open_store
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import plural

#: Keys per S3 list request; lowered in tests to exercise pagination.
S3_PAGE_SIZE = 1000

DUMP_SUFFIX = _manifest.DUMP_SUFFIX
MANIFEST_SUFFIX = _manifest.MANIFEST_SUFFIX
ENV_SUFFIX = ".env"

LOCAL = "local"
OFFSITE = "offsite"
LOCATIONS = (LOCAL, OFFSITE)

KIND_REGULAR = "regular"
KIND_SAFETY = "safety"
KIND_LEGACY = "legacy"

_LOOKS_LIKE_DUMP = re.compile(r"fovea-.*\.sql\.gz\s*", re.S)  # with a stray newline, too
_DUMP_SHAPE = re.compile(r"fovea-(\d{8}T\d{6}Z(-pre-restore)?|\d{4}-\d{2}-\d{2})\.sql\.gz")


# -- names ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ParsedName:
    name: str
    kind: str  # regular | safety | legacy
    time: datetime  # aware, UTC
    precision: str  # "second" | "day"


def parse_dump_name(name: str) -> ParsedName | None:
    """The kind and UTC time of a dump name; None if it is not a dump name we understand.

    Recognition is `engine.manifest`'s (it owns the contract's file names); only the legacy
    time is moved from midnight to noon UTC (see the module docstring).
    """
    parsed = _manifest.parse_dump_name(name)
    if parsed is None:
        return None
    if parsed.legacy:
        return ParsedName(name, KIND_LEGACY, parsed.time.replace(hour=12), "day")
    return ParsedName(name, KIND_SAFETY if parsed.kind == "pre-restore" else KIND_REGULAR, parsed.time, "second")


def looks_like_dump(name: str) -> bool:
    return bool(_LOOKS_LIKE_DUMP.fullmatch(name)) and not name.startswith(".")


def stem_of(dump_name: str) -> str:
    return dump_name[: -len(DUMP_SUFFIX)] if dump_name.endswith(DUMP_SUFFIX) else dump_name


def env_name(dump_name: str) -> str:
    return stem_of(dump_name) + ENV_SUFFIX


def _sibling_of(name: str) -> tuple[str, str] | None:
    """(dump name, "manifest"|"env") if `name` is a sibling file of some dump (an encrypted
    env copy `....env.age` included)."""
    name = plain_name(name)
    if name.endswith(DUMP_SUFFIX + MANIFEST_SUFFIX):
        return name[: -len(MANIFEST_SUFFIX)], "manifest"
    if name.startswith("fovea-") and name.endswith(ENV_SUFFIX):
        return name[: -len(ENV_SUFFIX)] + DUMP_SUFFIX, "env"
    return None


# -- entries -------------------------------------------------------------------------


@dataclass
class Copy:
    """One copy of a dump at one location."""

    location: str
    key: str  # the file name (local) or the key under the off-site prefix
    size: int
    mtime: datetime
    status: str = "unverified"
    detail: str = ""
    mtime_ns: int | None = field(default=None, repr=False)
    read: bool = False  # the status comes from reading the bytes (the verification cache)

    @property
    def encrypted(self) -> bool:
        return self.key.endswith(AGE_SUFFIX)


@dataclass
class ManifestSummary:
    """What the inventory shows of a manifest (parsed once, cached)."""

    size: int | None
    sha256: str | None
    tables: dict[str, int]
    migrations: list[str]
    warnings: list[str]
    created_at: str | None
    env_file: dict[str, Any] | None
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ManifestSummary:
        size = data.get("size")
        tables = data.get("tables") or {}
        migrations = data.get("prisma_migrations") or []
        warnings = data.get("warnings") or []
        env = data.get("env_file")
        return cls(
            size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            sha256=data.get("sha256") if isinstance(data.get("sha256"), str) else None,
            tables={str(k): int(v) for k, v in tables.items() if isinstance(v, int)} if isinstance(tables, dict) else {},
            migrations=[str(m) for m in migrations] if isinstance(migrations, list) else [],
            warnings=[str(w) for w in warnings] if isinstance(warnings, list) else [str(warnings)],
            created_at=str(data["created_at"]) if data.get("created_at") else None,
            env_file=env if isinstance(env, dict) else None,
            raw=data,
        )


@dataclass
class Entry:
    """One dump, merged across locations."""

    name: str
    kind: str
    time: datetime
    precision: str = "second"
    copies: dict[str, Copy] = field(default_factory=dict)
    manifests: dict[str, str] = field(default_factory=dict)  # location -> key
    envs: dict[str, str] = field(default_factory=dict)  # location -> key
    manifest: ManifestSummary | None = None
    manifest_error: str | None = None
    status: str = "unverified"
    status_detail: str = ""
    warnings: list[str] = field(default_factory=list)
    pending_deletion: bool = False
    # location -> the siblings that copy lacks ("manifest", "env copy"): an upload that
    # stopped half-way; the dump there is not a whole backup
    incomplete: dict[str, list[str]] = field(default_factory=dict)

    # -- derived
    @property
    def safety(self) -> bool:
        return self.kind == KIND_SAFETY

    @property
    def locations(self) -> list[str]:
        return [loc for loc in LOCATIONS if loc in self.copies]

    @property
    def where(self) -> str:
        """Its locations for a listing, an incomplete copy marked: "local+offsite (incomplete)"."""
        where = "+".join(self.locations)
        if not self.incomplete:
            return where
        if len(self.locations) == 1:
            return f"{where} (incomplete)"
        return f"{where} ({'+'.join(self.incomplete)} incomplete)"

    @property
    def size(self) -> int:
        copy = self.copies.get(LOCAL) or self.copies.get(OFFSITE)
        return copy.size if copy else 0

    @property
    def local(self) -> Copy | None:
        return self.copies.get(LOCAL)

    @property
    def offsite(self) -> Copy | None:
        return self.copies.get(OFFSITE)

    @property
    def tables(self) -> dict[str, int]:
        return self.manifest.tables if self.manifest else {}

    @property
    def migrations(self) -> list[str]:
        return self.manifest.migrations if self.manifest else []

    @property
    def sha256(self) -> str | None:
        return self.manifest.sha256 if self.manifest else None

    @property
    def rows(self) -> int | None:
        return sum(self.manifest.tables.values()) if self.manifest and self.manifest.tables else None

    def siblings(self) -> dict[str, list[str]]:
        """{"manifest": [locations], "env": [locations]}."""
        return {
            "manifest": [loc for loc in LOCATIONS if loc in self.manifests],
            "env": [loc for loc in LOCATIONS if loc in self.envs],
        }

    def files(self, location: str) -> list[str]:
        """Every key of this dump at `location`, in deletion order: dump, env copy, manifest.

        The manifest goes last so a dump is never left without the manifest that marks it
        verified; what a half-finished deletion leaves is an orphan manifest, which is
        harmless and listed as such.
        """
        out = []
        if location in self.copies:
            out.append(self.copies[location].key)
        if location in self.envs:
            out.append(self.envs[location])
        if location in self.manifests:
            out.append(self.manifests[location])
        return out

    def candidate(self) -> Candidate:
        return Candidate(name=self.name, time=self.time, status=self.status, safety=self.safety)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "time": _iso(self.time),
            "time_precision": self.precision,
            "kind": self.kind,
            "size": self.size,
            "locations": self.locations,
            "status": self.status,
            "status_detail": self.status_detail,
            "copies": {
                loc: {"key": c.key, "size": c.size, "mtime": _iso(c.mtime), "status": c.status, "detail": c.detail,
                      "encrypted": c.encrypted}
                for loc, c in self.copies.items()
            },
            "siblings": self.siblings(),
            "incomplete": {loc: list(missing) for loc, missing in self.incomplete.items()},
            "sha256": self.sha256,
            "rows": self.rows,
            "tables": self.tables,
            "migrations": self.migrations,
            "warnings": list(self.warnings),
            "pending_deletion": self.pending_deletion,
        }


@dataclass
class Stray:
    """A file the inventory could not place: an unrecognised dump name or an orphan sibling."""

    name: str
    location: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "location": self.location, "reason": self.reason}


@dataclass
class Inventory:
    entries: list[Entry]  # newest first
    unrecognised: list[Stray] = field(default_factory=list)
    orphans: list[Stray] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # e.g. the off-site store did not answer
    local_dir: Path | None = None
    offsite_url: str = ""
    offsite_listed: bool = False
    store: Store | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {e.name: e for e in self.entries}

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def find(self, name_or_key: str) -> Entry | None:
        """The entry for a dump name, a local path, an off-site key (with or without the
        store prefix) or an `s3://` URL; None if the inventory has no such dump."""
        text = str(name_or_key).strip()
        if not text:
            return None
        if text in self._by_name:
            return self._by_name[text]
        base = text.rstrip("/").rsplit("/", 1)[-1]
        return self._by_name.get(base)

    def newest_verified(self) -> Entry | None:
        """The newest regular (non-safety) verified dump."""
        return next((e for e in self.entries if e.status == "verified" and not e.safety), None)

    def newest(self) -> Entry | None:
        return self.entries[0] if self.entries else None

    def candidates(self) -> list[Candidate]:
        return [e.candidate() for e in self.entries]

    def counts(self) -> dict[str, int]:
        out = {"verified": 0, "unverified": 0, "corrupt": 0, "mismatch": 0}
        for e in self.entries:
            out[e.status] += 1
        return out

    def total_size(self, location: str | None = None) -> int:
        return sum(c.size for e in self.entries for loc, c in e.copies.items() if location in (None, loc))

    def load_manifest(self, entry: Entry) -> ManifestSummary | None:
        """The entry's manifest, downloading an off-site-only one on demand (for detail panes)."""
        if entry.manifest is not None or entry.manifest_error is not None:
            return entry.manifest
        if OFFSITE in entry.manifests and self.store is not None:
            try:
                key = entry.manifests[OFFSITE]
                parsed = _manifest.parse(self.store.read_bytes(key), source=f"off-site manifest {key}")
                entry.manifest = ManifestSummary.from_json(parsed.as_dict())
            except (FoveaError, ValueError, OSError) as exc:
                entry.manifest_error = str(exc)
        return entry.manifest

    def to_json(self) -> dict[str, Any]:
        return {
            "backups": [e.to_json() for e in self.entries],
            "counts": self.counts(),
            "unrecognised": [s.to_json() for s in self.unrecognised],
            "orphans": [s.to_json() for s in self.orphans],
            "errors": list(self.errors),
            "local_dir": str(self.local_dir) if self.local_dir else None,
            "offsite": self.offsite_url or None,
        }


# -- listing -------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    name: str
    size: int
    mtime: datetime
    mtime_ns: int | None = None
    not_regular: str = ""  # what it is instead of a regular file ("a symlink"): never a dump


def list_local(directory: Path) -> list[_File]:
    """Top-level files of the backups directory (one scandir, no file opened).

    Symlinks are not followed: a dump is a regular file in this directory, and a link named
    like one (to a good dump, or anywhere) must neither fill a retention slot nor be deleted
    or restored in its place. Such entries come back with `not_regular` set."""
    out: list[_File] = []
    try:
        with os.scandir(directory) as entries:
            for entry in entries:
                if entry.name.startswith(".") or not entry.name.startswith("fovea-"):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                mtime = datetime.fromtimestamp(st.st_mtime, UTC)
                if entry.is_symlink():
                    out.append(_File(entry.name, 0, mtime, None, "a symlink"))
                elif not entry.is_file(follow_symlinks=False):
                    if not entry.is_dir(follow_symlinks=False):
                        out.append(_File(entry.name, 0, mtime, None, "a special file"))
                else:
                    out.append(_File(entry.name, st.st_size, mtime, st.st_mtime_ns))
    except FileNotFoundError:
        return []
    return out


def list_offsite(store: Store) -> list[_File]:
    """Top-level `fovea-*` objects of the off-site store, page by page."""
    return [_File(o.key, o.size, o.mtime) for o in store.list_dir("fovea-", page_size=S3_PAGE_SIZE)]


_manifest_cache: dict[tuple[str, int, int], ManifestSummary | str] = {}
_manifest_lock = threading.Lock()


def read_local_manifest(path: Path) -> ManifestSummary:
    """Read and validate a local manifest (`engine.manifest`'s rules), cached on (path, size,
    mtime); raises ValueError (an untrustworthy manifest) or OSError."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _manifest_lock:
        hit = _manifest_cache.get(key)
    if isinstance(hit, ManifestSummary):
        return hit
    if isinstance(hit, str):
        raise ValueError(hit)
    try:
        summary: ManifestSummary | str = ManifestSummary.from_json(
            _manifest.parse(path.read_bytes(), source=f"manifest {path.name}").as_dict())
    except _manifest.ManifestError as exc:
        summary = str(exc)
    with _manifest_lock:
        if len(_manifest_cache) > 50_000:
            _manifest_cache.clear()
        _manifest_cache[key] = summary
    if isinstance(summary, str):
        raise ValueError(summary)
    return summary


def _verification_cache(settings: Settings) -> dict[str, Any]:
    """The verification cache, read once per listing (not once per dump)."""
    try:
        entries = verify_cache.load_cache(settings).get("entries")
    except (OSError, ValueError, FoveaError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _cached_verdict(cache: dict[str, Any], name: str, size: int, mtime_ns: int | None) -> str | None:
    """The cache's word on a local dump ("verified", "corrupt", "mismatch" or None), valid
    only while the file has the size and mtime it had when it was checked (as
    `verify_cache.cached_status`)."""
    entry = cache.get(name)
    if not isinstance(entry, dict) or entry.get("size") != size or entry.get("mtime_ns") != mtime_ns:
        return None
    status = entry.get("status")
    return status if status in verify_cache.CACHED_VERDICTS else None


def pending_names(settings: Settings) -> set[str]:
    """Dumps a previous prune started to delete and has not finished (see prune_journal)."""
    return {item["dump"] for item in read_journal(settings)}


def load_inventory(settings: Settings, *, include_offsite: bool = True, store: Store | None = None) -> Inventory:
    """List, merge and classify every dump. Never hashes anything; never raises for an
    unreachable off-site store (that goes to `Inventory.errors`)."""
    local_dir = settings.backups_dir
    local_files = list_local(local_dir)

    offsite_files: list[_File] = []
    errors: list[str] = []
    offsite_url = settings.backups.offsite
    offsite_listed = False
    if include_offsite and offsite_url:
        store = store or open_store(offsite_url, settings.s3)  # a bad URL is bad config (exit 2)
        try:
            offsite_files = list_offsite(store)
            offsite_listed = True
        except FoveaError as exc:
            errors.append(str(exc))

    entries: dict[str, Entry] = {}
    unrecognised: list[Stray] = []
    siblings: list[tuple[str, str, str, str]] = []  # (location, key, dump name, kind)

    for location, files in ((LOCAL, local_files), (OFFSITE, offsite_files)):
        for f in files:
            if f.not_regular:
                if looks_like_dump(f.name):
                    unrecognised.append(Stray(f.name, location, f"{f.not_regular}, not a regular file: "
                                                                "dumps are regular files"))
                continue
            parsed = parse_dump_name(plain_name(f.name)) if location == OFFSITE else parse_dump_name(f.name)
            if parsed is not None:
                entry = entries.get(parsed.name)
                if entry is None:
                    entry = entries[parsed.name] = Entry(parsed.name, parsed.kind, parsed.time, parsed.precision)
                entry.copies[location] = Copy(location, f.name, f.size, f.mtime, mtime_ns=f.mtime_ns)
                continue
            sib = _sibling_of(f.name)
            if sib is not None:
                siblings.append((location, f.name, sib[0], sib[1]))
                continue
            if looks_like_dump(f.name):
                reason = ("the date in the name is impossible"
                          if _DUMP_SHAPE.fullmatch(f.name)
                          else "the name matches no dump pattern")
                unrecognised.append(Stray(f.name, location, reason))

    orphans: list[Stray] = []
    for location, key, dump, kind in siblings:
        entry = entries.get(dump)
        if entry is None or location not in entry.copies:
            orphans.append(Stray(key, location, f"{kind} without its dump {dump} at this location"))
            if entry is None:
                continue
        (entry.manifests if kind == "manifest" else entry.envs)[location] = key

    try:
        pending = pending_names(settings)
    except (OSError, ValueError):
        pending = set()

    cache = _verification_cache(settings) if local_files else {}
    for entry in entries.values():
        _classify(entry, local_dir, cache)
        if entry.name in pending:
            entry.pending_deletion = True
            entry.warnings.append("a prune started deleting this dump and did not finish; the next prune completes it")

    ordered = sorted(entries.values(), key=lambda e: (e.time, e.name), reverse=True)
    return Inventory(
        entries=ordered,
        unrecognised=sorted(unrecognised, key=lambda s: (s.name, s.location)),
        orphans=sorted(orphans, key=lambda s: (s.name, s.location)),
        errors=errors,
        local_dir=local_dir,
        offsite_url=offsite_url,
        offsite_listed=offsite_listed,
        store=store,
    )


def _classify(entry: Entry, local_dir: Path, cache: dict[str, Any]) -> None:
    """Per-copy statuses, the entry's status (its local copy's, else its off-site copy's)
    and warnings."""
    if LOCAL in entry.manifests:
        try:
            entry.manifest = read_local_manifest(local_dir / entry.manifests[LOCAL])
        except (ValueError, OSError) as exc:
            entry.manifest_error = str(exc)
            entry.warnings.append(str(exc))
    m = entry.manifest
    if m is not None:
        entry.warnings.extend(m.warnings)
    has_manifest = bool(entry.manifests)

    local = entry.copies.get(LOCAL)
    if local is not None:
        verdict = _cached_verdict(cache, local.key, local.size, local.mtime_ns)
        if local.size == 0:
            local.status, local.detail = "corrupt", "0 bytes"
        elif verdict == "mismatch":
            local.status = "mismatch"
            local.detail = "whole dump, but not the one its manifest describes (size or sha256 differ)"
        elif m is not None and m.size is not None and m.size != local.size:
            local.status, local.detail = "corrupt", f"{local.size} bytes, the manifest says {m.size}"
            if verdict != "corrupt":
                local.detail += " (not read yet)"
        else:
            if verdict == "corrupt":  # say why (the verification's reasons), not only that it failed
                reasons = [str(r) for r in (cache.get(local.key) or {}).get("reasons") or []]
                local.status, local.detail = "corrupt", "; ".join(reasons) or "failed verification"
            elif entry.manifest_error is not None:
                local.status, local.detail = "unverified", "its manifest cannot be trusted"
            elif verdict == "verified":
                local.status = "verified"
                local.detail = "verified against its manifest" if has_manifest else "verified (no manifest)"
            else:
                local.status = "unverified"
                local.detail = "not yet verified" if has_manifest else "no manifest; not yet verified"
        local.read = local.size == 0 or local.status == verdict

    off = entry.copies.get(OFFSITE)
    if off is not None and off.encrypted:
        _classify_encrypted(off, m, local)
    elif off is not None:
        expected = m.size if m is not None and m.size is not None else None
        if off.size == 0:
            off.status, off.detail = "corrupt", "0 bytes"
        elif expected is not None and off.size != expected:
            off.status, off.detail = "corrupt", f"{off.size} bytes, the manifest says {expected}"
        elif local is not None and local.status != "corrupt" and off.size != local.size:
            off.status, off.detail = "corrupt", f"{off.size} bytes, the local copy has {local.size}"
        elif local is not None and local.status != "corrupt":
            off.status, off.detail = local.status, "same size as the local copy"
        else:
            off.status, off.detail = "unverified", "off-site only; not verified" if local is None else "not verified"

    main = local or off
    assert main is not None
    entry.status, entry.status_detail = main.status, main.detail
    if local is not None and off is not None and off.status == "corrupt" and local.status != "corrupt":
        entry.warnings.append(f"off-site copy is damaged: {off.detail}")
    if local is not None and local.status == "corrupt" and off is not None and off.status != "corrupt":
        entry.warnings.append("local copy is corrupt; the off-site copy may be sound (prune keeps it)")
    if entry.status == "mismatch":
        entry.warnings.append("whole dump that disagrees with its manifest: the dump or the manifest was changed "
                              "after the backup; prune keeps it, restore asks you to accept it")
    if off is not None and entry.kind != KIND_LEGACY:
        _check_offsite_siblings(entry, m)
    if entry.kind == KIND_LEGACY and not has_manifest:
        entry.warnings.append("legacy dump of the runbook's cron line: no manifest")
    elif not has_manifest:
        entry.warnings.append("no manifest")
    if entry.kind != KIND_LEGACY and not entry.envs:
        entry.warnings.append("no env copy beside it")


def _classify_encrypted(off: Copy, m: ManifestSummary | None, local: Copy | None) -> None:
    """An age copy off-site: its size is checked against the manifest's record of the
    ciphertext (never against the plaintext); its content only by decrypting it (`verify`)."""
    record = file_record(m.raw if m is not None else None, off.key)
    if off.size == 0:
        off.status, off.detail = "corrupt", "0 bytes"
    elif record is not None and record.get("size") != off.size:
        off.status, off.detail = "corrupt", f"{off.size} bytes, the manifest records {record.get('size')} encrypted"
    elif record is not None and local is not None and local.status != "corrupt" and record.get("plaintext_size") == local.size:
        off.status, off.detail = local.status, "encrypted; size as the manifest records"
    else:
        off.status, off.detail = "unverified", "encrypted; not verified" + (" (off-site only)" if local is None else "")


def _check_offsite_siblings(entry: Entry, manifest: ManifestSummary | None) -> None:
    """An off-site dump without its manifest (or without the env copy its backup made) is an
    upload that stopped half-way: a copy to recover from only in part, said so."""
    missing = []
    if OFFSITE not in entry.manifests:
        missing.append("manifest")
    env_expected = LOCAL in entry.envs or (manifest is not None and manifest.env_file is not None)
    if env_expected and OFFSITE not in entry.envs:
        missing.append("env copy")
    if missing:
        entry.incomplete[OFFSITE] = missing
        entry.warnings.append(f"off-site copy incomplete: no {' and no '.join(missing)} off-site "
                              "(its upload stopped half-way)")


def verify_entries(settings: Settings, inventory: Inventory, names: Iterable[str] | None = None, *,
                   only_unsettled: bool = True, progress=None, cancel=None,
                   include_offsite: bool = True) -> Inventory:
    """Verify local copies (slow: reads every byte; results land in the verification cache)
    and return a fresh inventory. `only_unsettled` skips copies a read already settled."""
    wanted = set(names) if names is not None else None
    todo = [str(settings.backups_dir / e.local.key) for e in inventory.entries
            if e.local is not None and (wanted is None or e.name in wanted)
            and not (only_unsettled and e.local.read)]
    if todo:
        kwargs = {"cancel": cancel}
        if progress is not None:
            kwargs["progress"] = progress
        verify_many(settings, todo, **kwargs)
    return load_inventory(settings, include_offsite=include_offsite, store=inventory.store)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def status_summary(settings: Settings, section: dict[str, Any] | None = None) -> dict[str, Any]:
    """What the dashboard's backups card adds from the inventory: counts per status, the
    corrupt dumps and an alert for them. Local only (the dashboard polls; the off-site store
    is listed by `list` and the backups screen). Never raises: a failure is a field."""
    section = section or {}
    alerts = list(section.get("alerts") or [])
    try:
        inv = load_inventory(settings, include_offsite=False)
    except (FoveaError, OSError) as exc:
        return {"inventory_error": str(exc), "alerts": alerts}
    corrupt = [e.name for e in inv if e.status == "corrupt"]
    mismatch = [e.name for e in inv if e.status == "mismatch"]
    newest = inv.newest_verified()
    already = (section.get("last") or {}).get("name") if (section.get("last") or {}).get("status") == "corrupt" else None
    others = [n for n in corrupt if n != already]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        alerts.append({"level": "critical", "subject": "backups",
                       "message": f"{plural(len(others), 'corrupt dump')} in {settings.backups_dir}: {shown} "
                                  "(never used by retention or restore)"})
    if mismatch:
        shown = ", ".join(mismatch[:3]) + (f" and {len(mismatch) - 3} more" if len(mismatch) > 3 else "")
        alerts.append({"level": "critical", "subject": "backups",
                       "message": f"{plural(len(mismatch), 'dump')} whole but not what their manifest says (edited "
                                  f"afterwards?): {shown}; kept by prune, restored only when accepted"})
    if len(inv) and newest is None:
        alerts.append({"level": "critical", "subject": "backups",
                       "message": "no verified dump: run `fovea-tui verify`; prune refuses until one exists"})
    return {"counts": inv.counts(), "corrupt": corrupt, "mismatch": mismatch, "unrecognised": [s.name for s in inv.unrecognised],
            "newest_verified": newest.name if newest else None, "alerts": alerts}
