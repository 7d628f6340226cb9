"""What the dashboard says about a StatusReport: pure functions, no widgets, easy to test.

Each card is one piece of state from the runbook's table (plus the last drill): its cost of
loss, its last copy and that copy's age, its size, and a verdict: fine, stale, missing or
failing. Sections the engine has not grown yet (backups, sync, drill, schedule) are read
tolerantly: whatever fields they carry, plus their `summary` line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import humanize

from fovea_tui.engine.ops.status import COST_OF_LOSS, StatusReport
from fovea_tui import formatting

FINE, STALE, MISSING, FAILING, UNKNOWN = "fine", "stale", "missing", "failing", "unknown"

BACKUP_STALE_AFTER = timedelta(hours=26)   # a nightly dump, with two hours of slack
SYNC_STALE_AFTER = timedelta(hours=50)     # the runbook's "slow cadence" for the videos

_DUMP_NAME = re.compile(r"fovea-(\d{8}T\d{6}Z|\d{4}-\d{2}-\d{2})\.sql\.gz")


@dataclass
class Card:
    key: str
    title: str
    verdict: str
    cost: str
    lines: list[str] = field(default_factory=list)


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    return None


def age(when: datetime | None, now: datetime) -> str:
    return formatting.ago(when, now)


def size(n: Any) -> str:
    return humanize.naturalsize(n, binary=True) if isinstance(n, (int, float)) else "?"


def _last_time(section: dict[str, Any], *keys: str) -> datetime | None:
    """The newest time a section reports, whatever its engineer named the field."""
    for key in keys:
        value = section.get(key)
        if isinstance(value, dict):
            value = value.get("time") or value.get("created_at") or value.get("finished_at")
        when = parse_time(value)
        if when is not None:
            return when
    return None


def newest_dump_on_disk(backups_dir: Path) -> tuple[datetime, int] | None:
    """Fallback when the status report has no backups section: newest dump by its name."""
    best: tuple[datetime, int] | None = None
    try:
        entries = list(backups_dir.iterdir())
    except OSError:
        return None
    for path in entries:
        match = _DUMP_NAME.fullmatch(path.name)
        if not match:
            continue
        stamp = match.group(1)
        fmt = "%Y%m%dT%H%M%SZ" if "T" in stamp else "%Y-%m-%d"
        when = datetime.strptime(stamp, fmt).replace(tzinfo=timezone.utc)
        if best is None or when > best[0]:
            try:
                best = (when, path.stat().st_size)
            except OSError:
                continue
    return best


def last_backup(report: StatusReport, backups_dir: Path | None = None) -> tuple[datetime | None, Any, str]:
    """(time, size, summary) of the newest backup."""
    section = report.sections.get("backups") or {}
    when = _last_time(section, "last_time", "last_backup", "newest", "last", "latest")
    summary = section.get("summary", "")
    size_ = None
    for key in ("last_backup", "newest", "last", "latest"):
        if isinstance(section.get(key), dict):
            size_ = section[key].get("size")
            break
    size_ = section.get("last_size", size_)
    if when is None and not section and backups_dir is not None:
        found = newest_dump_on_disk(backups_dir)
        if found:
            when, size_ = found
    return when, size_, summary


def _verdict_for_age(when: datetime | None, now: datetime, stale_after: timedelta) -> str:
    if when is None:
        return MISSING
    return STALE if now - when > stale_after else FINE


def _unseen_service(section: dict) -> tuple[list[str], str] | None:
    """Lines and verdict for the card of a service that needs no backup, when that service
    cannot be looked at (its probe failed, or it runs without Docker); None when it can."""
    if not section.get("ok"):
        return [section.get("error", "?")], UNKNOWN
    if not section.get("managed"):
        return ["not managed (no Docker)", "backup: none needed"], FINE
    return None


def cards(report: StatusReport, now: datetime, backups_dir: Path | None = None) -> list[Card]:
    s = report.sections
    out: list[Card] = []

    # --- application database
    db = s.get("database", {})
    backups = s.get("backups") or {}
    when, dump_size, summary = last_backup(report, backups_dir)
    lines = []
    if db.get("ok"):
        lines.append(f"{size(db.get('size'))} · {db.get('tables', 0)} tables · {db.get('rows', 0):,} rows")
    else:
        lines.append(f"unreachable: {db.get('error', '?')}")
    last = backups.get("last") if isinstance(backups.get("last"), dict) else {}
    detail = f"last backup {age(when, now)}" + (f" · {size(dump_size)}" if dump_size else "")
    if last.get("status"):
        detail += f" · {last['status']}"
    lines.append(detail)
    if backups.get("count"):
        offsite = " · off-site copy on" if backups.get("offsite") else " · no off-site copy"
        lines.append(f"{formatting.plural(backups['count'], 'dump')}, {size(backups.get('total_bytes'))}{offsite}")
    elif summary:
        lines.append(summary)
    verdict = _verdict_for_age(when, now, BACKUP_STALE_AFTER)
    if (not db.get("ok") or backups.get("ok") is False or backups.get("last_failed")
            or last.get("status") == "corrupt"):
        verdict = FAILING
    out.append(Card("database", "Application database", verdict, COST_OF_LOSS["database"], lines))

    # --- uploaded videos
    vol = s.get("volume", {})
    sync = s.get("sync") or {}
    lines = []
    if vol.get("ok"):
        lines.append(f"{size(vol.get('bytes'))} · {vol.get('files', 0):,} files")
    else:
        lines.append(vol.get("error", "volume unreadable"))
    synced = _last_time(sync, "last_time", "last_sync", "last", "latest")
    target = vol.get("target") or sync.get("target")
    if not target:
        lines.append("no sync target: the videos have no copy")
        verdict = MISSING
    else:
        lines.append(f"last sync {age(synced, now)} → {target}")
        verdict = _verdict_for_age(synced, now, SYNC_STALE_AFTER)
        if vol.get("new_files"):
            lines.append(f"{vol['new_files']:,} new files pending ({size(vol.get('new_bytes'))})")
    if sync.get("pending") or sync.get("error_count"):
        lines.append(sync.get("summary", ""))
    if (not vol.get("ok") or sync.get("ok") is False or sync.get("error_count")
            or sync.get("refused")):
        verdict = FAILING
    out.append(Card("volume", "Uploaded videos", verdict, COST_OF_LOSS["volume"], lines))

    # --- env file: copied with every dump
    env = s.get("env_file", {})
    lines = []
    if env.get("ok"):
        lines.append(f"{env.get('keys', 0)} keys (values hidden) · mode {env.get('mode', '?')}")
        lines.append(f"copied with every dump · last {age(when, now)}")
        verdict = _verdict_for_age(when, now, BACKUP_STALE_AFTER)
        if env.get("missing"):
            lines.append("lacks " + ", ".join(env["missing"]))
            verdict = STALE if verdict == FINE else verdict
        if env.get("world_readable"):
            lines.append("readable by every user: chmod 600")
            verdict = STALE if verdict == FINE else verdict
    else:
        lines.append(env.get("error", "env file unreadable"))
        verdict = FAILING
    out.append(Card("env_file", "Env file", verdict, COST_OF_LOSS["env_file"], lines))

    # --- model weights: none needed
    cache = s.get("model_cache", {})
    unseen = _unseen_service(cache)
    if unseen:
        lines, verdict = unseen
    else:
        lines = [f"volume {cache.get('volume')}" + ("" if cache.get("exists") else " (absent)"),
                 "backup: none needed"]
        verdict = FINE
    out.append(Card("model_cache", "Model weights", verdict, COST_OF_LOSS["model_cache"], lines))

    # --- redis: none needed, but say how many jobs a stop would interrupt
    redis = s.get("redis", {})
    unseen = _unseen_service(redis)
    if unseen:
        lines, verdict = unseen
    elif not redis.get("running"):
        lines, verdict = ["not running", "backup: none needed"], STALE
    else:
        lines = [f"{redis.get('active', 0)} jobs active · {redis.get('waiting', 0)} waiting",
                 "backup: none needed"]
        verdict = FINE
    out.append(Card("redis", "Redis queues", verdict, COST_OF_LOSS["redis"], lines))

    # --- the last drill
    drill = s.get("drill") or {}
    drilled = _last_time(drill, "last_time", "last", "latest")
    interval = drill.get("interval_days") or 90
    lines = [f"last drill {age(drilled, now)} · every {interval} days"]
    last = drill.get("last") if isinstance(drill.get("last"), dict) else {}
    if last:
        rto = last.get("rto_s")
        lines.append(("passed" if last.get("ok") else "FAILED") + (f" · RTO {formatting.human_duration(rto)}" if isinstance(rto, (int, float)) else ""))
    if drill.get("summary"):
        lines.append(drill["summary"])
    verdict = _verdict_for_age(drilled, now, timedelta(days=interval))
    if last and last.get("ok") is False:
        verdict = FAILING
    out.append(Card("drill", "Restore drill", verdict, "the proof that a restore works", lines))
    return out


def services(report: StatusReport) -> tuple[str, list[dict[str, Any]]]:
    """(caption, services) for the stack table."""
    stack = report.sections.get("stack", {})
    if not stack.get("ok"):
        return f"stack unavailable: {stack.get('error', '?')}", []
    if not stack.get("managed"):
        reason = str(stack.get("reason") or "no Docker engine").split(" (", 1)[0]
        return f"stack not managed here: {reason}", []
    return f"compose project {stack.get('project')}", list(stack.get("services", []))
