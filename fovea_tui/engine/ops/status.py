"""What the dashboard shows and `fovea-tui status` prints: each piece of state in the
runbook's table, the stack, and the alerts an operator should act on.

Every probe reports its own failure in its section (`"error": ...`) instead of failing the
whole report: a dashboard that goes blank because Redis is down helps nobody.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from fovea_tui.config import Settings
from fovea_tui.engine.ops.schedule import status_section as _schedule_section
from fovea_tui.engine.volume.sync import read_summary as read_sync_summary
from fovea_tui.engine.volume.sync import volume_sync_summary as _volume_sync
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import FoveaError

DISK_WARN_FRACTION = 0.10  # alert when less than this share of the backups filesystem is free

# The runbook's table: what each piece costs to lose.
COST_OF_LOSS = {
    "database": "all annotation, persona, ontology, claim and user state",
    "volume": "the uploaded videos themselves",
    "env_file": "sessions, encrypted API keys, database credentials",
    "model_cache": "one re-download per model at next use",
    "redis": "jobs running now; users retry them from the UI",
}


@dataclass
class Alert:
    level: str      # "critical" | "warning"
    subject: str    # which card it belongs to: database, volume, env_file, stack, backups, ...
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "subject": self.subject, "message": self.message}


@dataclass
class StatusReport:
    generated_at: datetime
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = {"generated_at": self.generated_at.isoformat()}
        data.update(self.sections)
        data["alerts"] = [a.as_dict() for a in self.alerts]
        return data


class _Probe:
    """Shared handles for one status run (one docker connection, one env file read)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stack = None
        self._stack_error: str | None = None
        self._env: EnvFile | None = None
        self._env_error: str | None = None

    def stack(self):
        if self._stack is None and self._stack_error is None:
            from fovea_tui.engine.infra.stack import Stack

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


