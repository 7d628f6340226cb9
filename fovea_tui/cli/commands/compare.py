"""`fovea-tui compare DUMP [--video NAME] [--persona NAME] [--json]`: what differs between a dump
and the live database, per video and per persona, most different first.

Also the face of the selective restore (`restore DUMP --video NAME`) and of its undo.
Exit codes: 0 done; 1 failed; 2 bad flags, an unknown dump, video or persona (named);
3 refused (corrupt dump, another selective restore running, rows edited meanwhile,
personas gone and no choice made).
"""

from __future__ import annotations

import sys

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.errors import EXIT_OK, EXIT_REFUSED, UsageError

SHOWN_ROWS = 20


def register(sub) -> None:
    parser = sub.add_parser(
        "compare", help="compare a dump with the live database, per video and persona",
        description="Load DUMP into a scratch database on the same server (dropped afterwards), compare it "
                    "with the live database per video (annotations, summaries, claims) and per persona "
                    "(ontology, world state), and list what differs, most first. With --video or --persona, "
                    "list the differing rows of that one. Nothing is stopped or written.")
    parser.add_argument("dump", metavar="DUMP", help="a dump's file name in backups.dir, or its path")
    parser.add_argument("--video", metavar="NAME", help="only this video (file name or id), row by row")
    parser.add_argument("--persona", metavar="NAME", help="only this persona (name or id), row by row")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.engine.selective.session import open_session

    if args.video and args.persona:
        raise UsageError("give --video or --persona, not both", key="--persona")
    with ctx.progress() as progress, open_session(ctx.settings, args.dump, cancel=ctx.cancel,
                                                   progress=progress) as session:
        kind, wanted = ("video", args.video) if args.video else ("persona", args.persona)
        if wanted:
            scope = session.find(kind, wanted)
            rows = session.rows(scope)
            rows.diff(scope)
            data = {"dump": session.dump.name, "scope": scope.as_dict(), "rows": rows.as_dict()}
            ctx.emit(data, render_scope(scope, rows))
            return EXIT_OK
        comparison = session.compare(progress=lambda table: ctx.info(f"comparing {table}"))
    ctx.emit(comparison.as_dict(), render(comparison))
    return EXIT_OK


def render(comparison) -> str:
    from fovea_tui.formatting import human_duration

    differing = comparison.differing
    lines = [f"{comparison.dump} against database {comparison.database}: {len(differing)} of "
             f"{len(comparison.scopes)} videos and personas differ (compared in "
             f"{human_duration(comparison.duration_s)})"]
    for scope in differing:
        lines.append(f"  {scope.kind:<8} {scope.summary()}")
    for warning in comparison.warnings:
        lines.append(f"warning: {warning}")
    if differing:
        first = differing[0]
        lines.append("")
        lines.append(f"rows of the first: `fovea-tui compare {comparison.dump} --{first.kind} {first.id}`; "
                     f"bring it back: `fovea-tui restore {comparison.dump} --{first.kind} {first.id} --dry-run`")
    return "\n".join(lines)


def render_scope(scope, rows) -> str:
    lines = [f"{scope.kind} {scope.summary()}"]
    for t in rows.tables:
        for what, ids, side in (("only in the dump", t.only_dump, t.dump), ("only live", t.only_live, t.live),
                                ("changed", t.changed, t.live)):
            if not ids:
                continue
            lines.append(f"  {t.table}: {len(ids)} {what}")
            for rid in ids[:SHOWN_ROWS]:
                lines.append(f"    {_safe(rid)}  {side[rid].summary(t.table)}")
            if len(ids) > SHOWN_ROWS:
                lines.append(f"    ... and {len(ids) - SHOWN_ROWS} more (--json lists them all)")
    return "\n".join(lines)


def _safe(text: str) -> str:
    from fovea_tui.engine.selective.scopes import printable

    return printable(text)


# --------------------------------------------------------------------------- restore --video / --persona


