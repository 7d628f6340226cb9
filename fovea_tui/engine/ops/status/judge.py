"""Judging: each section's verdict and reason, and the alerts, from the facts and the
thresholds in `policy` alone (no probe runs here, so judging twice gives the same report)."""

from __future__ import annotations

from datetime import datetime

from fovea_tui import formatting
from fovea_tui.engine.ops import policy
from fovea_tui.engine.ops.status.report import (
    CRITICAL,
    WARNING,
    Alert,
    BackupsSection,
    DatabaseSection,
    DiskSection,
    DrillSection,
    EncryptionSection,
    EnvFileSection,
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
from fovea_tui.formatting import plural


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
        _set(db, Verdict.FAILING, f"the database holds {plural(db.rows, 'row')}, far fewer than the "
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
    starting = [f"{svc.get('name')} still starting: {svc['starting']}" for svc in stack.services if svc.get("starting")]
    if starting and worst == Verdict.FINE:  # started and within its healthcheck's time: no alert
        why = f"compose project {stack.project}: " + "; ".join(starting)
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
        _set(drill, Verdict.STALE, f"{drill.summary}; older than {plural(drill.interval_days, 'day')}")
    else:
        _set(drill, Verdict.FINE, drill.summary)


def _judge_encryption(encryption: EncryptionSection) -> None:
    """Its alerts (env copies going off-site unencrypted, a key that no longer opens the newest
    copy) come from `engine.backups.encryption`; the loop below turns them into the verdict."""
    if not encryption.ok:
        _set(encryption, Verdict.UNKNOWN, encryption.error or "?")
    else:
        _set(encryption, Verdict.FINE, encryption.summary or "off-site copies encrypted")


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


def judge_restore(restore: RestoreSection, alerts: list[Alert]) -> None:
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
    elif status in ("interrupted", "rollback_failed", "held") or (status == "failed" and restore.install_touched):
        restore.headline = f"{status.replace('_', ' ')}{step}. {restore.state}"
        _set(restore, Verdict.FAILING, f"{what} {status.replace('_', ' ')}: {restore.message}")
        alerts.append(Alert(CRITICAL, "restore", restore.reason))
    elif status == "failed":
        why = restore.message.removeprefix("Nothing was changed: ")  # said once, not twice
        _set(restore, Verdict.WARNING, f"{what} failed before changing anything: {why}")
    elif restore.safety_copy:
        _set(restore, Verdict.WARNING, f"{what} ok, but its safety copy is not done: {restore.safety_copy}")
        alerts.append(Alert(WARNING, "restore", restore.reason))
    else:
        _set(restore, Verdict.FINE, f"{what} {status.replace('_', ' ')}")
    restore.summary = restore.reason


def judge(report: StatusReport, now: datetime | None = None) -> StatusReport:
    """Give every section its verdict and reason and rebuild the alerts, from the facts and
    `policy` alone (probing again is not needed; judging twice gives the same report)."""
    now = now or report.generated_at
    r = report
    alerts: list[Alert] = []
    judge_restore(r.restore, alerts)
    _judge_backups(r.backups, now, alerts)
    _judge_database(r.database, r.backups, now, alerts)
    _judge_volume(r.volume, r.sync, now, alerts)
    _judge_env(r.env_file, r.backups, now, alerts)
    if not _judge_unseen(r.model_cache):
        _set(r.model_cache, Verdict.FINE, f"volume {r.model_cache.volume}"
             + ("" if r.model_cache.exists else " (absent)") + "; needs no backup")
    if not _judge_unseen(r.redis):
        if r.redis.running:
            _set(r.redis, Verdict.FINE, f"{plural(r.redis.active, 'job')} active, {r.redis.waiting} waiting; needs no backup")
        else:
            _set(r.redis, Verdict.WARNING, "not running; needs no backup")
    _judge_stack(r.stack, alerts)
    _judge_disk(r.disk, alerts)
    _judge_drill(r.drill)
    _judge_schedule(r.schedule)
    _judge_encryption(r.encryption)
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
