"""A canned StatusReport: for snapshot tests and for building screens without an install.

Only facts are canned; the verdicts and alerts come from the engine's `judge`, as they do for a
real install.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fovea_tui.engine.ops.status import (
    Alert,
    BackupsSection,
    DatabaseSection,
    DiskSection,
    DrillSection,
    EnvFileSection,
    LastBackup,
    ModelCacheSection,
    RedisSection,
    ScheduleSection,
    StackSection,
    StatusReport,
    SyncSection,
    VolumeSection,
    judge,
)

SAMPLE_NOW = datetime(2026, 6, 2, 9, 30, tzinfo=UTC)


def sample_report(now: datetime = SAMPLE_NOW, *, healthy: bool = True) -> StatusReport:
    last_dump = now - timedelta(hours=7, minutes=15)
    services: list[dict[str, Any]] = [
        {"name": "postgres", "container": "fovea-postgres-1", "state": "running", "health": "healthy",
         "image": "pgvector/pgvector:pg16"},
        {"name": "redis", "container": "fovea-redis-1", "state": "running", "health": "healthy",
         "image": "redis:7-alpine"},
        {"name": "backend", "container": "fovea-backend-1", "state": "running",
         "health": "healthy" if healthy else "unhealthy", "image": "fovea/backend:1.4"},
        {"name": "frontend", "container": "fovea-frontend-1", "state": "running", "health": None,
         "image": "fovea/frontend:1.4"},
        {"name": "model-service", "container": "fovea-model-service-1",
         "state": "running" if healthy else "exited", "health": None, "image": "fovea/model-service:1.4"},
    ]
    synced = now - timedelta(days=3, hours=2)
    report = StatusReport(
        generated_at=now - timedelta(seconds=4),
        database=DatabaseSection(mode="docker", reachable=True, target="postgres service of fovea",
                                 server_version="16.4", size=48_300_000, tables=13, rows=182_344, migrations=3),
        volume=VolumeSection(path="/var/lib/fovea/videos", target="s3://fovea-backups/videos/", files=4_210,
                             bytes=812_000_000_000),
        env_file=EnvFileSection(path="/opt/fovea/.env", keys=24, mode="0600"),
        model_cache=ModelCacheSection(managed=True, volume="fovea_model-cache", exists=True),
        redis=RedisSection(managed=True, running=True, active=2, waiting=5),
        stack=StackSection(managed=True, project="fovea", services=services),
        disk=DiskSection(path="/var/backups/fovea", total=500_000_000_000, free=210_000_000_000, free_fraction=0.42),
        backups=BackupsSection(
            dir="/var/backups/fovea", count=27, total_bytes=310_000_000, offsite="s3://fovea-backups/db/",
            last=LastBackup(name=f"fovea-{last_dump:%Y%m%dT%H%M%SZ}.sql.gz", time=last_dump,
                            age_s=int((now - last_dump).total_seconds()), size=11_800_000, kind="regular",
                            legacy=False, env_copied=True, tables=13, rows=181_900, status="verified"),
            summary="last backup 7 hours ago, 11.3 MiB, 27 in total", newest_verified=f"fovea-{last_dump:%Y%m%dT%H%M%SZ}.sql.gz",
            counts={"verified": 27, "unverified": 0, "corrupt": 0}),
        sync=SyncSection(target="s3://fovea-backups/videos/", last=synced.isoformat(),
                         age_s=(now - synced).total_seconds(), last_run=synced.isoformat(), pending=12,
                         summary="last synced 3 days ago, 12 files pending",
                         found=[Alert("warning", "sync", "volume last synced 3 days ago, 12 files pending")]),
        drill=DrillSection(interval_days=90, summary="no restore drill on record",
                           found=[Alert("warning", "drill", "no restore drill on record: run `fovea-tui drill`")]),
        schedule=ScheduleSection(installed=True, kind="systemd", at="02:15", summary="systemd timer daily at 02:15"),
    )
    return judge(report, now)
