"""What the dashboard shows and `fovea-tui status` prints: each piece of state in the
runbook's table, the stack, the newest restore, and the alerts an operator should act on.

Two stages: `probe` gathers facts into the typed sections of `report`; `judge` gives each
section its verdict and reason and builds the alerts, from those facts and the thresholds in
`engine.ops.policy` alone, so `status`, `status --json` and the dashboard cannot disagree.
"""

from typing import TYPE_CHECKING, Any

from fovea_tui.engine.ops.status.judge import judge
from fovea_tui.engine.ops.status.report import (
    COST_OF_LOSS,
    CRITICAL,
    WARNING,
    Alert,
    BackupsSection,
    DatabaseSection,
    DiskSection,
    DrillSection,
    EnvFileSection,
    LastBackup,
    LastDrill,
    ModelCacheSection,
    RedisSection,
    RestoreSection,
    ScheduleSection,
    Section,
    StackSection,
    StatusReport,
    SyncSection,
    Verdict,
    VolumeSection,
)

if TYPE_CHECKING:
    from fovea_tui.engine.ops.status.probe import collect_status, restore_status, scan_volume

_PROBES = ("collect_status", "restore_status", "scan_volume")


def __getattr__(name: str) -> Any:
    """The probes, imported when first asked for: they reach every part of the engine (the
    inventory, the database, Docker, the restore jobs), which a face that only draws a report
    (the dashboard's first frame) does not need yet."""
    if name in _PROBES:
        from fovea_tui.engine.ops.status import probe

        return getattr(probe, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COST_OF_LOSS", "CRITICAL", "WARNING", "Alert", "BackupsSection", "DatabaseSection", "DiskSection",
    "DrillSection", "EnvFileSection", "LastBackup", "LastDrill", "ModelCacheSection", "RedisSection",
    "RestoreSection", "ScheduleSection", "Section", "StackSection", "StatusReport", "SyncSection", "Verdict",
    "VolumeSection", "collect_status", "judge", "restore_status", "scan_volume",
]
