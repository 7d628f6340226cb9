"""The prune journal: `<state_dir>/prune-pending.json`, the deletions a prune has started.

Written before the first deletion and rewritten as each finishes, so a prune killed
midway is finished by the next one; the inventory reads it to mark those dumps pending.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from fovea_tui.config import Settings
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir

JOURNAL_FILE = "prune-pending.json"
LOCATIONS = ("local", "offsite")  # inventory.LOCATIONS (inventory reads this journal, so not imported)


def journal_path(settings: Settings) -> Path:
    return settings.state_dir / JOURNAL_FILE


def read_journal(settings: Settings) -> list[dict[str, str]]:
    """Items a previous prune left undone: [{"dump", "location", "key"}]; [] when none."""
    try:
        data = json.loads(journal_path(settings).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return []
    items = data.get("items") if isinstance(data, dict) else None
    out = []
    for item in items or []:
        if isinstance(item, dict) and all(isinstance(item.get(k), str) for k in ("dump", "location", "key")) \
                and item["location"] in LOCATIONS:
            out.append({k: item[k] for k in ("dump", "location", "key")})
    return out


def write_journal(settings: Settings, items: Sequence[Any]) -> None:
    """Replace the journal with these `prune.Deletion`s (none: remove it)."""
    path = journal_path(settings)
    if not items:
        path.unlink(missing_ok=True)
        return
    ensure_private_dir(path.parent)
    write_atomic(path, json.dumps({
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "items": [d.to_json() for d in items],
    }, indent=1))
