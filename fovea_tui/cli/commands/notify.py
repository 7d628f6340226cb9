"""`fovea-tui notify test [--json]`: one test message to every notification URL and ping.

The way an operator checks the config at install time: each outcome is printed with its
URL masked. Exit 0 when every one was delivered, 1 when any failed, 2 when nothing is
configured.
"""

from __future__ import annotations

from fovea_tui.cli.commands.run_nightly import render_deliveries
from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.ops.alerting import run_test as send_test
from fovea_tui.errors import EXIT_FAILED, EXIT_OK


def register(sub) -> None:
    parser = sub.add_parser("notify", help="notification channels and monitor pings")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    test = verbs.add_parser("test", help="send one test message to every notification URL and monitor ping")
    add_json_flag(test)
    test.set_defaults(handler=run_test)


def render(data: dict) -> str:
    failed = sum(1 for d in data["deliveries"] if not d["ok"])
    head = (f"notify test from {data['host']}: all {len(data['deliveries'])} delivered" if not failed
            else f"notify test from {data['host']}: {failed} of {len(data['deliveries'])} FAILED")
    return "\n".join([head, *render_deliveries(data["deliveries"])])


def run_test(args, ctx: CliContext) -> int:
    report = send_test(ctx.settings)
    ctx.emit(report.as_dict(), render(report.as_dict()))
    return EXIT_OK if report.ok else EXIT_FAILED
