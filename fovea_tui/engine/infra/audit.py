"""The audit log: one JSON line per operation in `<state_dir>/audit.jsonl`.

Each line: `time` (UTC, ISO 8601), `action` ("backup", "restore", "prune"...), `outcome`
("ok", "failed", "refused", "cancelled"), `details` (names, sizes, durations, reasons).
Never a secret: details are built from names and figures, and the line is passed through
`masking.redact` before it is written as a last line of defence.
"""

from __future__ import annotations

import json
import logging
import os
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.infra.locks import ensure_private_dir

AUDIT_FILE = "audit.jsonl"
log = logging.getLogger(__name__)


def audit_path(settings: Settings) -> Path:
    return settings.state_dir / AUDIT_FILE


def record(settings: Settings, action: str, outcome: str, details: dict[str, Any] | None = None,
           *, now: datetime | None = None) -> dict[str, Any]:
    """Append one entry; returns it. A log that cannot be written never fails the operation."""
    entry = {
        "time": (now or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds"),
        "action": action,
        "outcome": outcome,
        "pid": os.getpid(),
        "details": details or {},
    }
    line = masking.redact(json.dumps(entry, default=str, ensure_ascii=False)) + "\n"
    try:
        path = audit_path(settings)
        ensure_private_dir(path.parent)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode("utf-8"))  # one write(2) with O_APPEND: lines never interleave
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("audit log %s not written: %s", audit_path(settings), exc.strerror or exc)
    return entry


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def settings_saved(before: Settings | None, after: Settings, path: Path) -> dict[str, Any]:
    """Record a saved configuration: where, and the names of the keys that changed (never
    their values, which can hold a URL with a password)."""
    old = _flatten(before.to_toml_dict()) if before is not None and before.source else {}
    new = _flatten(after.to_toml_dict())
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    return record(after, "settings", "ok", {"path": str(path), "changed": changed})


def read(settings: Settings, limit: int | None = None, action: str | None = None) -> list[dict[str, Any]]:
    """Entries oldest first (the last `limit` of them); unreadable lines are skipped."""
    path = audit_path(settings)
    entries: deque[dict[str, Any]] = deque(maxlen=limit)
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and (action is None or entry.get("action") == action):
                    entries.append(entry)
    except FileNotFoundError:
        return []
    return list(entries)
