"""Probing: the facts of each section, gathered once per report (one Docker connection, one
env file read). Every probe reports its own failure in its section (`ok=False`, `error`)
instead of failing the whole report: a dashboard that goes blank because Redis is down helps
nobody."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui import formatting
from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.encryption import encryption_status
from fovea_tui.engine.backups.inventory import status_summary
from fovea_tui.engine.backups.verify_cache import cached_status
from fovea_tui.engine.drill.run import drill_status
from fovea_tui.engine.infra.database import open_database
from fovea_tui.engine.infra.jobs import latest_state
from fovea_tui.engine.infra.stack import Stack, redis_queue_counts
from fovea_tui.engine.ops.schedule import status_section as schedule_facts
from fovea_tui.engine.ops.status.judge import judge, judge_restore
from fovea_tui.engine.ops.status.report import (
    WARNING,
    Alert,
    BackupsSection,
    DatabaseSection,
    DiskSection,
    DrillSection,
    EncryptionSection,
    EnvFileSection,
    LastBackup,
    LastDrill,
    ModelCacheSection,
    RedisSection,
    RestoreSection,
    S,
    ScheduleSection,
    StackSection,
    StatusReport,
    SyncSection,
    VolumeSection,
    record_from,
    section_from,
)
from fovea_tui.engine.restore import check_services, describe_status, safety_copy
from fovea_tui.engine.restore.runner import rollback_plan, state_words
from fovea_tui.engine.volume.storage import video_storage
from fovea_tui.engine.volume.sync import read_summary, volume_sync_summary
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import FoveaError


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


def scan_bucket(bucket, since: float | None = None) -> dict[str, Any]:
    """Objects and bytes in the app's video bucket (listed, nothing read); with `since`, also
    the objects written since then."""
    files = total = new_files = new_bytes = 0
    for obj in bucket.iter_objects(""):
        files += 1
        total += obj.size
        if since is not None and obj.mtime.timestamp() >= since:
            new_files += 1
            new_bytes += obj.size
    if since is None:
        return {"files": files, "bytes": total}
    return {"files": files, "bytes": total, "new_files": new_files, "new_bytes": new_bytes}


def _volume(probe: _Probe, section: VolumeSection) -> None:
    """Where the videos live (VIDEO_STORAGE_TYPE: the volume, the app's bucket, or both) and
    how much is there."""
    storage = video_storage(probe.settings)
    path = Path(probe.settings.volume.path)
    section.path, section.storage = storage.describe(), storage.kind
    section.target = probe.settings.volume.target or None
    if storage.uses_volume and not path.is_dir():
        raise FoveaError(f"volume path {path} does not exist or is not a directory")
    last = read_summary(probe.settings) if section.target else None
    started = datetime.fromisoformat(last["started_at"]) if last and last.get("started_at") else None
    since = started.timestamp() if started else None
    counts: dict[str, int] = {}
    parts = ([scan_volume(path, since=since)] if storage.uses_volume else []) + \
            ([scan_bucket(storage.open_bucket(), since=since)] if storage.uses_bucket else [])
    for part in parts:
        for key, value in part.items():
            counts[key] = counts.get(key, 0) + value
    section.files, section.bytes = counts.get("files", 0), counts.get("bytes", 0)
    if started is not None:
        section.new_files, section.new_bytes = counts.get("new_files", 0), counts.get("new_bytes", 0)
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
    raw = check_services(settings, state.as_state())
    section.message = describe_status(raw)
    section.state = state_words(raw)
    section.rollback_plan = rollback_plan(raw)
    section.dump = state.facts.get("dump") or Path(str(state.params.get("dump", ""))).name or None
    section.updated_at = state.updated_at or None
    records = {s.get("name"): s.get("status") for s in state.steps}
    facts = state.facts
    copy = safety_copy(raw) or {}
    if state.status == "ok" and copy.get("status") in ("failed", "interrupted"):
        section.safety_copy = copy.get("detail") or (
            f"the safety dump from {copy.get('renamed_to')} was interrupted; {copy.get('renamed_to')} is kept: "
            f"`fovea-tui restore --resume {state.id}` writes it")
    section.install_touched = bool(facts.get("database_dropped") and not facts.get("safety_restored")) or bool(
        facts.get("was_running") and records.get("start") != "ok")
    if state.status == "interrupted":
        section.can_resume, section.can_rollback = state.phase != "rollback", True
    elif state.status == "rollback_failed":
        section.can_rollback = True
    elif state.status == "held" or (state.status == "failed" and section.install_touched):
        section.can_resume = section.can_rollback = True
    section.next = [f"fovea-tui restore --follow {state.id}"] if state.active else []
    section.next += [f"fovea-tui restore --resume {state.id}"] if section.can_resume else []
    if state.status == "held":  # videos still missing: bring them back, or accept what the backend deletes
        section.next += [f"fovea-tui restore --resume {state.id} --allow-missing-videos"]
    section.next += [f"fovea-tui restore --rollback {state.id}"] if section.can_rollback else []


def restore_status(settings: Settings) -> RestoreSection:
    """Only the restore section, probed and judged: cheap enough for a face to poll every
    second or two while a restore may be running."""
    section = _guard(RestoreSection(), lambda s: _restore(settings, s))
    judge_restore(section, [])
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
    report.encryption = _facts(EncryptionSection, lambda: encryption_status(settings))
    return judge(report, now)


def _facts(cls: type[S], fn: Callable[[], dict[str, Any]], **defaults: Any) -> S:
    """A section from a fact module's dict; its FoveaError becomes the section's error."""
    try:
        return section_from(cls, fn(), **defaults)
    except FoveaError as exc:
        return cls(ok=False, error=str(exc), **defaults)
