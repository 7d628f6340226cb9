"""`fovea-tui run-nightly [--json]`: backup, prune, sync in order; exit 1 if any failed.

What the schedule runs. Every step is attempted (prune is skipped when the backup failed),
the run is recorded to nightly-last.json and the audit log, the dead-man's switch is pinged,
and webhooks and Apprise URLs are notified.
"""

from __future__ import annotations

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.ops.alerting import run_nightly
from fovea_tui.engine.ops.notify import delivery_line
from fovea_tui.errors import EXIT_FAILED, EXIT_OK
from fovea_tui.formatting import plural


def register(sub) -> None:
    parser = sub.add_parser("run-nightly", help="backup, prune, sync in order; non-zero if any failed")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def render(data: dict) -> str:
    lines = [f"nightly run {data['outcome'].upper()} in {data['duration_s']:.1f} s"]
    for step in data["steps"]:
        lines.append(f"  {step['status']:<8} {step['name']:<7} {step['detail']}")
    lines += render_deliveries(data["monitor"] + data["notifications"])
    alerts = data.get("alerts") or {}
    if alerts.get("sent"):
        lines.append(f"  {plural(len(alerts['sent']), 'new status alert')} sent to notify.urls")
    if alerts.get("error"):
        lines.append(f"  status alerts not checked: {alerts['error']}")
    return "\n".join(lines)


def render_deliveries(deliveries: list[dict]) -> list[str]:
    """One line per ping or message: channel, masked URL, outcome."""
    return ["  " + delivery_line(d) for d in deliveries]


def run(args, ctx: CliContext) -> int:
    settings = ctx.settings
    with ctx.progress() as progress:
        result = run_nightly(settings, progress=progress, cancel=ctx.cancel)
    data = result.as_dict()
    ctx.emit(data, render(data))
    return EXIT_OK if result.ok else EXIT_FAILED
