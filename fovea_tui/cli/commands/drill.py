"""`fovea-tui drill [--json] [--guide]`: a disaster-recovery drill into a scratch database.

Exit codes: 0 the drill passed; 1 a check failed or the drill failed; 2 bad config; 3 no
dump to drill (refused) or another drill running.
"""

from __future__ import annotations

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag


def register(sub) -> None:
    parser = sub.add_parser(
        "drill", help="a disaster-recovery drill into a scratch database",
        description="Restore the newest dump from off-site (local when no off-site store is configured) "
                    "into a scratch database on the same server, without touching the live database or "
                    "stopping the stack; check rows and migrations against the manifest, the env copy "
                    "off-site, and every referenced video in the off-site volume copy; measure RTO and "
                    "RPO; drop the scratch database; write a report under the state directory. Then "
                    "print the steps of the full drill on a separate host.")
    parser.add_argument("--guide", action="store_true",
                        help="only print the steps of the full drill on a separate host; run nothing")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def render(d: dict) -> str:
    from fovea_tui.formatting import human_duration

    lines = [f"drill of {d['dump']} ({d['source']}): {'PASSED' if d['ok'] else 'FAILED'}"]
    for c in d["checks"]:
        mark = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}.get(c["status"], c["status"])
        lines.append(f"  [{mark}] {c['name']:<11} {c['detail']}")
    lines.append(f"recovery time (RTO): {human_duration(d['rto_s'])} · recovery point (RPO): "
                 f"{human_duration(d['rpo_s'])} (dump taken {d.get('dump_time') or '?'})")
    for w in d.get("warnings", []):
        lines.append(f"warning: {w}")
    report = d.get("report") or {}
    if report.get("markdown"):
        lines.append(f"report: {report['markdown']}")
    lines.append("")
    lines.append("to tick by hand when the drill runs on a separate host:")
    lines += [f"  [ ] {item['item']}" for item in d.get("checklist", [])]
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.engine.drill.report import guide_for, render_guide
    from fovea_tui.engine.drill.run import run_drill

    settings = ctx.settings
    if args.guide:
        steps = guide_for(settings)
        ctx.emit({"guide": steps}, render_guide(steps))
        return 0

    def on_check(check) -> None:
        mark = {"ok": "ok  ", "failed": "FAIL", "skipped": "skip"}.get(check.status, check.status)
        ctx.info(f"drill: [{mark}] {check.name}")

    with ctx.progress() as progress:
        result = run_drill(settings, progress=progress, cancel=ctx.cancel, on_check=on_check)
    data = result.as_dict()
    text = render(data) + "\n\n" + render_guide(result.guide) if result.guide else render(data)
    ctx.emit(data, text)
    if not result.ok and ctx.json:
        ctx.info(f"fovea-tui: drill failed: {', '.join(result.failed)}")
    return result.exit_code
