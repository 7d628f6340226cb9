"""What the dashboard shows and `fovea-tui status` prints: each piece of state in the
runbook's table, the stack, the newest restore, and the alerts an operator should act on.

Two stages. Probing gathers facts into typed sections; every probe reports its own failure in
its section (`ok=False`, `error`) instead of failing the whole report: a dashboard that goes
blank because Redis is down helps nobody. Judging (`judge`) then gives each section its
verdict and reason and builds the alerts, from the facts and the thresholds in `policy`
alone, so `status`, `status --json` and the dashboard cannot disagree.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from fovea_tui import formatting
from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.inventory import status_summary
from fovea_tui.engine.backups.verify_cache import cached_status
from fovea_tui.engine.drill.run import drill_status
from fovea_tui.engine.infra.database import open_database
from fovea_tui.engine.infra.jobs import latest_state
from fovea_tui.engine.infra.stack import Stack, redis_queue_counts
from fovea_tui.engine.ops import policy
from fovea_tui.engine.ops.schedule import status_section as schedule_facts
from fovea_tui.engine.restore import describe_status
from fovea_tui.engine.restore.runner import state_words
from fovea_tui.engine.volume.sync import read_summary, volume_sync_summary
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import FoveaError

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
    path: str = ""
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

    @property
    def needs_operator(self) -> bool:
        """A banner on every screen: the install is being changed or was left half-changed."""
        return self.verdict in (Verdict.ACTIVE, Verdict.FAILING)


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
    alerts: list[Alert] = field(default_factory=list)

    SECTIONS = ("database", "volume", "env_file", "model_cache", "redis", "stack", "disk", "backups",
                "drill", "schedule", "sync", "restore")

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


# ------------------------------------------------------------------------------ probing


class _Probe:
    """Shared handles for one status run (one docker connection, one env file read)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack: Stack | None = None
        self._stack_error: str | None = None
        self._env: EnvFile | None = None
        self._env_error: str | None = None

    def stack(self):
        if self._stack is None and self._stack_error is None:
            try:
                self._stack = Stack.connect(self.settings.install.compose_project)
            except FoveaError as exc:
                self._stack_error = str(exc)
        if self._stack is None:
            raise _Unavailable(self._stack_error or "no Docker engine")
        return self._stack

    def env(self) -> EnvFile:
        if self._env is None and self._env_error is None:
            try:
                self._env = EnvFile.load(self.settings.install.env_file)
            except FoveaError as exc:
                self._env_error = str(exc)
        if self._env is None:
            raise _Unavailable(self._env_error or "env file unreadable")
        return self._env


class _Unavailable(FoveaError):
    """A probe's prerequisite is missing; the section says so."""


def _guard(section: S, fn: Callable[[S], None]) -> S:
    """Fill `section` with `fn`; a FoveaError becomes the section's error."""
    try:
        fn(section)
    except FoveaError as exc:
        section.fail(str(exc))
    return section


def _database(probe: _Probe, section: DatabaseSection) -> None:
    settings = probe.settings
    stack = probe.stack() if settings.database.mode == "docker" else None
    env = None
    if settings.database.mode == "direct" and not settings.database.url:
        env = probe.env()
    db = open_database(settings, env=env, stack=stack)
    section.target = db.describe()
    section.server_version = db.ping()
    section.reachable = True
    rows = db.table_rows()
    section.size = db.database_size()
    section.tables = len(rows)
    section.rows = sum(rows.values())
    section.migrations = len(db.applied_migrations())


def scan_volume(path: Path, since: float | None = None) -> dict[str, Any]:
    """Files and bytes under the volume, walking with scandir (no file is opened); with
    `since` (a POSIX time), also the files written since then: blobs are immutable, so
    those are the ones a sync that started at `since` cannot have copied."""
    files = total = new_files = new_bytes = 0
    stack = [path]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        files += 1
                        total += st.st_size
                        if since is not None and st.st_mtime >= since:
                            new_files += 1
                            new_bytes += st.st_size
        except PermissionError:
            raise FoveaError(f"volume directory {directory} is not readable by this user") from None
    if since is None:
        return {"files": files, "bytes": total}
    return {"files": files, "bytes": total, "new_files": new_files, "new_bytes": new_bytes}


