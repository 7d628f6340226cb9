"""`fovea-tui backup [--json] [--no-offsite]`: dump, manifest, env copy, off-site copy."""

from __future__ import annotations

from fovea_tui import formatting
from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.backups.offsite import OffsiteFailed
from fovea_tui.engine.backups.pipeline import BackupIncomplete, BackupResult, run_backup
from fovea_tui.engine.ops import monitor
from fovea_tui.errors import EXIT_FAILED, EXIT_OK
from fovea_tui.formatting import plural


def register(sub) -> None:
    parser = sub.add_parser("backup", help="dump the database to backups.dir, write the manifest, "
                            "copy the env file, upload them to backups.offsite")
    add_json_flag(parser)
    parser.add_argument("--no-offsite", action="store_true",
                        help="keep this backup local even when backups.offsite is set")
    parser.set_defaults(handler=run)


def render(result: BackupResult) -> str:
    rows = result.rows
    lines = [
        f"backup {result.path}",
        f"  {formatting.size(result.size)} gzip "
        f"({formatting.size(result.raw_bytes)} of SQL), {plural(len(result.tables), 'table')}, "
        f"{plural(rows, 'row')}, {result.duration_s:.1f} s, sha256 {result.sha256[:16]}...",
        f"  manifest {result.manifest_path.name}",
        f"  env copy {result.env_copy.name} (mode 0600)" if result.env_copy else
        f"  env copy FAILED: {result.env_error}" if result.env_error else "  env copy: none",
    ]
    offsite = result.offsite or {}
    if result.offsite_error:
        lines.append(f"  off-site copy FAILED ({offsite.get('url', 'backups.offsite')}): {result.offsite_error}")
        if offsite.get("keys"):
            lines.append(f"    uploaded: {', '.join(offsite['keys'])}")
        if offsite.get("missing"):
            lines.append(f"    NOT uploaded: {', '.join(offsite['missing'])}")
    elif offsite:
        lines.append(f"  off-site {offsite['url']}: {', '.join(offsite['keys'])}")
    else:
        lines.append("  off-site: none")
    for warning in result.warnings:
        lines.append(f"  WARNING {warning}")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    settings = ctx.settings
    with monitor.Watch.for_job(settings, "backup") as watch, ctx.progress() as progress:
        try:
            result = run_backup(settings, progress=progress, cancel=ctx.cancel, offsite=not args.no_offsite)
        except (OffsiteFailed, BackupIncomplete) as exc:
            progress.__exit__(None, None, None)
            ctx.info(f"fovea-tui: {exc}")
            watch.finish(EXIT_FAILED, str(exc))
            data = exc.result.as_dict()
            data["error"] = str(exc)
            data["monitor"] = watch.as_list()
            ctx.emit(data, render(exc.result))
            return EXIT_FAILED
        watch.finish(EXIT_OK, f"{result.path.name}: {result.size} bytes, {plural(len(result.tables), 'table')}, "
                              f"{result.duration_s:.1f} s" + (", copied off-site" if result.offsite else ""))
    for warning in result.warnings:
        ctx.info(f"warning: {warning}")
    data = result.as_dict()
    data["monitor"] = watch.as_list()
    ctx.emit(data, render(result))
    return EXIT_OK
