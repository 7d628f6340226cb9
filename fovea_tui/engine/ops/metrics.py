"""Prometheus metrics: backup, sync, drill and nightly figures in the text exposition format.

Everything comes from files that are already there (manifests and the local inventory,
`sync-last.json`, drill reports, `nightly-last.json`, the audit log, the schedule files),
so a scrape is cheap: no dump is hashed or even opened, and the off-site store is not
listed. A figure that is not known (no backup yet, no drill yet) is left out rather than
reported as 0, so alert rules can use `absent()`; each source's health is exported as
`fovea_metrics_source_up{source=...}`.

`render(settings)` returns the text; `start_server(settings, host, port)` serves it on
/metrics with http.server, computing it afresh for every scrape.
"""

from __future__ import annotations

import json
import math
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fovea_tui import __version__
from fovea_tui.config import Settings
from fovea_tui.engine.backups.inventory import load_inventory
from fovea_tui.engine.drill.report import DRILLS_DIR
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops.nightly import read_last
from fovea_tui.engine.ops.schedule import show
from fovea_tui.engine.volume.sync import read_summary
from fovea_tui.errors import OperationFailed, UsageError

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUSES = ("verified", "unverified", "corrupt", "mismatch")


@dataclass
class Metric:
    name: str
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)
    type: str = "gauge"

    def add(self, value: float | int | bool | None, **labels: str) -> None:
        if value is None:
            return
        self.samples.append((labels, float(value)))


def _fmt_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def exposition(metrics: list[Metric]) -> str:
    lines: list[str] = []
    for m in metrics:
        if not m.samples:
            continue
        lines.append(f"# HELP {m.name} {_escape_help(m.help)}")
        lines.append(f"# TYPE {m.name} {m.type}")
        for labels, value in m.samples:
            label_text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sorted(labels.items()))
            lines.append(f"{m.name}{{{label_text}}} {_fmt_value(value)}" if label_text
                         else f"{m.name} {_fmt_value(value)}")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- reading --------------

