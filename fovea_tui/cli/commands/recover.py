"""`fovea-tui recover --from URL [--identity FILE] [--config-out PATH] [--yes]`: rebuild a
lost install on a fresh host from the off-site copy alone.

Lists the backups under URL (newest verified first), fetches and verifies the chosen one
(decrypting it), writes this host's config, installs the env copy, says what to adjust by
hand, pulls the video copy, then runs the guided restore exactly as `restore` does.
Exit codes: 0 recovered; 1 a step failed; 2 bad URL, identity or config; 3 refused (a
backup that does not verify, an env file or config it would overwrite, a restore guard).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fovea_tui.cli.context import CliContext
from fovea_tui.errors import EXIT_OK, UsageError


def register(sub) -> None:
    from fovea_tui.cli.flags import add_json_flag

    parser = sub.add_parser(
        "recover", help="rebuild a lost install on a fresh host from the off-site copy alone",
        description="On a new host with no config and no state: list the off-site backups under URL, fetch, "
                    "decrypt and verify the newest verified one (or --dump), write a config for this host "
                    "(--config names one already written for it: only what it lacks is filled in), install the "
                    "env copy as the install's env file (0600), pull the video copy, then run the guided restore.")
    parser.add_argument("--from", dest="source", metavar="URL", required=True,
                        help="the off-site copy: s3://bucket/prefix/ or a directory")
    parser.add_argument("--identity", metavar="FILE", help="the age identity (or SSH private key) that opens "
                        "encrypted copies")
    parser.add_argument("--config-out", metavar="PATH",
                        help="where to write this host's config (default: --config, else the user config)")
    parser.add_argument("--dump", metavar="NAME", help="recover this backup instead of the newest verified one")
    parser.add_argument("--list", action="store_true", help="only list the backups under URL")
    parser.add_argument("--replace-env", action="store_true",
                        help="install the backup's env copy over a different existing env file (kept beside it)")
    parser.add_argument("--no-restore", action="store_true",
                        help="stop before the guided restore (config, env file and videos in place)")
    parser.add_argument("--yes", action="store_true", help="do not ask before recovering, nor for the database name")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def _listing(backups) -> str:
    if not backups:
        return "no backups found"
    lines = []
    for i, b in enumerate(backups):
        mark = "verified  " if b.verified else "UNVERIFIED"
        lock = " (encrypted)" if b.encrypted else ""
        lines.append(f"{'*' if i == 0 else ' '} {mark} {b.name}  {b.size:>12} bytes{lock}  {b.detail}")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.engine.drill import recover

    config_path = Path(ctx.config_path) if ctx.config_path else None
    if config_path is not None and not config_path.is_file():
        raise UsageError(f"config file {config_path} (from --config) does not exist", key="--config")
    base = None
    if config_path is not None:
        from fovea_tui.config import load_file

        base = load_file(config_path)
    if args.list:
        backups = recover.list_backups(args.source, base)
        ctx.emit({"backups": [b.as_dict() for b in backups]}, _listing(backups))
        return EXIT_OK
    if not args.yes:
        if not sys.stdin.isatty():
            raise UsageError("no terminal to confirm on: pass --yes to recover", key="--yes")
        backups = recover.list_backups(args.source, base)
        ctx.info(_listing(backups))
        chosen = args.dump or (backups[0].name if backups else "")
        sys.stderr.write(f"Recover this host from {chosen or 'nothing'}? Type yes to go ahead: ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() != "yes":
            ctx.info("nothing done")
            return 1
    with ctx.progress() as progress:
        prepared = recover.prepare(args.source, dump=args.dump, identity=args.identity, config_path=config_path,
                                   config_out=Path(args.config_out) if args.config_out else None,
                                   replace_env=args.replace_env, progress=progress, cancel=ctx.cancel,
                                   on_step=lambda s: ctx.info(f"recover: {s}"))
    lines = [f"recovering from {prepared.backup.name} ({prepared.backup.time}, {args.source})",
             f"  config for this host: {prepared.config_path}",
             f"  dump verified: {prepared.dump_path}",
             f"  env file {prepared.settings.install.env_file}: {prepared.env_installed} (mode 0600)"]
    if prepared.videos is not None:
        lines.append(f"  videos pulled into {prepared.settings.volume.path}: {prepared.videos['downloaded']} "
                     f"downloaded, {prepared.videos['skipped']} already there")
    if prepared.adjustments:
        lines.append("adjust by hand before the backend starts (the runbook's step 4):")
        lines += [f"  - {note}" for note in prepared.adjustments]
    for w in prepared.warnings:
        lines.append(f"warning: {w}")
    if prepared.target_empty:
        lines.append("the database to restore into is empty: nothing on this host can be lost by the restore")
    data = {"ok": True, **prepared.as_dict(), "restore": None}
    if args.no_restore:
        lines.append(f"next: fovea-tui --config {prepared.config_path} restore {prepared.dump_path.name}")
        ctx.emit(data, "\n".join(lines))
        return EXIT_OK
    ctx.info("\n".join(lines))
    return _restore(args, ctx, prepared, data, lines)


def _restore(args, ctx: CliContext, prepared, data: dict, lines: list[str]) -> int:
    from fovea_tui.cli.commands.restore import _exit_code, _Follower, render
    from fovea_tui.engine import restore as engine
    from fovea_tui.engine.infra import jobs

    ctx.settings = prepared.settings  # the config just written is this command's from here on
    job_id = engine.start_restore(prepared.settings, str(prepared.dump_path), confirmed=args.yes)
    ctx.info(f"restore job {job_id} started (`fovea-tui --config {prepared.config_path} restore --follow {job_id}`)")
    follower = _Follower(ctx, job_id, yes=args.yes)
    with follower.bar:
        state = jobs.follow(prepared.settings, job_id, follower, stop=lambda: ctx.cancel.cancelled)
    result = engine.report(state)
    data.update(ok=bool(result["ok"]), restore=result)
    ctx.emit(data, "\n".join(lines) + "\n\n" + render(result))
    return _exit_code(result)
