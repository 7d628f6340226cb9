"""`fovea-tui status`: what the dashboard shows, as text or JSON; exit 1 on any CRITICAL alert.

Each line carries the verdict the engine gave its section (the dashboard's card label), so a
line never says FINE beside its own warning. What cron runs between nights: with
`notify.urls` set, the alerts a person must see go out (`engine.ops.alerting.check_status_alerts`,
each at most once a day).
"""

from __future__ import annotations

from fovea_tui import formatting
from fovea_tui.cli.context import CliContext
from fovea_tui.engine.ops.alerting import check_status_alerts
from fovea_tui.engine.ops.status import Section, StatusReport, Verdict, collect_status
from fovea_tui.formatting import plural


def register(sub) -> None:
    from fovea_tui.cli.flags import add_json_flag

    parser = sub.add_parser("status", help="what the dashboard shows, as text or JSON (exit 1 on a CRITICAL alert)")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _line(name: str, section: Section, body: str) -> str:
    """One section: its verdict, its facts, and why when it is not FINE."""
    if not section.ok:
        body = section.error or ""
    elif section.verdict != Verdict.FINE and section.reason and section.reason not in body:
        body += f" · {section.reason}"
    return f"[{section.verdict.upper():<7}] {name:<12} {body}"


def render(report: StatusReport) -> str:
    db, vol, env, stack = report.database, report.volume, report.env_file, report.stack
    size = formatting.size
    lines = [
        _line("database", db, f"{db.target}: PostgreSQL {db.server_version or '?'}, {size(db.size)}, "
              f"{plural(db.tables, 'table')}, {plural(db.rows, 'row')}, {plural(db.migrations, 'migration')}"),
        _line("videos", vol, f"{vol.path}: {plural(vol.files, 'file')}, {size(vol.bytes)}"
              + (f", {vol.new_files} new since the last sync ({size(vol.new_bytes)})" if vol.new_files else "")),
        _line("env file", env, f"{env.path}: {plural(env.keys, 'key')} (values hidden), mode {env.mode}"),
    ]
    redis = report.redis
    if redis.managed and redis.running:
        lines.append(_line("redis", redis, f"{plural(redis.active, 'job')} active, {redis.waiting} waiting"))
    else:
        lines.append(_line("redis", redis, "not running" if redis.managed else "not managed (no Docker)"))
    cache = report.model_cache
    lines.append(_line("model cache", cache, "not managed (no Docker)" if not cache.managed
                       else f"volume {cache.volume}" + ("" if cache.exists else " (absent)")))
    if stack.managed:
        lines.append(_line("stack", stack, f"project {stack.project}"))
        for svc in stack.services:
            health = f" ({svc['health']}" + (f": {svc['starting']}" if svc.get("starting") else "") + ")" \
                if svc.get("health") else ""
            lines.append(f"            - {svc['name']:<16} {svc['state']}{health}")
    else:
        lines.append(_line("stack", stack, f"not managed: {stack.reason}"))
    for name, section in (("backups", report.backups), ("sync", report.sync), ("drill", report.drill),
                          ("schedule", report.schedule), ("restore", report.restore),
                          ("encryption", report.encryption)):
        lines.append(_line(name, section, section.summary or section.reason))
    for command in report.restore.next:
        lines.append(f"            next: {command}")
    if report.alerts:
        lines.append("")
        lines.append("alerts:")
        order = {"critical": 0, "warning": 1}
        lines += [f"  {a.level.upper():<8} {a.message}"
                  for a in sorted(report.alerts, key=lambda a: order.get(a.level, 2))]
    else:
        lines.append("\nno alerts")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    report = collect_status(ctx.settings)
    check_status_alerts(ctx.settings, report=report)  # what cron runs: new alerts reach a person
    ctx.emit(report.as_dict(), render(report))
    return 1 if report.critical else 0