def _volume(probe: _Probe, section: VolumeSection) -> None:
    path = Path(probe.settings.volume.path)
    section.path = str(path)
    section.target = probe.settings.volume.target or None
    if not path.is_dir():
        raise FoveaError(f"volume path {path} does not exist or is not a directory")
    last = read_summary(probe.settings) if section.target else None
    started = datetime.fromisoformat(last["started_at"]) if last and last.get("started_at") else None
    scan = scan_volume(path, since=started.timestamp() if started else None)
    section.files, section.bytes = scan["files"], scan["bytes"]
    if started is not None:
        section.new_files, section.new_bytes = scan["new_files"], scan["new_bytes"]
        section.new_since = started.isoformat()


def _env_file(probe: _Probe, section: EnvFileSection) -> None:
    env = probe.env()
    mode = stat.S_IMODE(env.path.stat().st_mode)
    section.path = str(env.path)
    section.keys = len(env.keys())
    section.missing = env.missing_critical()
    section.mode = f"{mode:04o}"
    section.world_readable = bool(mode & 0o004)


def _stack(probe: _Probe, section: StackSection) -> None:
    try:
        stack = probe.stack()
    except _Unavailable as exc:
        if probe.settings.database.mode == "direct":
            section.managed, section.reason = False, str(exc)
            return
        raise
    services = stack.services()
    if not services:
        raise FoveaError(f"no containers of compose project {stack.project!r} on this Docker engine "
                         "(check install.compose_project)")
    section.managed, section.project = True, stack.project
    section.services = [s.as_dict() for s in services]


def _model_cache(probe: _Probe, section: ModelCacheSection) -> None:
    try:
        stack = probe.stack()
    except _Unavailable:
        return
    section.managed = True
    section.volume = name = f"{stack.project}_model-cache"
    volumes = [v for v in stack.client.volumes.list() if v.name == name]
    section.exists = bool(volumes)
    if volumes:
        section.mountpoint = volumes[0].attrs.get("Mountpoint")


def _redis(probe: _Probe, section: RedisSection) -> None:
    try:
        stack = probe.stack()
    except _Unavailable:
        return
    section.managed = True
    section.running = any(s.name == "redis" and s.running for s in stack.services())
    if not section.running:
        return
    port = ""
    try:
        port = probe.env().get("REDIS_PORT")
    except _Unavailable:
        pass
    section.queues = redis_queue_counts(stack, port=port)
    section.active = sum(q["active"] for q in section.queues.values())
    section.waiting = sum(q["wait"] for q in section.queues.values())


def _disk(settings: Settings, section: DiskSection) -> None:
    path = settings.backups_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    section.path = str(settings.backups_dir)
    section.total, section.free = usage.total, usage.free
    section.free_fraction = round(usage.free / usage.total, 4) if usage.total else 0.0


def _backups(settings: Settings, now: datetime, section: BackupsSection) -> None:
    """The newest regular dump and its manifest, totals, and the inventory's counts."""
    directory = settings.backups_dir
    section.dir = str(directory)
    section.offsite = settings.backups.offsite or None
    try:
        dumps = mf.list_dumps(directory)
    except OSError as exc:
        raise FoveaError(f"backups directory {directory} cannot be read: {exc.strerror or exc}") from None
    section.count = len(dumps)
    section.pre_restore = sum(1 for _, parsed in dumps if parsed.kind == "pre-restore")
    for path, _ in dumps:
        try:
            section.total_bytes += path.stat().st_size
        except FileNotFoundError:
            pass
    regular = [(path, parsed) for path, parsed in dumps if parsed.kind == "regular"]
    if regular:
        path, parsed = regular[-1]
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        last = LastBackup(name=parsed.name, time=parsed.time, age_s=int(max(0.0, (now - parsed.time).total_seconds())),
                          size=size, kind=parsed.kind, legacy=parsed.legacy)
        try:
            manifest = mf.read_for(path)
        except mf.ManifestError as exc:
            manifest = None
            section.found.append(Alert(WARNING, "backups", str(exc)))
        if manifest is not None:
            last.env_copied = bool(manifest.env_file) and mf.env_copy_path(path).exists()
            last.warnings = list(manifest.warnings)
            last.tables = len(manifest.tables)
            last.rows = sum(manifest.tables.values())
        else:
            last.env_copied = mf.env_copy_path(path).exists()
        try:
            last.status = cached_status(settings, path) or ("unverified" if manifest is None else "unchecked")
        except (FoveaError, OSError, ValueError):
            last.status = None
        section.last = last
        section.summary = (f"last backup {formatting.ago(last.time, now)}, {formatting.size(size)}"
                           + (f", {len(regular)} in total" if len(regular) > 1 else ""))
    else:
        section.summary = f"no backup in {directory}"
    inventory = status_summary(settings, {"last": {"name": section.last.name, "status": section.last.status}}
                               if section.last else {})
    section.counts = inventory.get("counts") or {}
    section.corrupt = inventory.get("corrupt") or []
    section.unrecognised = inventory.get("unrecognised") or []
    section.newest_verified = inventory.get("newest_verified")
    section.inventory_error = inventory.get("inventory_error")
    section.found += [Alert(**a) for a in inventory.get("alerts") or []]


