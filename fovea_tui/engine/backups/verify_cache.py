"""The verification cache: `<state_dir>/verify-cache.json`, keyed on (name, size, mtime).

The backup pipeline records the dumps it wrote and checked, verify records what it read,
and the inventory and status read the verdicts back without re-reading any dump.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import acquire, ensure_private_dir

CACHE_FILE = "verify-cache.json"

CACHE_FLUSH_EVERY = 100  # results written to the cache together
#: What a read settles (an "unverified" result is no verdict: the next read tries again).
CACHED_VERDICTS = ("verified", "corrupt", "mismatch")


def _cache_path(settings: Settings) -> Path:
    return settings.state_dir / CACHE_FILE


def load_cache(settings: Settings) -> dict[str, Any]:
    """The verification cache, {"version": 1, "entries": {dump name: entry}}; empty when the
    file is missing or unreadable."""
    try:
        data = json.loads(_cache_path(settings).read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("entries"), dict):
            return data
    except (OSError, ValueError):
        pass
    return {"version": 1, "entries": {}}


def update_cache(settings: Settings, updates: dict[str, dict[str, Any] | None]) -> None:
    """Write several results at once (None forgets one): verifying thousands of dumps must
    not rewrite the whole cache once per dump."""
    ensure_private_dir(settings.state_dir)
    with acquire(settings, "verify-cache", purpose="verification cache update", wait=30):
        data = load_cache(settings)
        entries = data["entries"]
        for name, entry in updates.items():
            if entry is None:
                entries.pop(name, None)
            else:
                entries[name] = entry
        # Forget entries of dumps that no longer exist.
        present = {p.name for p in settings.backups_dir.iterdir()} if settings.backups_dir.is_dir() else set()
        for stale in [n for n in entries if n not in present]:
            entries.pop(stale, None)
        write_atomic(_cache_path(settings), json.dumps(data, indent=1))


def entry(status: str, size: int, mtime_ns: int, sha256: str, reasons: list[str],
           tables: dict[str, int]) -> dict[str, Any]:
    return {"status": status, "size": size, "mtime_ns": mtime_ns, "sha256": sha256, "reasons": reasons,
            "rows": sum(tables.values()), "checked_at": datetime.now(UTC).isoformat(timespec="seconds")}


def entry_for(path: Path, result: Any) -> dict[str, Any] | None:
    """The cache entry for a local dump's `verify.VerifyResult`, or None if the file changed
    while read."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_size != result.size:
        return None  # it changed while we read it: caching would lie
    return entry(result.status, st.st_size, st.st_mtime_ns, result.sha256, result.reasons, result.tables)


def remember(settings: Settings, path: Path, result: Any) -> None:
    """Cache a local dump's verification result against its current size and mtime."""
    entry = entry_for(path, result)
    if entry is not None:
        update_cache(settings, {path.name: entry})


def remember_verified(settings: Settings, path: Path, *, size: int, mtime_ns: int, sha256: str,
                      tables: dict[str, int]) -> None:
    """The backup engine wrote and checked this dump itself: record it as verified."""
    update_cache(settings, {path.name: entry("verified", size, mtime_ns, sha256, [], tables)})


def cached_entry(settings: Settings, path: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(path)
    entry = load_cache(settings)["entries"].get(path.name)
    if not isinstance(entry, dict):
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    if entry.get("size") != st.st_size or entry.get("mtime_ns") != st.st_mtime_ns:
        return None
    return entry


def cached_status(settings: Settings, path: str | os.PathLike) -> str | None:
    """"verified" / "corrupt" from the cache when the dump has not changed since, else None."""
    entry = cached_entry(settings, path)
    status = entry.get("status") if entry else None
    return status if status in CACHED_VERDICTS else None
