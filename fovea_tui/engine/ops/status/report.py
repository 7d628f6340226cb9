"""The status report's types: a verdict, an alert, one dataclass per section of the runbook's
table (plus the stack, disk, backups, sync, drill, schedule and the newest restore), and the
report that holds them and serialises to the contract's `status --json` shape."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

# The runbook's table: what each piece costs to lose.
COST_OF_LOSS = {
    "database": "all annotation, persona, ontology, claim and user state",
    "volume": "the uploaded videos themselves",
    "env_file": "sessions, encrypted API keys, database credentials",
    "model_cache": "one re-download per model at next use",
    "redis": "jobs running now; users retry them from the UI",
}


class Verdict(StrEnum):
    """A section's verdict. FINE: nothing to do. STALE: its copy is older than the policy
    allows. MISSING: it has no copy (or nothing configured). WARNING: something to look at
    that is not about a copy's age. FAILING: broken, act now. ACTIVE: a restore is changing
    the install. UNKNOWN: it could not be looked at."""

    FINE = "fine"
    STALE = "stale"
    MISSING = "missing"
    WARNING = "warning"
    FAILING = "failing"
    ACTIVE = "active"
    UNKNOWN = "unknown"


CRITICAL, WARNING = "critical", "warning"


@dataclass
class Alert:
    level: str      # "critical" | "warning"
    subject: str    # which section it belongs to: database, volume, env_file, stack, backups, ...
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "subject": self.subject, "message": self.message}


def _plain(value: Any) -> Any:
    """A JSON-ready copy: nested records as dicts, times in ISO 8601."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass(kw_only=True)
class Section:
    """What every section carries: did its probe work, the verdict and why. `found` holds
    alerts raised while probing by the module that owns the facts (sync, drill, schedule,
    inventory); `judge` adds them to the report's alerts."""

    ok: bool = True
    error: str | None = None
    verdict: Verdict = Verdict.UNKNOWN
    reason: str = ""
    found: list[Alert] = field(default_factory=list, repr=False)

    def fail(self, error: str) -> None:
        self.ok, self.error = False, error

    def as_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "found"}
        if data["error"] is None:
            del data["error"]
        return data


@dataclass(kw_only=True)
class DatabaseSection(Section):
    mode: str = ""
    cost_of_loss: str = COST_OF_LOSS["database"]
    reachable: bool = False
    target: str = ""
    server_version: str = ""
    size: int = 0
    tables: int = 0
    rows: int = 0
    migrations: int = 0
    # from the newest regular dump's manifest: what the database held when it was dumped
    expected_tables: int | None = None
    expected_rows: int | None = None
    expected_from: str | None = None


@dataclass(kw_only=True)
class VolumeSection(Section):
    cost_of_loss: str = COST_OF_LOSS["volume"]
    path: str = ""                 # the volume, the app's bucket, or both (VIDEO_STORAGE_TYPE)
    storage: str = "local"         # local, s3 or hybrid
    target: str | None = None
    files: int = 0
    bytes: int = 0
    new_files: int | None = None   # written since the last sync began (None: never synced)
    new_bytes: int | None = None
    new_since: str | None = None


@dataclass(kw_only=True)
class EnvFileSection(Section):
    cost_of_loss: str = COST_OF_LOSS["env_file"]
    path: str = ""
    keys: int = 0
    missing: list[str] = field(default_factory=list)
    mode: str = ""
    world_readable: bool = False


@dataclass(kw_only=True)
class ModelCacheSection(Section):
    cost_of_loss: str = COST_OF_LOSS["model_cache"]
    managed: bool = False
    volume: str | None = None
    exists: bool | None = None
    mountpoint: str | None = None


@dataclass(kw_only=True)
class RedisSection(Section):
    cost_of_loss: str = COST_OF_LOSS["redis"]
    managed: bool = False
    running: bool | None = None
    queues: dict[str, dict[str, int]] = field(default_factory=dict)
    active: int = 0
    waiting: int = 0


@dataclass(kw_only=True)
class StackSection(Section):
    managed: bool = False
    reason: str = ""               # why the stack is not managed, or the verdict's reason
    project: str | None = None
    services: list[dict[str, Any]] = field(default_factory=list)


@dataclass(kw_only=True)
class DiskSection(Section):
    path: str = ""
    total: int = 0
    free: int = 0
    free_fraction: float = 0.0


@dataclass
class LastBackup:
    """The newest regular dump (a pre-restore safety dump is never "the last backup")."""

    name: str
    time: datetime
    age_s: int
    size: int
    kind: str
    legacy: bool
    env_copied: bool = False
    warnings: list[str] = field(default_factory=list)
    tables: int | None = None
    rows: int | None = None
    status: str | None = None      # verified | corrupt | unverified | unchecked


@dataclass(kw_only=True)
class BackupsSection(Section):
    dir: str = ""
    count: int = 0                  # every dump, safety dumps included
    pre_restore: int = 0            # of which pre-restore safety dumps
    total_bytes: int = 0
    last: LastBackup | None = None
    offsite: str | None = None
    summary: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    corrupt: list[str] = field(default_factory=list)
    unrecognised: list[str] = field(default_factory=list)
    newest_verified: str | None = None
    inventory_error: str | None = None