def _restore(settings: Settings, section: RestoreSection) -> None:
    state = latest_state(settings, "restore")
    if state is None:
        return
    section.job, section.status, section.phase, section.alive = state.id, state.status, state.phase, state.alive
    step = state.current_step
    if step is not None:
        section.step, section.step_title = step.get("name"), step.get("title")
    raw = state.as_state()
    section.message = describe_status(raw)
    section.state = state_words(raw)
    section.dump = state.facts.get("dump") or Path(str(state.params.get("dump", ""))).name or None
    section.updated_at = state.updated_at or None
    records = {s.get("name"): s.get("status") for s in state.steps}
    facts = state.facts
    section.install_touched = bool(facts.get("database_dropped") and not facts.get("safety_restored")) or bool(
        facts.get("was_running") and records.get("start") != "ok")
    if state.status == "interrupted":
        section.can_resume, section.can_rollback = state.phase != "rollback", True
    elif state.status == "rollback_failed":
        section.can_rollback = True
    elif state.status == "failed" and section.install_touched:
        section.can_resume = section.can_rollback = True
    section.next = [f"fovea-tui restore --follow {state.id}"] if state.active else []
    section.next += [f"fovea-tui restore --resume {state.id}"] if section.can_resume else []
    section.next += [f"fovea-tui restore --rollback {state.id}"] if section.can_rollback else []


def restore_status(settings: Settings) -> RestoreSection:
    """Only the restore section, probed and judged: cheap enough for a face to poll every
    second or two while a restore may be running."""
    section = _guard(RestoreSection(), lambda s: _restore(settings, s))
    _judge_restore(section, [])
    return section


def collect_status(settings: Settings, now: datetime | None = None) -> StatusReport:
    """Probe everything, then judge; never raises for an unreachable part."""
    now = now or datetime.now(UTC)
    probe = _Probe(settings)
    report = StatusReport(generated_at=now)
    _guard(report.database, lambda s: _database(probe, s)).mode = settings.database.mode
    _guard(report.volume, lambda s: _volume(probe, s))
    _guard(report.env_file, lambda s: _env_file(probe, s))
    _guard(report.model_cache, lambda s: _model_cache(probe, s))
    _guard(report.redis, lambda s: _redis(probe, s))
    _guard(report.stack, lambda s: _stack(probe, s))
    _guard(report.disk, lambda s: _disk(settings, s))
    _guard(report.backups, lambda s: _backups(settings, now, s))
    report.drill = _facts(DrillSection, lambda: drill_status(settings, now), interval_days=settings.drill.interval_days)
    if isinstance(report.drill.last, dict):
        report.drill.last = record_from(LastDrill, report.drill.last)
    report.schedule = _facts(ScheduleSection, lambda: schedule_facts(settings, now))
    report.sync = _facts(SyncSection, lambda: volume_sync_summary(settings, now))
    _guard(report.restore, lambda s: _restore(settings, s))
    return judge(report, now)


