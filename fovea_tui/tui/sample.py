"""A canned StatusReport: for snapshot tests and for building screens without an install."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from fovea_tui.engine.ops.status import COST_OF_LOSS, Alert, StatusReport

SAMPLE_NOW = datetime(2026, 6, 2, 9, 30, tzinfo=timezone.utc)


def sample_report(now: datetime = SAMPLE_NOW, *, healthy: bool = True) -> StatusReport:
    last_dump = now - timedelta(hours=7, minutes=15)
    services = [
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
    sections: dict[str, dict[str, Any]] = {
        "database": {"ok": True, "mode": "docker", "cost_of_loss": COST_OF_LOSS["database"], "reachable": True,
                     "target": "postgres service of fovea", "server_version": "16.4", "size": 48_300_000,
                     "tables": 13, "rows": 182_344, "migrations": 3},
        "volume": {"ok": True, "cost_of_loss": COST_OF_LOSS["volume"], "path": "/var/lib/fovea/videos",
                   "target": "s3://fovea-backups/videos/", "files": 4_210, "bytes": 812_000_000_000},
        "env_file": {"ok": True, "cost_of_loss": COST_OF_LOSS["env_file"], "path": "/opt/fovea/.env",
                     "keys": 24, "missing": [], "mode": "0600", "world_readable": False},
        "model_cache": {"ok": True, "cost_of_loss": COST_OF_LOSS["model_cache"], "managed": True,
                        "volume": "fovea_model-cache", "exists": True},
        "redis": {"ok": True, "cost_of_loss": COST_OF_LOSS["redis"], "managed": True, "running": True,
                  "active": 2, "waiting": 5, "queues": {}},
        "stack": {"ok": True, "managed": True, "project": "fovea", "services": services},
        "disk": {"ok": True, "path": "/var/backups/fovea", "total": 500_000_000_000, "free": 210_000_000_000,
                 "free_fraction": 0.42},
        "backups": {"ok": True, "dir": "/var/backups/fovea", "count": 27, "total_bytes": 310_000_000,
                    "offsite": "s3://fovea-backups/db/",
                    "last": {"name": f"fovea-{last_dump:%Y%m%dT%H%M%SZ}.sql.gz", "time": last_dump.isoformat(),
                             "size": 11_800_000, "status": "verified"},
                    "summary": "last backup 7 h ago, 11.3 MiB, 27 in total"},
        "sync": {"ok": True, "target": "s3://fovea-backups/videos/",
                 "last": (now - timedelta(days=3, hours=2)).isoformat(), "error_count": 0, "pending": 12,
                 "summary": "last synced 3 days ago, 12 files pending"},
        "drill": {"last": None, "interval_days": 90},
        "schedule": {"ok": True, "summary": "systemd timer daily at 02:15"},
    }
    alerts = [Alert("warning", "sync", "volume last synced 3 days ago, 12 files pending"),
              Alert("warning", "drill", "no restore drill on record: run `fovea-tui drill`")]
    if not healthy:
        alerts.insert(0, Alert("critical", "stack", "service backend is unhealthy"))
        alerts.insert(1, Alert("warning", "stack", "service model-service is exited"))
    return StatusReport(generated_at=now - timedelta(seconds=4), sections=sections, alerts=alerts)
