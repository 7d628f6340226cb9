"""The prune journal: `<state_dir>/prune-pending.json`, the deletions a prune has started.

It holds the files of the dumps whose deletion began and has not finished (never the rest
of the plan): written as a prune starts on each dump and rewritten as its files go, so a
prune killed midway has that dump finished by the next one, which then plans afresh. The
inventory reads it to mark those dumps pending. A journal of an older version held a
whole plan (no "started_only"): see `prune._in_flight`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir

JOURNAL_FILE = "prune-pending.json"
LOCATIONS = ("local", "offsite")  # inventory.LOCATIONS (inventory reads this journal, so not imported)


def journal_path(settings: Settings) -> Path:
    return settings.state_dir / JOURNAL_FILE


def read_journal(settings: Settings) -> list[dict[str, str]]:
    """Items a previous prune left undone: [{"dump", "location", "key"}]; [] when none."""
    return read_journal_items(settings)[0]


def read_journal_items(settings: Settings) -> tuple[list[dict[str, str]], bool]:
    """(items, started_only): a journal of this version holds only dumps whose deletion
    began; an older one held a prune's whole plan."""
    try:
        data = json.loads(journal_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], True
    except (OSError, ValueError):
        return [], True
    started_only = isinstance(data, dict) and data.get("started_only") is True
    items = data.get("items") if isinstance(data, dict) else None
    out = []
    for item in items or []:
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("dump", "location", "key")) \
                and item["location"] in LOCATIONS:
            out.append({k: item[k] for k in ("dump", "location", "key")})
    return out, started_only


def write_journal(settings: Settings, items: Sequence[Any]) -> None:
    """Replace the journal with these `prune.Deletion`s (none: remove it)."""
    path = journal_path(settings)
    if not items:
        path.unlink(missing_ok=True)
        return
    ensure_private_dir(path.parent)
    write_atomic(path, json.dumps({
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "started_only": True,
        "items": [d.to_json() for d in items],
    }, indent=1))