def add_restore_flags(parser) -> None:
    """The selective restore's flags on `restore` (used only with --video or --persona)."""
    parser.add_argument("--video", metavar="NAME", action="append",
                        help="bring back only this video (file name or id) as the dump has it; repeatable")
    parser.add_argument("--persona", metavar="NAME", action="append",
                        help="bring back only this persona (name or id), its ontology and world state; repeatable")
    parser.add_argument("--mode", choices=("replace", "add-missing"),
                        help="with --video/--persona: replace (default: the scope becomes what the dump had) "
                             "or add-missing (only insert rows the dump has and live lacks)")
    parser.add_argument("--dry-run", action="store_true", help="with --video/--persona: show the rows, change nothing")
    parser.add_argument("--recreate-personas", action="store_true",
                        help="with --video: re-create personas the dump's rows need and live lost")
    parser.add_argument("--leave-out-orphans", action="store_true",
                        help="with --video: leave out the dump's rows of personas deleted since")


def selective_requested(args) -> bool:
    return bool(args.video or args.persona)


def check_restore_flags(args) -> None:
    """Selective flags without a scope, or whole-restore flags with one: exit 2 naming the flag."""
    if not selective_requested(args):
        for flag in ("mode", "dry_run", "recreate_personas", "leave_out_orphans"):
            if getattr(args, flag):
                raise UsageError(f"--{flag.replace('_', '-')} goes with --video or --persona",
                                 key=f"--{flag.replace('_', '-')}")
        return
    for flag in ("resume", "rollback", "follow", "skip_migrate", "no_rollback", "allow_missing_videos",
                 "accept_mismatch", "force_after_success"):
        if getattr(args, flag, None):
            name = "--" + flag.replace("_", "-")
            raise UsageError(f"{name} is for whole restores, not with --video/--persona", key=name)
    if args.recreate_personas and args.leave_out_orphans:
        raise UsageError("choose --recreate-personas or --leave-out-orphans, not both", key="--leave-out-orphans")
    if not args.dump:
        raise UsageError("a selective restore needs DUMP", key="DUMP")


def run_restore(args, ctx: CliContext) -> int:
    from fovea_tui.engine.selective.session import open_session

    check_restore_flags(args)
    interactive = sys.stdin.isatty()
    if not args.dry_run and not args.yes and not interactive:
        raise UsageError("no terminal to confirm on: pass --yes to apply, or --dry-run to look", key="--yes")
    wanted = [("video", v) for v in args.video or []] + [("persona", p) for p in args.persona or []]
    results = []
    with ctx.progress() as progress, open_session(ctx.settings, args.dump, cancel=ctx.cancel,
                                                   progress=progress) as session:
        scopes = [session.find(kind, name) for kind, name in wanted]
        for scope in scopes:
            cs = session.changeset(scope, args.mode or "replace", recreate_personas=args.recreate_personas,
                                   leave_out_orphans=args.leave_out_orphans)
            if args.dry_run or cs.empty:
                results.append({"dry_run": args.dry_run, "changeset": cs.as_dict()})
                if not ctx.json:
                    ctx.emit({}, render_changeset(cs, dry_run=args.dry_run))
                continue
            if not args.yes:
                ctx.info(render_changeset(cs, dry_run=True))
                if not _confirm(cs):
                    results.append({"dry_run": False, "cancelled": True, "changeset": cs.as_dict()})
                    ctx.info("nothing changed")
                    continue
            applied = session.apply(cs)
            results.append({"dry_run": False, **applied.as_dict()})
            if not ctx.json:
                ctx.emit({}, applied.message + "".join(f"\nnote: {n}" for n in cs.notes))
    if ctx.json:
        ctx.emit({"ok": True, "dump": args.dump, "results": results})
    return EXIT_OK if all(not r.get("cancelled") for r in results) else EXIT_REFUSED


def _confirm(cs) -> bool:
    try:
        sys.stderr.write(f"Type yes to apply this to database {cs.database}, anything else to cancel: ")
        sys.stderr.flush()
        return sys.stdin.readline().strip() == "yes"
    except (EOFError, KeyboardInterrupt):
        return False


def render_changeset(cs, *, dry_run: bool) -> str:
    head = ("dry run, nothing changed: " if dry_run else "") + cs.describe()
    lines = [head]
    for c in cs.ordered()[:200]:
        lines.append(f"  {c.action:<6} {c.table:<16} {_safe(c.id)}  {c.label}")
    if len(cs.changes) > 200:
        lines.append(f"  ... and {len(cs.changes) - 200} more (--json lists them all)")
    lines += [f"note: {n}" for n in cs.notes]
    return "\n".join(lines)
