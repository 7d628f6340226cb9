"""`fovea-tui demo`: build (or reuse) a sandbox install and open the TUI on it."""

from __future__ import annotations

import sys

from fovea_tui.cli.context import CliContext


def register(sub) -> None:
    parser = sub.add_parser(
        "demo",
        help="build a sandbox install (database, volume, env file, backup history) and open the TUI on it",
        description="Build a sandbox Fovea install under ./.demo (or $FOVEA_TUI_DEMO_DIR) and open the "
        "terminal UI on it. Re-running reuses the sandbox; delete the directory to start over.",
    )
    parser.add_argument("--no-tui", action="store_true", help="build the sandbox and print its config path only")
    parser.set_defaults(handler=run)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.sandbox import demo

    install = demo.build(log=ctx.info)
    if args.no_tui:
        sys.stdout.write(str(install.config) + "\n")
        return 0
    from fovea_tui.tui.launch import launch_tui

    return launch_tui(str(install.config), docker=False)
