"""`undo-selective FILE`: put back what a selective restore changed, from its undo file.

The undo file is a change set like any other (the inverse of the one applied), so it goes
through the same transaction: rows edited since the restore are detected and nothing is
written; and undoing writes its own undo file, so an undo can be undone too.
"""

from __future__ import annotations

from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.infra.database import Database, open_database
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.selective.apply import ApplyResult, apply_changeset, read_undo
from fovea_tui.engine.selective.changeset import ChangeSet
from fovea_tui.engine.selective.session import LOCK_NAME


def load_undo(path: Path) -> ChangeSet:
    """The change set an undo file holds (for a dry run or a question before applying)."""
    return read_undo(path)


def undo_selective(settings: Settings, path: Path, *, database: Database | None = None) -> ApplyResult:
    cs = read_undo(path)
    with acquire(settings, LOCK_NAME, purpose=f"undo of a selective restore ({Path(path).name})"):
        db = database or open_database(settings)
        return apply_changeset(settings, db, cs, action="selective-undo")
