"""Is a dump what it claims to be? Read it end to end and check.

A dump is *verified* when it is a whole gzip stream (every member's CRC and length right,
nothing after it), its SQL ends with pg_dump's completion line, and, when it has a
manifest, its size and sha256 match the manifest's. A dump that is whole (the first two
hold) but disagrees with its manifest's size or sha256 is a *mismatch*: the dump or its
manifest was changed afterwards, and nobody can tell which is right. It is shown and
alerted, never deleted by prune, and restored only when the operator accepts it. Anything
else is *corrupt*, with the reasons. Legacy cron dumps (`fovea-YYYY-MM-DD.sql.gz`, no
manifest) get the first two.

Results are cached by `verify_cache` (keyed on name, size and mtime), so the inventory can
show "verified" without re-reading: `verify_cache.cached_status(settings, path)`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from isal import isal_zlib

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import encryption, verify_cache
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.stream_format import COMPLETION_LINE, StreamInspector
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.engine.infra.stores import open_store
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle, no_progress
from fovea_tui.errors import UsageError

# Small steps keep each inflated piece in the CPU's cache while the inspector scans it: a
# fifth less time than 1 MiB reads and 4 MiB pieces (measured on a 17 MiB dump).
READ_CHUNK = 64 << 10
MAX_OUT = 256 << 10  # decompressed bytes per step: memory stays flat for any dump


@dataclass
class VerifyResult:
    status: str  # "verified" | "corrupt" | "mismatch" (whole, not its manifest's) | "unverified" (unreadable manifest)
    reasons: list[str]
    sha256: str
    size: int
    tables: dict[str, int]
    name: str = ""
    path: str = ""
    has_manifest: bool = False
    legacy: bool = False
    warnings: list[str] = field(default_factory=list)
    uncompressed_size: int = 0
    location: str = "local"

    @property
    def ok(self) -> bool:
        return self.status == "verified"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": self.path, "location": self.location, "status": self.status,
                "reasons": list(self.reasons), "warnings": list(self.warnings), "size": self.size,
                "sha256": self.sha256, "uncompressed_size": self.uncompressed_size,
                "tables": dict(self.tables), "has_manifest": self.has_manifest, "legacy": self.legacy}


DumpRead = tuple[StreamInspector, str, int, list[str]]  # read_dump's answer


def read_dump(path: Path, *, cancel: CancelToken | None = None,
              on_progress: Callable[[int], None] | None = None,
              inspector: StreamInspector | None = None) -> DumpRead:
    """Stream-gunzip `path`: (inspector, sha256 of the file, file size, gzip problems).

    `inspector`: a StreamInspector (or a subclass that reads more, such as pre-flight's scan
    of the videos rows) to feed instead of a plain one: one read of the file serves both."""
    inspector = StreamInspector() if inspector is None else inspector
    digest = hashlib.sha256()
    size = 0
    problems: list[str] = []
    d = isal_zlib.decompressobj(wbits=31)
    member_done = False  # the last gzip member ended and no new one started yet
    with open(path, "rb") as fh:
        while True:
            raw = fh.read(READ_CHUNK)
            if not raw:
                break
            if cancel is not None:
                cancel.check()
            digest.update(raw)
            size += len(raw)
            if problems:
                continue  # keep hashing; the stream is already known broken
            data = raw
            while data:
                if member_done:
                    if not data.strip(b"\x00"):
                        break  # trailing zero padding, as gzip(1) tolerates
                    d = isal_zlib.decompressobj(wbits=31)
                    member_done = False
                try:
                    out = d.decompress(data, MAX_OUT)
                    inspector.feed(out)
                    while d.unconsumed_tail == b"" and len(out) == MAX_OUT and not d.eof:
                        out = d.decompress(b"", MAX_OUT)
                        inspector.feed(out)
                except isal_zlib.error as exc:  # type: ignore[misc]  # isal's stub types `error` as an instance, it is a class
                    problems.append(f"not a valid gzip stream at byte {size - len(data)}: {exc}")
                    break
                if d.eof:
                    member_done = True
                    data = d.unused_data
                else:
                    data = d.unconsumed_tail
            if on_progress is not None:
                on_progress(size)
    if not problems:
        if size == 0:
            problems.append("the file is empty")
        elif not member_done:
            problems.append("the gzip stream is truncated (no end-of-stream marker)")
    return inspector, digest.hexdigest(), size, problems


def verify_dump(path: str | os.PathLike, manifest: mf.Manifest | None = None, *,
                use_manifest_beside: bool = True, cancel: CancelToken | None = None,
                progress: Callable[[ProgressEvent], None] = no_progress,
                inspector: StreamInspector | None = None, read: DumpRead | None = None) -> VerifyResult:
    """Read the dump end to end; see the module doc for what "verified" means.

    `manifest=None` reads the manifest beside the dump when there is one (unless
    `use_manifest_beside=False`); pass a Manifest to check against it instead. `inspector`: see read_dump.
    `read`: read_dump's answer for this file when it was read already (pre-flight's read-ahead).
    """
    path = Path(path)
    parsed = mf.parse_dump_name(path.name)
    reasons: list[str] = []
    warnings: list[str] = []
    manifest_problems: list[str] = []
    if manifest is None and use_manifest_beside:
        try:
            manifest = mf.read_for(path)
        except mf.ManifestError as exc:
            manifest_problems.append(f"{exc.message}: cannot check the dump against it")
    if not path.is_file():
        return VerifyResult("corrupt", [f"{path} does not exist or is not a file"], "", 0, {}, name=path.name,
                            path=str(path), has_manifest=manifest is not None)
    throttle = Throttle(progress, 0.2)
    total = path.stat().st_size
    t0 = time.monotonic()

    def on_progress(done: int) -> None:
        throttle(ProgressEvent(phase="verify", done=done, total=total, unit="bytes", current=path.name,
                               started_at=t0), force=done >= total)  # the bar ends full, however fast the read

    try:
        inspector, sha256, size, problems = read if read is not None else read_dump(
            path, cancel=cancel, on_progress=on_progress, inspector=inspector)
    except OSError as exc:
        return VerifyResult("corrupt", [f"cannot read {path.name}: {exc.strerror or exc}"], "", 0, {},
                            name=path.name, path=str(path), has_manifest=manifest is not None)
    reasons += problems
    if not problems and not inspector.complete:
        reasons.append(f"the SQL does not end with pg_dump's completion line ('{COMPLETION_LINE.decode()}'): "
                       "the dump was cut short")
    disagreements: list[str] = []
    if manifest is not None:
        disagreements = mf.check_against_dump(manifest, path, sha256=sha256, size=size)
        if manifest.env_file:
            env_copy = path.with_name(manifest.env_file["name"])
            if not env_copy.exists():
                warnings.append(f"env copy {env_copy.name} is missing")
            elif mf.file_sha256(env_copy) != manifest.env_file["sha256"]:
                warnings.append(f"env copy {env_copy.name} differs from the one recorded in the manifest")
        warnings += [f"flagged at backup time: {w}" for w in manifest.warnings]
    return VerifyResult(
        status=_verdict(reasons, manifest_problems, disagreements),
        reasons=reasons + [f"whole dump, but its {d}" for d in disagreements] + manifest_problems,
        sha256=sha256, size=size,
        tables=dict(inspector.tables), name=path.name, path=str(path), has_manifest=manifest is not None,
        legacy=bool(parsed and parsed.legacy), warnings=warnings, uncompressed_size=inspector.bytes,
    )


def _verdict(dump_problems: list[str], manifest_problems: list[str], disagreements: Sequence[str] = ()) -> str:
    """A broken dump is corrupt. A whole dump is not: it is "mismatch" when its manifest's
    size or sha256 disagrees, "unverified" when its manifest cannot be read (neither is
    deleted as corrupt nor counted as the newest verified dump)."""
    if dump_problems:
        return "corrupt"
    if disagreements:
        return "mismatch"
    return "unverified" if manifest_problems else "verified"


# --------------------------------------------------------------------------- many dumps


def resolve_targets(settings: Settings, targets: Iterable[str]) -> list[tuple[str, Path | None]]:
    """Each DUMP argument as (argument, local path), or (argument, None) for an off-site key."""
    out: list[tuple[str, Path | None]] = []
    for target in targets:
        candidate = Path(target)
        if candidate.is_file():
            out.append((target, candidate))
            continue
        beside = settings.backups_dir / candidate.name
        if beside.is_file():
            out.append((target, beside))
            continue
        if settings.backups.offsite:
            out.append((target, None))
            continue
        raise UsageError(f"no dump {target!r}: not a file, and not in {settings.backups_dir}",
                         key="DUMP", hint="`fovea-tui list` shows the dumps")
    return out


def verify_offsite(settings: Settings, key: str, *, cancel: CancelToken | None = None,
                   progress: Callable[[ProgressEvent], None] = no_progress) -> VerifyResult:
    """Download an off-site dump (and its manifest) to a temp file and verify it."""
    store = open_store(settings.backups.offsite, settings.s3)
    key = encryption.plain_name(key)
    name = key.rsplit("/", 1)[-1]
    stored = key
    if store.head(key) is None:
        stored = encryption.encrypted_name(key)
        if store.head(stored) is None:
            raise UsageError(f"no dump {key!r} locally in {settings.backups_dir} nor off-site at "
                             f"{settings.backups.offsite}", key="DUMP")
    identities = encryption.identities_for(settings, stored)
    manifest = None
    manifest_problems: list[str] = []
    if store.head(key + mf.MANIFEST_SUFFIX) is not None:
        try:
            manifest = mf.parse(store.read_bytes(key + mf.MANIFEST_SUFFIX), source=f"manifest {name}{mf.MANIFEST_SUFFIX}")
        except mf.ManifestError as exc:
            manifest_problems.append(f"{exc.message}: cannot check the dump against it")
    ensure_private_dir(settings.state_dir)
    with tempfile.TemporaryDirectory(dir=settings.state_dir, prefix="verify-") as tmp:
        local = Path(tmp) / name
        record = encryption.file_record(manifest.as_dict() if manifest else None, stored)
        encryption.fetch(store, stored, local, identities=identities, record=record, progress=progress,
                         cancel=cancel)
        result = verify_dump(local, manifest, use_manifest_beside=False, cancel=cancel, progress=progress)
    if manifest_problems and result.status == "verified":
        result.status = "unverified"
    result.reasons = result.reasons + manifest_problems
    result.warnings = [w for w in result.warnings if not w.startswith("env copy")]
    result.path, result.location = key, "offsite"
    return result


def verify_many(settings: Settings, targets: list[str] | None = None, *,
                cancel: CancelToken | None = None,
                progress: Callable[[ProgressEvent], None] = no_progress,
                on_result: Callable[[VerifyResult], None] | None = None) -> list[VerifyResult]:
    """Verify the named dumps (all local dumps when none are named); cache local results."""
    if targets:
        resolved = resolve_targets(settings, targets)
    else:
        resolved = [(p.name, p) for p, _ in mf.list_dumps(settings.backups_dir)]
    results = []
    pending: dict[str, tuple[dict[str, Any], VerifyResult]] = {}

    def flush() -> None:
        if not pending:
            return
        try:
            verify_cache.update_cache(settings, {name: entry for name, (entry, _) in pending.items()})
        except OSError as exc:
            for _, result in pending.values():
                result.warnings.append(f"result not cached ({exc.strerror or exc}): the next listing "
                                       "shows this dump as not yet verified")
        pending.clear()

    try:
        for target, path in resolved:
            if cancel is not None:
                cancel.check()
            if path is None:
                result = verify_offsite(settings, target, cancel=cancel, progress=progress)
            else:
                result = verify_dump(path, cancel=cancel, progress=progress)
                if path.parent.resolve() == settings.backups_dir.resolve():
                    entry = verify_cache.entry_for(path, result)
                    if entry is not None:
                        pending[path.name] = (entry, result)
                    if len(pending) >= verify_cache.CACHE_FLUSH_EVERY:
                        flush()
            result.reasons = [masking.redact(r) for r in result.reasons]
            results.append(result)
            if on_result is not None:
                on_result(result)
    finally:
        flush()
    return results
