"""`fovea-tui list`: the backup inventory, local and off-site."""

from __future__ import annotations

from datetime import UTC, datetime

from fovea_tui import formatting
from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.backups.inventory import Inventory, load_inventory, verify_entries


def register(sub) -> None:
    parser = sub.add_parser("list", help="the backup inventory, local and off-site")
    add_json_flag(parser)
    parser.add_argument("--verify", action="store_true",
                        help="verify local dumps not yet verified (reads every byte of them)")
    parser.add_argument("--no-offsite", action="store_true", help="list only backups.dir")
    parser.set_defaults(handler=run)


def render(inv: Inventory, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    lines = []
    if not inv.entries:
        lines.append(f"no dumps in {inv.local_dir}" + (f" nor in {inv.offsite_url}" if inv.offsite_url else ""))
    else:
        lines.append(f"{'name':<42} {'age':>14} {'size':>10}  {'where':<14} status")
        for e in inv.entries:
            where = e.where
            age = formatting.ago(e.time, now)
            flag = " (pending deletion)" if e.pending_deletion else ""
            lines.append(f"{e.name:<42} {age:>14} {formatting.size(e.size):>10}  "
                         f"{where:<14} {e.status}{flag}")
            for w in e.warnings:
                lines.append(f"{'':<44}! {w}")
        c = inv.counts()
        lines.append("")
        lines.append(f"{formatting.plural(len(inv), 'dump')}: {c['verified']} verified, {c['unverified']} unverified, "
                     f"{c['corrupt']} corrupt" + (f", {c['mismatch']} mismatch" if c["mismatch"] else "") + "; "
                     f"{formatting.size(inv.total_size())}")
    for s in inv.unrecognised:
        lines.append(f"unrecognised: {s.location} {s.name}: {s.reason}")
    for s in inv.orphans:
        lines.append(f"orphan: {s.location} {s.name}: {s.reason}")
    for err in inv.errors:
        lines.append(f"error: {err}")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    settings = ctx.settings
    inv = load_inventory(settings, include_offsite=not args.no_offsite)
    if args.verify:
        with ctx.progress() as progress:
            inv = verify_entries(settings, inv, progress=progress, cancel=ctx.cancel,
                                   include_offsite=not args.no_offsite)
    ctx.emit(inv.to_json(), render(inv))
    return 1 if inv.errors else 0