def _facts(cls: type[S], fn: Callable[[], dict[str, Any]], **defaults: Any) -> S:
    """A section from a fact module's dict; its FoveaError becomes the section's error."""
    try:
        return section_from(cls, fn(), **defaults)
    except FoveaError as exc:
        return cls(ok=False, error=str(exc), **defaults)


# ------------------------------------------------------------------------------ judging


def _set(section: Section, verdict: Verdict, reason: str) -> None:
    section.verdict, section.reason = verdict, reason


def _last_copy(b: BackupsSection, now: datetime) -> tuple[Verdict, str]:
    """The verdict of the database's last copy alone: missing, corrupt, old, or fine."""
    if not b.ok:
        return Verdict.FAILING, b.error or "backups unreadable"
    last = b.last
    if last is None:
        return Verdict.MISSING, f"no backup in {b.dir}"
    if last.status == "corrupt":
        return Verdict.FAILING, f"the last backup {last.name} is corrupt"
    if now - last.time > policy.BACKUP_STALE_AFTER:
        return Verdict.STALE, (f"last backup {formatting.ago(last.time, now)}, "
                               f"older than {policy.hours(policy.BACKUP_STALE_AFTER)} h")
    return Verdict.FINE, f"last backup {formatting.ago(last.time, now)}"


def _judge_backups(b: BackupsSection, now: datetime, alerts: list[Alert]) -> None:
    _set(b, *_last_copy(b, now))
    last = b.last
    if not b.ok:
        alerts.append(Alert(CRITICAL, "backups", b.reason))
        return
    if last is None:
        alerts.append(Alert(CRITICAL, "backups", f"no backup yet in {b.dir}"))
        return
    if b.verdict == Verdict.FAILING:
        alerts.append(Alert(CRITICAL, "backups", b.reason))
    age = now - last.time
    if age > policy.BACKUP_STALE_AFTER:
        alerts.append(Alert(CRITICAL, "backups",
                            f"no backup in {int(age.total_seconds() // 3600)} h (last: {last.name})"))
    if not last.env_copied:
        alerts.append(Alert(WARNING, "backups", "env file not copied with the last backup"))
    alerts += [Alert(WARNING, "backups", f"{last.name}: {w}") for w in last.warnings]


def _judge_database(db: DatabaseSection, backups: BackupsSection, now: datetime, alerts: list[Alert]) -> None:
    last = backups.last
    if last is not None and last.rows is not None:
        db.expected_tables, db.expected_rows, db.expected_from = last.tables, last.rows, last.name
    if not db.ok:
        _set(db, Verdict.FAILING, f"unreachable: {db.error}")
        alerts.append(Alert(CRITICAL, "database", f"database unreachable: {db.error}"))
        return
    if db.tables == 0:
        _set(db, Verdict.FAILING, "the database has no tables" + (
            f" (the newest dump {db.expected_from} has {db.expected_tables})" if db.expected_tables else ""))
        alerts.append(Alert(CRITICAL, "database", db.reason))
        return
    if db.expected_rows and db.rows < db.expected_rows * policy.DATABASE_ROWS_FAILING_FRACTION:
        _set(db, Verdict.FAILING, f"the database holds {db.rows:,} rows, far fewer than the "
                                  f"{db.expected_rows:,} of the newest dump {db.expected_from}")
        alerts.append(Alert(CRITICAL, "database", db.reason))
        return
    # A healthy database is as safe as its last copy (other dumps' troubles are the backups').
    _set(db, *_last_copy(backups, now))


def _judge_volume(vol: VolumeSection, sync: SyncSection, now: datetime, alerts: list[Alert]) -> None:
    if not sync.ok:
        _set(sync, Verdict.FAILING, sync.error or "sync state unreadable")
    elif not sync.target:
        _set(sync, Verdict.MISSING, "no volume.target configured: the videos have no copy")
    elif sync.age_s is None:
        _set(sync, Verdict.MISSING, f"never synced completely to {sync.target}")
    elif sync.error_count or sync.refused:
        _set(sync, Verdict.FAILING, sync.summary)
    elif sync.age_s > policy.SYNC_STALE_AFTER.total_seconds():
        _set(sync, Verdict.STALE, f"{sync.summary}; older than {policy.hours(policy.SYNC_STALE_AFTER)} h")
    elif sync.found:
        _set(sync, Verdict.WARNING, sync.found[0].message)
    else:
        _set(sync, Verdict.FINE, sync.summary)
    if not vol.ok:
        _set(vol, Verdict.FAILING, vol.error or "volume unreadable")
        alerts.append(Alert(CRITICAL, "volume", vol.reason))
        return
    if vol.files == 0:
        alerts.append(Alert(WARNING, "volume", f"volume {vol.path} is empty: is it mounted?"))
        if sync.verdict == Verdict.FINE:
            _set(vol, Verdict.WARNING, f"volume {vol.path} is empty: is it mounted?")
            return
    _set(vol, sync.verdict, sync.reason)