def _ts(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.timestamp()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _backups(settings: Settings, now: float, out: dict[str, Metric]) -> None:
    inv = load_inventory(settings, include_offsite=False)
    counts = inv.counts()
    for status in STATUSES:
        out["dumps"].add(counts.get(status, 0), status=status)
    out["dumps_bytes"].add(inv.total_size("local"))
    newest = next((e for e in inv.entries if not e.safety), None)
    if newest is not None:
        m = newest.manifest
        created = _ts(m.created_at) if m is not None else None
        out["backup_ts"].add(created or newest.time.timestamp())
        out["backup_size"].add(newest.size)
        if m is not None:
            out["backup_duration"].add(_num(m.raw.get("duration_s")))
            out["backup_rows"].add(sum(m.tables.values()) if m.tables else None)
    verified = inv.newest_verified()
    if verified is not None:
        out["verified_ts"].add(verified.time.timestamp())
        out["verified_age"].add(max(0.0, now - verified.time.timestamp()))
    last = audit.read(settings, limit=1, action="backup")
    if last:
        out["backup_success"].add(1 if last[-1].get("outcome") == "ok" else 0)
        out["backup_attempt_ts"].add(_ts(last[-1].get("time")))


def _sync(settings: Settings, now: float, out: dict[str, Metric]) -> None:
    data = read_summary(settings)
    if not data:
        return
    out["sync_ts"].add(_ts(data.get("time") or data.get("finished_at")))
    out["sync_duration"].add(_num(data.get("duration_s")))
    files = _num(data.get("uploaded"))
    out["sync_files"].add(files)
    out["sync_bytes"].add(_num(data.get("bytes")))
    out["sync_errors"].add(_num(data.get("error_count")))
    ok = not data.get("error_count") and not data.get("refused") and not data.get("cancelled")
    out["sync_success"].add(1 if ok else 0)
    out["sync_local_files"].add(_num(data.get("local_files")))
    listing = data.get("listing") or {}
    if listing.get("last_full_listing"):
        out["sync_full_listing_ts"].add(_ts(listing["last_full_listing"]))


def _latest_drill(settings: Settings) -> tuple[dict[str, Any], float] | None:
    """The newest drill report under <state_dir>/drills (any *.json), or drill-last.json."""
    candidates: list[Path] = []
    root = settings.state_dir / DRILLS_DIR
    try:
        candidates += [p for p in root.rglob("*.json") if p.is_file()]
    except OSError:
        pass
    for name in ("drill-last.json", "drill.json"):
        if (settings.state_dir / name).is_file():
            candidates.append(settings.state_dir / name)
    best: tuple[dict[str, Any], float] | None = None
    for path in candidates:
        data = _read_json(path)
        if data is None or ("ok" not in data and "checks" not in data):
            continue
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        when = (_ts(data.get("finished_at")) or _ts(data.get("time")) or _ts(data.get("started_at"))
                or _ts(data.get("created_at")) or mtime)
        if best is None or when > best[1]:
            best = (data, when)
    return best


def _drill(settings: Settings, now: float, out: dict[str, Metric]) -> None:
    out["drill_interval"].add(settings.drill.interval_days * 86400)
    found = _latest_drill(settings)
    if found is None:
        return
    data, when = found
    out["drill_ts"].add(when)
    ok = data.get("ok")
    if ok is None and isinstance(data.get("checks"), list):
        ok = all(isinstance(c, dict) and c.get("ok") for c in data["checks"])
    out["drill_success"].add(1 if ok else 0)
    out["drill_rto"].add(_num(data.get("rto_s")))


def _nightly(settings: Settings, now: float, out: dict[str, Metric]) -> None:
    data = read_last(settings)
    if not data:
        return
    out["nightly_ts"].add(_ts(data.get("finished_at") or data.get("started_at")))
    out["nightly_success"].add(1 if data.get("outcome") == "ok" else 0)
    out["nightly_duration"].add(_num(data.get("duration_s")))
    for step in data.get("steps") or []:
        if isinstance(step, dict) and step.get("name") and step.get("status"):
            out["nightly_step"].add(1 if step["status"] == "ok" else 0, step=str(step["name"]),
                                    status=str(step["status"]))


def _schedule(settings: Settings, now: float, out: dict[str, Metric]) -> None:
    info = show(settings, probe_systemctl=False)
    out["schedule_installed"].add(1 if info.get("installed") else 0)
    out["schedule_next"].add(_ts(info.get("next_run")))


def _definitions() -> dict[str, Metric]:
    defs = [
        ("backup_ts", "fovea_backup_last_timestamp_seconds", "When the newest regular backup was taken (Unix time)."),
        ("backup_size", "fovea_backup_last_size_bytes", "Size of the newest regular backup's dump file."),
        ("backup_duration", "fovea_backup_last_duration_seconds", "How long the newest backup took, from its manifest."),
        ("backup_rows", "fovea_backup_last_rows", "Rows in the newest backup, counted from the dump stream."),
        ("backup_success", "fovea_backup_last_success", "1 if the last backup attempt succeeded, else 0 (audit log)."),
        ("backup_attempt_ts", "fovea_backup_last_attempt_timestamp_seconds", "When the last backup attempt ended."),
        ("dumps", "fovea_dumps", "Local dumps by status (statuses from cheap checks and the verification cache)."),
        ("dumps_bytes", "fovea_dumps_bytes", "Total size of the local dumps."),
        ("verified_ts", "fovea_newest_verified_dump_timestamp_seconds", "When the newest verified dump was taken."),
        ("verified_age", "fovea_newest_verified_dump_age_seconds", "Age of the newest verified dump."),
        ("sync_ts", "fovea_sync_last_timestamp_seconds", "When the last volume sync finished."),
        ("sync_duration", "fovea_sync_last_duration_seconds", "How long the last volume sync took."),
        ("sync_files", "fovea_sync_last_files", "Files uploaded by the last volume sync."),
        ("sync_bytes", "fovea_sync_last_bytes", "Bytes uploaded by the last volume sync."),
        ("sync_errors", "fovea_sync_last_errors", "Files that failed in the last volume sync."),
        ("sync_success", "fovea_sync_last_success", "1 if the last volume sync had no error, refusal or cancel."),
        ("sync_local_files", "fovea_volume_files", "Files in the volume at the last sync."),
        ("sync_full_listing_ts", "fovea_sync_last_full_listing_timestamp_seconds",
         "When the last sync's target was last listed in full (between, syncs trust a snapshot)."),
        ("drill_ts", "fovea_drill_last_timestamp_seconds", "When the last disaster-recovery drill ran."),
        ("drill_success", "fovea_drill_last_success", "1 if the last drill passed every check."),
        ("drill_rto", "fovea_drill_last_rto_seconds", "Recovery time measured by the last drill."),
        ("drill_interval", "fovea_drill_interval_seconds", "drill.interval_days, in seconds."),
        ("nightly_ts", "fovea_nightly_last_timestamp_seconds", "When the last nightly run ended."),
        ("nightly_success", "fovea_nightly_last_success", "1 if every step of the last nightly run succeeded."),
        ("nightly_duration", "fovea_nightly_last_duration_seconds", "How long the last nightly run took."),
        ("nightly_step", "fovea_nightly_last_step_success", "Per step of the last nightly run: 1 ok, 0 failed/skipped."),
        ("schedule_installed", "fovea_schedule_installed", "1 if a nightly schedule (timer or cron) is installed."),
        ("schedule_next", "fovea_schedule_next_run_timestamp_seconds", "When the nightly run is due next."),
        ("source_up", "fovea_metrics_source_up", "1 if the exporter could read this source."),
        ("info", "fovea_tui_info", "The fovea-tui version serving these metrics."),
    ]
    return {key: Metric(name, help_text) for key, name, help_text in defs}


SOURCES: dict[str, Callable[[Settings, float, dict[str, Metric]], None]] = {
    "backups": _backups, "sync": _sync, "drill": _drill, "nightly": _nightly, "schedule": _schedule,
}


def collect(settings: Settings, now: datetime | None = None) -> list[Metric]:
    """Every metric, each source guarded: one unreadable source never blanks the others."""
    t = (now or datetime.now(UTC)).timestamp()
    out = _definitions()
    for name, fn in SOURCES.items():
        try:
            fn(settings, t, out)
            up = 1
        except Exception:  # noqa: BLE001 - a scrape must answer; the source is reported down
            up = 0
        out["source_up"].add(up, source=name)
    out["info"].add(1, version=__version__)
    return list(out.values())


def render(settings: Settings, now: datetime | None = None) -> str:
    return exposition(collect(settings, now))


# ---------------------------------------------------------------- serving --------------

_HOST_PORT = re.compile(r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[A-Za-z0-9.-]+)):(?P<port>\d{1,5})$")


