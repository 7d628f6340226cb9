"""One module per CLI command. Each defines `register(subparsers)`, which adds its parser
and sets `handler=run`, and `run(args, ctx) -> int`.

The order here is the order of `fovea-tui --help`.
"""

COMMAND_MODULES = [
    "backup",
    "list",
    "verify",
    "prune",
    "sync",
    "restore",
    "compare",
    "undo_selective",
    "drill",
    "status",
    "schedule",
    "run_nightly",
    "metrics",
    "demo",
    "keygen",
    "recover",
    "notify",
]