def _judge_env(env: EnvFileSection, backups: BackupsSection, now: datetime, alerts: list[Alert]) -> None:
    if not env.ok:
        _set(env, Verdict.FAILING, env.error or "env file unreadable")
        alerts.append(Alert(CRITICAL, "env_file", env.reason))
        return
    last = backups.last
    problems = []
    if env.missing:
        problems.append("lacks " + ", ".join(env.missing))
        alerts.append(Alert(WARNING, "env_file", "env file lacks " + ", ".join(env.missing)))
    if env.world_readable:
        problems.append("readable by every user: chmod 600")
        alerts.append(Alert(WARNING, "env_file", f"env file {env.path} is readable by every user (chmod 600)"))
    if last is None:
        _set(env, Verdict.MISSING, "no backup holds a copy of it")
    elif now - last.time > policy.BACKUP_STALE_AFTER:
        _set(env, Verdict.STALE, f"last copied {formatting.ago(last.time, now)}")
    elif not last.env_copied:
        _set(env, Verdict.STALE, "not copied with the last backup")
    elif problems:
        _set(env, Verdict.STALE, "; ".join(problems))
    else:
        _set(env, Verdict.FINE, f"copied with the last backup {formatting.ago(last.time, now)}")


def _judge_unseen(section: ModelCacheSection | RedisSection) -> bool:
    """Verdict of a service that needs no backup when it cannot be looked at; True if set."""
    if not section.ok:
        _set(section, Verdict.UNKNOWN, section.error or "?")
        return True
    if not section.managed:
        _set(section, Verdict.FINE, "not managed (no Docker); needs no backup")
        return True
    return False


def _judge_stack(stack: StackSection, alerts: list[Alert]) -> None:
    if not stack.ok:
        _set(stack, Verdict.FAILING, stack.error or "stack unavailable")
        alerts.append(Alert(CRITICAL, "stack", stack.reason))
        return
    if not stack.managed:
        stack.verdict = Verdict.FINE  # keep `reason`: why it is not managed
        return
    worst, why = Verdict.FINE, f"compose project {stack.project}: every service running"
    for svc in stack.services:
        if svc.get("state") != "running":
            alerts.append(Alert(WARNING, "stack", f"service {svc.get('name')} is {svc.get('state')}"))
            if worst == Verdict.FINE:
                worst, why = Verdict.WARNING, alerts[-1].message
        elif svc.get("health") == "unhealthy":
            alerts.append(Alert(CRITICAL, "stack", f"service {svc.get('name')} is unhealthy"))
            worst, why = Verdict.FAILING, alerts[-1].message
    _set(stack, worst, why)


def _judge_disk(disk: DiskSection, alerts: list[Alert]) -> None:
    if not disk.ok:
        _set(disk, Verdict.UNKNOWN, disk.error or "?")
    elif disk.free_fraction < policy.DISK_WARN_FRACTION:
        _set(disk, Verdict.WARNING, f"less than {int(policy.DISK_WARN_FRACTION * 100)}% free under {disk.path}")
        alerts.append(Alert(WARNING, "disk", disk.reason))
    else:
        _set(disk, Verdict.FINE, f"{int(disk.free_fraction * 100)}% free under {disk.path}")


def _judge_drill(drill: DrillSection) -> None:
    last = drill.last
    if last is None:
        _set(drill, Verdict.MISSING, drill.summary or "no restore drill on record")
    elif not last.ok:
        _set(drill, Verdict.FAILING, drill.summary)
    elif drill.overdue:
        _set(drill, Verdict.STALE, f"{drill.summary}; older than {drill.interval_days} days")
    else:
        _set(drill, Verdict.FINE, drill.summary)


