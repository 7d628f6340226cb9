"""`fovea-tui undo-selective FILE [--yes] [--dry-run] [--json]`: undo a selective restore.

FILE is the undo file the restore wrote under `<backups.dir>/selective-undo/`. Exit 3 when
rows were edited since the restore (nothing is written then).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.errors import EXIT_OK, EXIT_REFUSED, UsageError


def register(sub) -> None:
    parser = sub.add_parser("undo-selective", help="undo a selective restore (`restore DUMP --video NAME`)",
                            description="Put back the rows a selective restore changed, from the undo file it "
                                        "wrote (in one transaction; refused if they were edited since).")
    parser.add_argument("file", metavar="FILE", help="the undo file the selective restore named")
    parser.add_argument("--yes", action="store_true", help="do not ask")
    parser.add_argument("--dry-run", action="store_true", help="show the rows, change nothing")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.cli.commands.compare import render_changeset
    from fovea_tui.engine.selective.undo import load_undo, undo_selective

    path = Path(args.file)
    cs = load_undo(path)
    if args.dry_run:
        ctx.emit({"ok": True, "dry_run": True, "changeset": cs.as_dict()}, render_changeset(cs, dry_run=True))
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to confirm on: pass --yes to undo, or --dry-run to look", key="--yes")
        ctx.info(render_changeset(cs, dry_run=True))
        sys.stderr.write(f"Type yes to apply this to database {cs.database}, anything else to cancel: ")
        sys.stderr.flush()
        if sys.stdin.readline().strip() != "yes":
            ctx.info("nothing changed")
            return EXIT_REFUSED
    result = undo_selective(ctx.settings, path)
    ctx.emit({"dry_run": False, **result.as_dict()}, result.message)
    return EXIT_OK