def parse_bind(value: str) -> tuple[str, int]:
    """'127.0.0.1:9188', 'localhost:9188' or '[::1]:9188' -> (host, port); UsageError (exit 2) else."""
    m = _HOST_PORT.match(value.strip()) if isinstance(value, str) else None
    port = int(m.group("port")) if m else 0
    if not m or not 1 <= port <= 65535:
        raise UsageError(f"--serve {value!r} is not HOST:PORT (e.g. 127.0.0.1:9188)", key="--serve")
    return (m.group("v6") or m.group("host")), port


class _Handler(BaseHTTPRequestHandler):
    settings: Settings  # set on the subclass made by start_server
    server_version = f"fovea-tui/{__version__}"

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                body, status, ctype = render(self.settings).encode("utf-8"), 200, CONTENT_TYPE
            except Exception as exc:  # noqa: BLE001
                body, status, ctype = f"metrics failed: {type(exc).__name__}\n".encode(), 500, "text/plain"
        elif path == "/":
            body = b'<html><body><a href="/metrics">/metrics</a></body></html>\n'
            status, ctype = 200, "text/html; charset=utf-8"
        else:
            body, status, ctype = b"not found\n", 404, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet: a scrape every 15 s
        pass


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def start_server(settings: Settings, host: str, port: int) -> ThreadingHTTPServer:
    """Bind and serve in a daemon thread; OperationFailed (exit 1) when the address is taken."""
    handler = type("FoveaMetricsHandler", (_Handler,), {"settings": settings})
    server_cls = _V6Server if ":" in host else ThreadingHTTPServer
    try:
        server = server_cls((host, port), handler)
    except OSError as exc:
        raise OperationFailed(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="fovea-metrics", daemon=True).start()
    return server


def server_url(server: ThreadingHTTPServer) -> str:
    host, port = str(server.server_address[0]), server.server_address[1]
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}/"