def _judge_schedule(schedule: ScheduleSection) -> None:
    critical = [a for a in schedule.found if a.level == CRITICAL]
    if not schedule.ok:
        _set(schedule, Verdict.UNKNOWN, schedule.error or "?")
    elif not schedule.installed:
        _set(schedule, Verdict.MISSING, schedule.summary or "no nightly schedule")
    elif critical:
        failed = (schedule.last_run or {}).get("outcome") not in (None, "ok")
        _set(schedule, Verdict.FAILING if failed else Verdict.STALE, critical[0].message)
    else:
        _set(schedule, Verdict.FINE, schedule.summary)


def _judge_restore(restore: RestoreSection, alerts: list[Alert]) -> None:
    if not restore.ok:
        _set(restore, Verdict.UNKNOWN, restore.error or "?")
        return
    status = restore.status
    if status is None:
        _set(restore, Verdict.FINE, "no restore on record")
        restore.summary = restore.reason
        return
    what = f"restore {restore.job} ({restore.dump or '?'})"
    step = f" at step {restore.step_title}" if restore.step_title else ""
    if status == "pending" and not restore.alive:
        _set(restore, Verdict.WARNING, f"{what} was created but its runner never started; nothing was changed")
    elif status in ("pending", "running", "waiting", "rolling_back"):
        if status == "waiting":
            restore.headline = "waits for the operator to confirm"
        else:
            doing = {"rolling_back": "rolling back", "pending": "starting"}.get(status, "running")
            restore.headline = doing + step
        _set(restore, Verdict.ACTIVE, f"{what} {restore.headline}")
        alerts.append(Alert(CRITICAL, "restore", f"{restore.reason}: follow it with `{restore.next[0]}`"))
    elif status in ("interrupted", "rollback_failed") or (status == "failed" and restore.install_touched):
        restore.headline = f"{status.replace('_', ' ')}{step}. {restore.state}"
        _set(restore, Verdict.FAILING, f"{what} {status.replace('_', ' ')}: {restore.message}")
        alerts.append(Alert(CRITICAL, "restore", restore.reason))
    elif status == "failed":
        _set(restore, Verdict.WARNING, f"{what} failed before changing anything: {restore.message}")
    else:
        _set(restore, Verdict.FINE, f"{what} {status.replace('_', ' ')}")
    restore.summary = restore.reason


def judge(report: StatusReport, now: datetime | None = None) -> StatusReport:
    """Give every section its verdict and reason and rebuild the alerts, from the facts and
    `policy` alone (probing again is not needed; judging twice gives the same report)."""
    now = now or report.generated_at
    r = report
    alerts: list[Alert] = []
    _judge_restore(r.restore, alerts)
    _judge_backups(r.backups, now, alerts)
    _judge_database(r.database, r.backups, now, alerts)
    _judge_volume(r.volume, r.sync, now, alerts)
    _judge_env(r.env_file, r.backups, now, alerts)
    if not _judge_unseen(r.model_cache):
        _set(r.model_cache, Verdict.FINE, f"volume {r.model_cache.volume}"
             + ("" if r.model_cache.exists else " (absent)") + "; needs no backup")
    if not _judge_unseen(r.redis):
        if r.redis.running:
            _set(r.redis, Verdict.FINE, f"{r.redis.active} jobs active, {r.redis.waiting} waiting; needs no backup")
        else:
            _set(r.redis, Verdict.WARNING, "not running; needs no backup")
    _judge_stack(r.stack, alerts)
    _judge_disk(r.disk, alerts)
    _judge_drill(r.drill)
    _judge_schedule(r.schedule)
    for section in r.sections().values():
        alerts += section.found
    for name, section in r.sections().items():
        # Never FINE beside an alert of its own: the alert's level says how far from fine.
        own = [a for a in alerts if a.subject == name]
        if own and section.verdict == Verdict.FINE:
            worst = next((a for a in own if a.level == CRITICAL), own[0])
            _set(section, Verdict.FAILING if worst.level == CRITICAL else Verdict.WARNING, worst.message)
    report.alerts = alerts
    return report
