"""`fovea-tui verify [DUMP ...] [--json]`: read dumps end to end and check them."""

from __future__ import annotations

from fovea_tui import formatting
from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.backups.verify import VerifyResult, verify_many
from fovea_tui.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from fovea_tui.formatting import plural


def register(sub) -> None:
    parser = sub.add_parser("verify", help="integrity of one, several or all dumps (gzip, completion line, "
                            "manifest sha256 and size); exit 3 if any is corrupt")
    parser.add_argument("dumps", nargs="*", metavar="DUMP",
                        help="file name or path of a dump, or an off-site key (default: every dump in backups.dir)")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def line(result: VerifyResult) -> str:
    what = "legacy, no manifest" if result.legacy else ("manifest checked" if result.has_manifest else "no manifest")
    head = (f"{result.status.upper():<9} {result.name}  {formatting.size(result.size)}, "
            f"{plural(len(result.tables), 'table')}, {plural(sum(result.tables.values()), 'row')} ({what})")
    extra = [f"          - {r}" for r in result.reasons] + [f"          ~ {w}" for w in result.warnings]
    return "\n".join([head, *extra])


def run(args, ctx: CliContext) -> int:
    settings = ctx.settings
    with ctx.progress() as progress:
        results = verify_many(settings, args.dumps or None, cancel=ctx.cancel, progress=progress)
    corrupt = [r for r in results if r.status == "corrupt"]
    unchecked = [r for r in results if r.status == "unverified"]
    mismatch = [r for r in results if r.status == "mismatch"]
    good = len(results) - len(corrupt) - len(unchecked) - len(mismatch)
    data = {"ok": not corrupt and not unchecked and not mismatch, "dumps": [r.as_dict() for r in results],
            "verified": good, "unverified": len(unchecked), "corrupt": len(corrupt), "mismatch": len(mismatch)}
    if results:
        text = "\n".join(line(r) for r in results)
        text += (f"\n{good} verified, {len(unchecked)} unverified (manifest unreadable), {len(corrupt)} corrupt, "
                 f"{len(mismatch)} mismatch (whole, but not what the manifest says)")
    else:
        text = f"no dumps in {settings.backups_dir}"
    ctx.emit(data, text)
    if corrupt:
        return EXIT_REFUSED
    return EXIT_FAILED if unchecked or mismatch else EXIT_OK
