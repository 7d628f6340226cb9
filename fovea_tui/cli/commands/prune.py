"""`fovea-tui prune`: apply the retention policy; `--dry-run` shows exactly what a real run deletes."""

from __future__ import annotations

from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.backups.prune import OVERRIDE_KEYS, PruneRefused, PruneResult, prune
from fovea_tui.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from fovea_tui.formatting import plural


def register(sub) -> None:
    parser = sub.add_parser("prune", help="apply the retention policy; flags override the config")
    add_json_flag(parser)
    parser.add_argument("--dry-run", action="store_true", help="show what would be deleted, delete nothing")
    for key in OVERRIDE_KEYS:
        rule = key.removeprefix("keep_")
        parser.add_argument(f"--keep-{rule}", dest=key, type=_count, metavar="N", default=None,
                            help=f"keep the newest dump of each of the last N {rule} periods"
                            if rule != "last" else "keep the N newest dumps")
    parser.set_defaults(handler=run)


def _count(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def render(result: PruneResult) -> str:
    pp = result.prune_plan
    plan = pp.plan
    verb = "would delete" if result.dry_run else "deleted"
    lines = [f"policy: {plan.policy.describe()}"]
    if plan.refused:
        lines.append(f"REFUSED: {plan.refused}")
        lines.append("nothing deleted")
    lines.append(f"keep ({len(plan.keep)}):")
    for d in plan.keep:
        lines.append(f"  {d.candidate.name:<42} {d.candidate.status:<10} {', '.join(d.reasons)}")
    lines.append(f"forget ({len(plan.forget)}):")
    for d in plan.forget:
        lines.append(f"  {d.candidate.name:<42} {d.candidate.status:<10} {', '.join(d.reasons)}")
    for c in pp.kept_copies:
        lines.append(f"  kept {c['location']} {c['key']}: {c['reason']}")
    if pp.dropped:
        lines.append(f"dropped from the pending journal (newest verified dump): "
                     f"{', '.join(sorted({d.dump for d in pp.dropped}))}")
    if result.dry_run:
        files = pp.all_deletions()
    else:
        files = result.deleted
    if result.reads:
        changed = [r for r in result.reads if r.status != r.cached]
        lines.append(f"read {plural(len(result.reads), 'dump')} end to end first ({result.read_bytes / 2**20:.1f} MiB in "
                     f"{result.read_s:.1f} s)" + (":" if changed else "; each as listed"))
        lines += [f"  {r.name}: listed {r.cached}, read {r.status}" + (f" ({'; '.join(r.reasons)})" if r.reasons else "")
                  for r in changed]
    if pp.pending:
        lines.append(f"retrying {plural(len(pp.pending), 'deletion')} a previous prune left unfinished")
    lines.append(f"{verb} ({plural(len(files), 'file')}):")
    lines += [f"  {f.location:<8} {f.key}" for f in files]
    for deletion, err in result.failed:
        lines.append(f"  FAILED {deletion.location:<8} {deletion.key}: {err}")
    if result.failed:
        lines.append("the failed deletions are journaled; the next prune retries them")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    overrides = {key: getattr(args, key) for key in OVERRIDE_KEYS}
    progress = ctx.progress()
    try:
        with progress:
            result = prune(ctx.settings, dry_run=args.dry_run, overrides=overrides, progress=progress,
                           cancel=ctx.cancel)
    except PruneRefused as exc:
        ctx.info(f"fovea-tui: refused: {exc}")
        ctx.emit(exc.result.to_json(), render(exc.result))
        return EXIT_REFUSED
    ctx.emit(result.to_json(), render(result))
    return EXIT_OK if result.ok else EXIT_FAILED
