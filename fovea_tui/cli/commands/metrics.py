"""`fovea-tui metrics [--serve HOST:PORT]`: Prometheus text format, printed or served on /metrics."""

from __future__ import annotations

import sys

from fovea_tui.cli.context import CliContext
from fovea_tui.engine.ops import metrics


def register(sub) -> None:
    parser = sub.add_parser("metrics", help="Prometheus text format: backup, sync and drill figures")
    parser.add_argument("--serve", metavar="HOST:PORT",
                        help="serve them on http://HOST:PORT/metrics (e.g. 127.0.0.1:9188) until interrupted")
    parser.set_defaults(handler=run)


def run(args, ctx: CliContext) -> int:
    settings = ctx.settings
    if not args.serve:
        sys.stdout.write(metrics.render(settings))
        sys.stdout.flush()
        return 0
    host, port = metrics.parse_bind(args.serve)
    server = metrics.start_server(settings, host, port)
    ctx.info(f"serving metrics on {metrics.server_url(server)}metrics (Ctrl-C to stop)")
    try:
        while not ctx.cancel.wait(1.0):
            pass
    finally:
        server.shutdown()
        server.server_close()
    return 0
