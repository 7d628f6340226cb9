"""`fovea-tui schedule show|install|remove [--at HH:MM] [--cron] [--dry-run]`: the nightly run
as a systemd timer or a cron entry (see engine.schedule for where the files go)."""

from __future__ import annotations

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.ops import schedule
from fovea_tui.errors import UsageError


def register(sub) -> None:
    parser = sub.add_parser(
        "schedule", help="the nightly run as a systemd timer or a cron entry",
        description="Show, install or remove the nightly `run-nightly` schedule. Unit and cron "
        f"directories can be redirected with ${schedule.SYSTEMD_DIR_ENV} and ${schedule.CRON_DIR_ENV}.")
    parser.add_argument("action", nargs="?", default="show", choices=["show", "install", "remove"])
    parser.add_argument("--at", metavar="HH:MM", help="time of day, host local time "
                        f"(default: the installed time, else {schedule.DEFAULT_AT})")
    parser.add_argument("--cron", action="store_true", help="a cron entry even where systemd runs")
    parser.add_argument("--dry-run", action="store_true", help="print exactly what would be written; change nothing")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _show_text(info: dict) -> str:
    if not info["installed"]:
        return "no nightly schedule installed (fovea-tui schedule install)"
    lines = [f"installed: {info['kind']}, daily at {info['at'] or '?'} (host local time)",
             f"next run:  {info['next_run'] or 'unknown'}",
             f"command:   {info.get('command', '')}"]
    lines += [f"file:      {f}" for f in info["files"]]
    if info.get("also_installed"):
        lines.append(f"also installed: {', '.join(info['also_installed'])} (`schedule install` keeps one)")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    if args.action != "install" and (args.at or args.cron):
        raise UsageError("--at and --cron only apply to `schedule install`", key="--at" if args.at else "--cron")
    if args.action == "show":
        if args.dry_run:
            raise UsageError("--dry-run only applies to install and remove", key="--dry-run")
        info = schedule.show(ctx.settings)
        ctx.emit(info, _show_text(info))
        return 0
    if args.action == "install":
        if args.at is not None:
            schedule.parse_at(args.at)  # exit 2 before anything else is looked at
        plan = schedule.plan_install(ctx.settings, args.at, cron=args.cron)
    else:
        plan = schedule.plan_remove(ctx.settings)
    if args.dry_run:
        ctx.emit({"dry_run": True, **plan.as_dict()}, plan.preview().rstrip("\n"))
        return 0
    done = schedule.apply(plan)
    for note in plan.notes:
        ctx.info(f"note: {note}")
    info = schedule.show(ctx.settings)
    if args.action == "install":
        text = (f"installed the nightly run ({plan.kind}, daily at {plan.at}); next run {info['next_run']}"
                if plan.changes else f"already installed ({plan.kind}, daily at {plan.at}); nothing changed")
    else:
        text = "removed the nightly schedule" if plan.changes else "no nightly schedule was installed"
    for path in done["written"]:
        text += f"\n  wrote   {path}"
    for path in done["deleted"]:
        text += f"\n  deleted {path}"
    for cmd in done["ran"]:
        text += f"\n  ran     {cmd}"
    ctx.emit({"ok": True, "action": args.action, **done, "schedule": info}, text)
    return 0
