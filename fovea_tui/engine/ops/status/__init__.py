"""What the dashboard shows and `fovea-tui status` prints: each piece of state in the
runbook's table, the stack, the newest restore, and the alerts an operator should act on.

Two stages: `probe` gathers facts into the typed sections of `report`; `judge` gives each
section its verdict and reason and builds the alerts, from those facts and the thresholds in
`engine.ops.policy` alone, so `status`, `status --json` and the dashboard cannot disagree.
"""

from fovea_tui.engine.ops.status.judge import judge
from fovea_tui.engine.ops.status.probe import collect_status, restore_status, scan_volume
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

__all__ = [
    "COST_OF_LOSS", "CRITICAL", "WARNING", "Alert", "BackupsSection", "DatabaseSection", "DiskSection",
    "DrillSection", "EnvFileSection", "LastBackup", "LastDrill", "ModelCacheSection", "RedisSection",
    "RestoreSection", "ScheduleSection", "Section", "StackSection", "StatusReport", "SyncSection", "Verdict",
    "VolumeSection", "collect_status", "judge", "restore_status", "scan_volume",
]
