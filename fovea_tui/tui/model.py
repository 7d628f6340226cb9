"""What the dashboard draws from a StatusReport: pure functions, no widgets, easy to test.

Each card is one piece of state from the runbook's table (plus the last drill): its cost of
loss, its last copy and that copy's age, its size, and the verdict the engine gave it
(`engine.ops.status.judge`). Nothing here decides: it only puts the engine's facts in words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fovea_tui import formatting
from fovea_tui.engine.ops.status import COST_OF_LOSS, StatusReport
from fovea_tui.formatting import plural

#: Card key -> the report section whose verdict it shows.
CARD_SECTIONS = ("database", "volume", "env_file", "model_cache", "redis", "drill")


@dataclass
class Card:
    key: str
    title: str
    verdict: str
    cost: str
    reason: str = ""
    lines: list[str] = field(default_factory=list)


def parse_time(value: Any) -> datetime | None:
    """An ISO time (or POSIX seconds) from an engine record, in UTC when it has no zone."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def age(when: datetime | None, now: datetime) -> str:
    return formatting.ago(when, now)


size = formatting.size


def cards(report: StatusReport, now: datetime) -> list[Card]:
    out: list[Card] = []

    # --- application database
    db, backups = report.database, report.backups
    last = backups.last
    lines = []
    if db.ok:
        lines.append(f"{size(db.size)} · {plural(db.tables, 'table')} · {plural(db.rows, 'row')}")
    else:
        lines.append(f"unreachable: {db.error}")
    detail = f"last backup {age(last.time if last else None, now)}"
    if last:
        detail += f" · {size(last.size)}" + (f" · {last.status}" if last.status else "")
    lines.append(detail)
    if backups.count:
        offsite = " · off-site copy on" if backups.offsite else " · no off-site copy"
        lines.append(f"{formatting.plural(backups.count, 'dump')}, {size(backups.total_bytes)}{offsite}")
    elif backups.summary:
        lines.append(backups.summary)
    if db.verdict == "failing" and db.ok:
        lines.insert(1, db.reason)
    out.append(Card("database", "Application database", db.verdict, COST_OF_LOSS["database"], db.reason, lines))

    # --- uploaded videos
    vol, sync = report.volume, report.sync
    lines = []
    if vol.ok:
        lines.append(f"{size(vol.bytes)} · {plural(vol.files, 'file')}"
                     + (f" in {vol.path}" if vol.storage in ("s3", "hybrid") else ""))
    else:
        lines.append(vol.error or "volume unreadable")
    target = vol.target or sync.target
    if not target:
        lines.append("no sync target: the videos have no copy")
    else:
        synced = parse_time(sync.last)
        lines.append(f"last sync {age(synced, now)} → {target}")
        if vol.new_files:
            lines.append(f"{plural(vol.new_files, 'new file')} pending ({size(vol.new_bytes)})")
    if sync.pending or sync.error_count:
        lines.append(sync.summary)
    out.append(Card("volume", "Uploaded videos", vol.verdict, COST_OF_LOSS["volume"], vol.reason, lines))

    # --- env file: copied with every dump
    env = report.env_file
    lines = []
    if env.ok:
        lines.append(f"{plural(env.keys, 'key')} (values hidden) · mode {env.mode}")
        lines.append(f"copied with every dump · last {age(last.time if last else None, now)}")
        if env.missing:
            lines.append("lacks " + ", ".join(env.missing))
        if env.world_readable:
            lines.append("readable by every user: chmod 600")
        if last is not None and not last.env_copied:
            lines.append("not copied with the last backup")
    else:
        lines.append(env.error or "env file unreadable")
    out.append(Card("env_file", "Env file", env.verdict, COST_OF_LOSS["env_file"], env.reason, lines))

    # --- model weights: none needed
    cache = report.model_cache
    if not cache.ok:
        lines = [cache.error or "?"]
    elif not cache.managed:
        lines = ["not managed (no Docker)", "backup: none needed"]
    else:
        lines = [f"volume {cache.volume}" + ("" if cache.exists else " (absent)"), "backup: none needed"]
    out.append(Card("model_cache", "Model weights", cache.verdict, COST_OF_LOSS["model_cache"], cache.reason, lines))

    # --- redis: none needed, but say how many jobs a stop would interrupt
    redis = report.redis
    if not redis.ok:
        lines = [redis.error or "?"]
    elif not redis.managed:
        lines = ["not managed (no Docker)", "backup: none needed"]
    elif not redis.running:
        lines = ["not running", "backup: none needed"]
    else:
        lines = [f"{plural(redis.active, 'job')} active · {redis.waiting} waiting", "backup: none needed"]
    out.append(Card("redis", "Redis queues", redis.verdict, COST_OF_LOSS["redis"], redis.reason, lines))

    # --- the last drill
    drill = report.drill
    drilled = parse_time(drill.last_time)
    lines = [f"last drill {age(drilled, now)} · every {plural(drill.interval_days, 'day')}"]
    if drill.last:
        rto = drill.last.rto_s
        lines.append(("passed" if drill.last.ok else "FAILED")
                     + (f" · RTO {formatting.human_duration(rto)}" if isinstance(rto, (int, float)) else ""))
    if drill.summary:
        lines.append(drill.summary)
    out.append(Card("drill", "Restore drill", drill.verdict, "the proof that a restore works", drill.reason, lines))
    return out


def services(report: StatusReport) -> tuple[str, list[dict[str, Any]]]:
    """(caption, services) for the stack table."""
    stack = report.stack
    if not stack.ok:
        return f"stack unavailable: {stack.error}", []
    if not stack.managed:
        reason = str(stack.reason or "no Docker engine").split(" (", 1)[0]
        return f"stack not managed here: {reason}", []
    return f"compose project {stack.project}", list(stack.services)