@dataclass(kw_only=True)
class SyncSection(Section):
    target: str | None = None
    last: str | None = None         # the last complete sync
    age_s: float | None = None
    last_run: str | None = None
    last_run_age_s: float | None = None
    pending: int | None = None
    error_count: int = 0
    uploaded: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0
    changed: int = 0
    refused: str | None = None
    cancelled: bool = False
    last_target: str | None = None
    listing: Any = None
    summary: str = ""


@dataclass
class LastDrill:
    time: str | None
    ok: bool
    dump: str | None = None
    rto_s: float | None = None
    rpo_s: float | None = None
    failed: list[str] = field(default_factory=list)
    report: str | None = None


@dataclass(kw_only=True)
class DrillSection(Section):
    interval_days: int = 0
    last: LastDrill | None = None
    last_time: str | None = None
    age_s: float | None = None
    overdue: bool = False
    due_at: str | None = None
    summary: str = ""


@dataclass(kw_only=True)
class ScheduleSection(Section):
    installed: bool = False
    kind: str | None = None
    at: str | None = None
    next_run: str | None = None
    files: list[str] = field(default_factory=list)
    last_run: dict[str, Any] | None = None
    summary: str = ""


@dataclass(kw_only=True)
class RestoreSection(Section):
    """The newest restore job: what it is doing or how it ended, and what to run next."""

    job: str | None = None
    status: str | None = None       # effective: "interrupted" when its runner is gone
    alive: bool = False             # a runner holds the job now
    phase: str | None = None
    step: str | None = None         # the step running (or running when it stopped)
    step_title: str | None = None
    message: str = ""
    state: str = ""                 # what state the install is in, in words
    dump: str | None = None
    updated_at: str | None = None
    install_touched: bool = False
    can_resume: bool = False
    can_rollback: bool = False
    next: list[str] = field(default_factory=list)   # commands that follow, resume or roll it back
    summary: str = ""
    headline: str = ""              # the banner's words: what it does or how it stopped, briefly
    safety_copy: str = ""           # a finished restore's renamed database: its safety dump failed or stopped
    rollback_plan: str = ""         # what a rollback would do, in words: the question before one

    @property
    def needs_operator(self) -> bool:
        """A banner on every screen: the install is being changed or was left half-changed."""
        return self.verdict in (Verdict.ACTIVE, Verdict.FAILING)


@dataclass(kw_only=True)
class EncryptionSection(Section):
    """Off-site copies encrypted or not, to whom, and whether identity_file opens the newest."""

    enabled: bool = False
    recipients: list[str] = field(default_factory=list)
    identity_file: str | None = None
    checked: dict[str, Any] | None = None   # {"key", "ok", "detail"} of the newest encrypted dump
    summary: str = ""


@dataclass
class StatusReport:
    generated_at: datetime
    database: DatabaseSection = field(default_factory=DatabaseSection)
    volume: VolumeSection = field(default_factory=VolumeSection)
    env_file: EnvFileSection = field(default_factory=EnvFileSection)
    model_cache: ModelCacheSection = field(default_factory=ModelCacheSection)
    redis: RedisSection = field(default_factory=RedisSection)
    stack: StackSection = field(default_factory=StackSection)
    disk: DiskSection = field(default_factory=DiskSection)
    backups: BackupsSection = field(default_factory=BackupsSection)
    drill: DrillSection = field(default_factory=DrillSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    sync: SyncSection = field(default_factory=SyncSection)
    restore: RestoreSection = field(default_factory=RestoreSection)
    encryption: EncryptionSection = field(default_factory=EncryptionSection)
    alerts: list[Alert] = field(default_factory=list)

    SECTIONS = ("database", "volume", "env_file", "model_cache", "redis", "stack", "disk", "backups",
                "drill", "schedule", "sync", "restore", "encryption")

    def sections(self) -> dict[str, Section]:
        return {name: getattr(self, name) for name in self.SECTIONS}

    @property
    def critical(self) -> bool:
        return any(a.level == CRITICAL for a in self.alerts)

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"generated_at": self.generated_at.isoformat()}
        data.update({name: section.as_dict() for name, section in self.sections().items()})
        data["alerts"] = [a.as_dict() for a in self.alerts]
        return data


S = TypeVar("S", bound=Section)


def section_from(cls: type[S], data: dict[str, Any], **extra: Any) -> S:
    """A typed section from a fact module's dict: its known fields, its alerts as `found`."""
    names = {f.name for f in dataclasses.fields(cls)} - {"found", "verdict", "reason"}
    kwargs = {k: v for k, v in data.items() if k in names}
    kwargs.update(extra)
    found = [Alert(level=a["level"], subject=a["subject"], message=a["message"]) for a in data.get("alerts") or []]
    return cls(**kwargs, found=found)


def record_from(cls: type, data: dict[str, Any]) -> Any:
    """A nested record (LastDrill, LastBackup) from a dict: its known fields only."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