def _guard(section: dict[str, Any], fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        section.update(fn())
        section.setdefault("ok", True)
    except FoveaError as exc:
        section.update({"ok": False, "error": str(exc)})
    return section


def _database(probe: _Probe) -> dict[str, Any]:
    from fovea_tui.engine.infra.database import open_database

    settings = probe.settings
    stack = probe.stack() if settings.database.mode == "docker" else None
    env = None
    if settings.database.mode == "direct" and not settings.database.url:
        env = probe.env()
    db = open_database(settings, env=env, stack=stack)
    version = db.ping()
    rows = db.table_rows()
    return {
        "reachable": True,
        "target": db.describe(),
        "server_version": version,
        "size": db.database_size(),
        "tables": len(rows),
        "rows": sum(rows.values()),
        "migrations": len(db.applied_migrations()),
    }


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


def _volume(probe: _Probe) -> dict[str, Any]:
    path = Path(probe.settings.volume.path)
    if not path.is_dir():
        raise FoveaError(f"volume path {path} does not exist or is not a directory")
    target = probe.settings.volume.target or None
    last = read_sync_summary(probe.settings) if target else None
    started = datetime.fromisoformat(last["started_at"]) if last and last.get("started_at") else None
    section = {"path": str(path), "target": target,
               **scan_volume(path, since=started.timestamp() if started else None)}
    if started is not None:
        section["new_since"] = started.isoformat()  # new_files: written since the last sync began
    return section


def _env_file(probe: _Probe) -> dict[str, Any]:
    env = probe.env()
    mode = stat.S_IMODE(env.path.stat().st_mode)
    return {
        "path": str(env.path),
        "keys": len(env.keys()),
        "missing": env.missing_critical(),
        "mode": f"{mode:04o}",
        "world_readable": bool(mode & 0o004),
    }


def _stack(probe: _Probe) -> dict[str, Any]:
    try:
        stack = probe.stack()
    except _Unavailable as exc:
        if probe.settings.database.mode == "direct":
            return {"managed": False, "reason": str(exc), "services": []}
        raise
    services = stack.services()
    if not services:
        raise FoveaError(f"no containers of compose project {stack.project!r} on this Docker engine "
                         "(check install.compose_project)")
    return {"managed": True, "project": stack.project, "services": [s.as_dict() for s in services]}


def _model_cache(probe: _Probe) -> dict[str, Any]:
    try:
        stack = probe.stack()
    except _Unavailable:
        return {"managed": False}
    name = f"{stack.project}_model-cache"
    volumes = [v for v in stack.client.volumes.list() if v.name == name]
    if not volumes:
        return {"managed": True, "volume": name, "exists": False}
    return {"managed": True, "volume": name, "exists": True, "mountpoint": volumes[0].attrs.get("Mountpoint")}


def _redis(probe: _Probe) -> dict[str, Any]:
    from fovea_tui.engine.infra.stack import redis_queue_counts

    try:
        stack = probe.stack()
    except _Unavailable:
        return {"managed": False}
    if not any(s.name == "redis" and s.running for s in stack.services()):
        return {"managed": True, "running": False}
    port = ""
    try:
        port = probe.env().get("REDIS_PORT")
    except _Unavailable:
        pass
    queues = redis_queue_counts(stack, port=port)
    return {
        "managed": True,
        "running": True,
        "queues": queues,
        "active": sum(q["active"] for q in queues.values()),
        "waiting": sum(q["wait"] for q in queues.values()),
    }


def _disk(settings: Settings) -> dict[str, Any]:
    path = settings.backups_dir
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    return {"path": str(settings.backups_dir), "total": usage.total, "free": usage.free,
            "free_fraction": round(usage.free / usage.total, 4) if usage.total else 0}


def _alerts(report: StatusReport, settings: Settings) -> list[Alert]:
    s = report.sections
    alerts: list[Alert] = []
    if not s["database"].get("ok"):
        alerts.append(Alert("critical", "database", f"database unreachable: {s['database'].get('error')}"))
    if not s["volume"].get("ok"):
        alerts.append(Alert("critical", "volume", s["volume"].get("error", "volume unreadable")))
    elif s["volume"].get("files") == 0:
        alerts.append(Alert("warning", "volume", f"volume {s['volume']['path']} is empty: is it mounted?"))
    env = s["env_file"]
    if not env.get("ok"):
        alerts.append(Alert("critical", "env_file", env.get("error", "env file unreadable")))
    else:
        if env.get("missing"):
            alerts.append(Alert("warning", "env_file", "env file lacks " + ", ".join(env["missing"])))
        if env.get("world_readable"):
            alerts.append(Alert("warning", "env_file", f"env file {env['path']} is readable by every user (chmod 600)"))
    stack = s["stack"]
    if not stack.get("ok"):
        alerts.append(Alert("critical", "stack", stack.get("error", "stack unavailable")))
    else:
        for svc in stack.get("services", []):
            if svc["state"] != "running":
                alerts.append(Alert("warning", "stack", f"service {svc['name']} is {svc['state']}"))
            elif svc.get("health") == "unhealthy":
                alerts.append(Alert("critical", "stack", f"service {svc['name']} is unhealthy"))
    disk = s["disk"]
    if disk.get("ok") and disk.get("free_fraction", 1) < DISK_WARN_FRACTION:
        alerts.append(Alert("warning", "disk", f"less than {int(DISK_WARN_FRACTION * 100)}% free under {disk['path']}"))
    return alerts


def collect_status(settings: Settings, now: datetime | None = None) -> StatusReport:
    """Probe everything and build the report; never raises for an unreachable part."""
    now = now or datetime.now(timezone.utc)
    probe = _Probe(settings)
    report = StatusReport(generated_at=now)
    report.sections["database"] = _guard({"mode": settings.database.mode, "cost_of_loss": COST_OF_LOSS["database"]},
                                         lambda: _database(probe))
    report.sections["volume"] = _guard({"cost_of_loss": COST_OF_LOSS["volume"]}, lambda: _volume(probe))
    report.sections["env_file"] = _guard({"cost_of_loss": COST_OF_LOSS["env_file"]}, lambda: _env_file(probe))
    report.sections["model_cache"] = _guard({"cost_of_loss": COST_OF_LOSS["model_cache"]}, lambda: _model_cache(probe))
    report.sections["redis"] = _guard({"cost_of_loss": COST_OF_LOSS["redis"]}, lambda: _redis(probe))
    report.sections["stack"] = _guard({}, lambda: _stack(probe))
    report.sections["disk"] = _guard({}, lambda: _disk(settings))
    from fovea_tui.engine.backups.pipeline import backup_status  # the backups card (engine/dump.py)

    report.sections["backups"] = _guard({}, lambda: backup_status(settings, now))
    from fovea_tui.engine.backups.inventory import status_summary  # counts per status, corrupt-dump alert

    report.sections["backups"].update(status_summary(settings, report.sections["backups"]))
    from fovea_tui.engine.drill.run import drill_status  # last drill, verdict, overdue (engine/drill.py)

    report.sections["drill"] = _guard({"interval_days": settings.drill.interval_days},
                                      lambda: drill_status(settings, now))
    report.sections["schedule"] = _guard({}, lambda: _schedule_section(settings, now))
    report.sections["sync"] = _guard({}, lambda: _volume_sync(settings, now))
    # unencrypted env copies going off-site, a key that no longer opens the newest copy
    from fovea_tui.engine.backups.encryption import encryption_status

    report.sections["encryption"] = _guard({}, lambda: encryption_status(settings))
    report.alerts = _alerts(report, settings)
    report.alerts += [Alert(**a) for a in report.sections["backups"].pop("alerts", [])]
    report.alerts += [Alert(**a) for a in report.sections["schedule"].pop("alerts", [])]
    report.alerts += [Alert(**a) for a in report.sections["sync"].pop("alerts", [])]
    report.alerts += [Alert(**a) for a in report.sections["drill"].pop("alerts", [])]
    report.alerts += [Alert(**a) for a in report.sections["encryption"].pop("alerts", [])]
    return report
