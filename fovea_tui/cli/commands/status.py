"""`fovea-tui status`: what the dashboard shows, as text or JSON."""

from __future__ import annotations

import humanize

from fovea_tui.cli.context import CliContext
from fovea_tui.engine.ops.status import StatusReport, collect_status


def register(sub) -> None:
    from fovea_tui.cli.flags import add_json_flag

    parser = sub.add_parser("status", help="what the dashboard shows, as text or JSON")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _line(name: str, section: dict, body: str) -> str:
    mark = "ok " if section.get("ok") else "ERR"
    return f"[{mark}] {name:<12} {body if section.get('ok') else section.get('error', '')}"


def render(report: StatusReport) -> str:
    s = report.sections
    db, vol, env, stack = s["database"], s["volume"], s["env_file"], s["stack"]
    lines = [
        _line("database", db, f"{db.get('target', '')}: PostgreSQL {db.get('server_version', '?')}, "
              f"{humanize.naturalsize(db.get('size', 0), binary=True)}, {db.get('tables', 0)} tables, "
              f"{db.get('rows', 0)} rows, {db.get('migrations', 0)} migrations"),
        _line("videos", vol, f"{vol.get('path', '')}: {vol.get('files', 0)} files, "
              f"{humanize.naturalsize(vol.get('bytes', 0), binary=True)}"
              + (f", {vol['new_files']} new since the last sync "
                 f"({humanize.naturalsize(vol['new_bytes'], binary=True)})" if vol.get("new_files") else "")),
        _line("env file", env, f"{env.get('path', '')}: {env.get('keys', 0)} keys (values hidden), mode {env.get('mode', '')}"),
    ]
    redis = s["redis"]
    if redis.get("ok") and redis.get("managed") and redis.get("running"):
        lines.append(_line("redis", redis, f"{redis['active']} jobs active, {redis['waiting']} waiting"))
    elif redis.get("ok"):
        lines.append(_line("redis", redis, "not running" if redis.get("managed") else "not managed (no Docker)"))
    else:
        lines.append(_line("redis", redis, ""))
    cache = s["model_cache"]
    if cache.get("ok"):
        body = ("not managed (no Docker)" if not cache.get("managed")
                else f"volume {cache['volume']}" + ("" if cache.get("exists") else " (absent)"))
        lines.append(_line("model cache", cache, body))
    else:
        lines.append(_line("model cache", cache, ""))
    if stack.get("ok") and stack.get("managed"):
        lines.append(_line("stack", stack, f"project {stack['project']}"))
        for svc in stack["services"]:
            health = f" ({svc['health']})" if svc.get("health") else ""
            lines.append(f"        - {svc['name']:<16} {svc['state']}{health}")
    elif stack.get("ok"):
        lines.append(_line("stack", stack, f"not managed: {stack.get('reason', '')}"))
    else:
        lines.append(_line("stack", stack, ""))
    for key in ("backups", "sync", "drill", "schedule", "encryption"):
        section = s.get(key)
        if section and section.get("summary"):
            lines.append(_line(key, section, section["summary"]))
    if report.alerts:
        lines.append("")
        lines.append("alerts:")
        lines += [f"  {a.level.upper():<8} {a.message}" for a in report.alerts]
    else:
        lines.append("\nno alerts")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    report = collect_status(ctx.settings)
    ctx.emit(report.as_dict(), render(report))
    return 0
