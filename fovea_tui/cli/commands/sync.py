"""`fovea-tui sync [--dry-run] [--json] [--pull [--to DIR]] [--replace-changed] [--full-listing]`:
the video volume to `volume.target`, or with --pull back into `volume.path` (or DIR)."""

from __future__ import annotations

from fovea_tui import formatting
from fovea_tui.cli.context import CliContext
from fovea_tui.cli.flags import add_json_flag
from fovea_tui.engine.ops import monitor
from fovea_tui.errors import UsageError
from fovea_tui.formatting import plural


def register(sub) -> None:
    parser = sub.add_parser(
        "sync", help="copy the videos to volume.target; with --pull, back into volume.path (or the app's bucket) or DIR",
        description="Copy the videos (volume.path, or the app's bucket when the env file says "
                    "VIDEO_STORAGE_TYPE=s3 or hybrid) to volume.target (s3://bucket/prefix/ or a "
                    "directory). Files already there with the same size are skipped; new ones are "
                    "uploaded and verified. With volume.delete = true, off-site objects whose file is gone "
                    "are deleted, unless the delete guard refuses (exit 3).")
    parser.add_argument("--dry-run", action="store_true", help="list what would be copied and deleted; change nothing")
    parser.add_argument("--pull", action="store_true", help="download the volume from volume.target")
    parser.add_argument("--to", metavar="DIR", help="with --pull: download into DIR instead of volume.path")
    parser.add_argument("--replace-changed", action="store_true",
                        help="copy files whose size differs from the other side's copy "
                             "(by default they are reported and left alone)")
    parser.add_argument("--full-listing", action="store_true",
                        help="list the whole S3 target even if the snapshot of the last sync can be trusted "
                             "(by default it is listed at least every volume.full_listing_hours)")
    add_json_flag(parser)
    parser.set_defaults(handler=run)


def render(d: dict) -> str:
    push = d["direction"] == "push"
    lines = []
    if d["dry_run"]:
        verb = "upload" if push else "download"
        lines.append(f"dry run: would {verb} {plural(d['to_transfer'], 'file')} ({formatting.size(d['to_transfer_bytes'])}), "
                     f"skip {d['skipped']}" + (f", delete {len(d['deletions'])}" if push else ""))
        for item in d.get("planned", [])[:50]:
            lines.append(f"  {verb:<8} {item['key']} ({formatting.size(item['size'])}){' [changed]' if item['reason'] == 'changed' else ''}")
        if len(d.get("planned", [])) > 50:
            lines.append(f"  ... and {len(d['planned']) - 50} more")
        for key in d["deletions"][:50]:
            lines.append(f"  delete   {key}")
        if len(d["deletions"]) > 50:
            lines.append(f"  ... and {len(d['deletions']) - 50} more")
    else:
        moved = d["uploaded"] if push else d["downloaded"]
        lines.append(f"{'uploaded' if push else 'downloaded'} {plural(moved, 'file')} ({formatting.size(d['bytes'])}), "
                     f"skipped {d['skipped']}, deleted {d['deleted']}, in {d['duration_s']:.1f}s "
                     f"({d['source']} -> {d['target']})")
        if d["pending"]:
            lines.append(f"{plural(d['pending'], 'file')} pending: run sync again")
    if d.get("copies"):
        lines.append(f"bucket objects: {d['copies']}")
    if d.get("listing"):
        how = ("read from the snapshot of the last sync" if d["listing"]["mode"] == "snapshot"
               else "listed in full")
        lines.append(f"off-site objects {how}: {d['listing']['reason']}")
    for w in d["warnings"]:
        lines.append(f"warning: {w}")
    if d["warning_count"] > len(d["warnings"]):
        lines.append(f"... and {plural(d['warning_count'] - len(d['warnings']), 'more warning')}")
    for e in d["errors"]:
        lines.append(f"error: {e}")
    if d["error_count"] > len(d["errors"]):
        lines.append(f"... and {plural(d['error_count'] - len(d['errors']), 'more error')}")
    if d["refused"]:
        lines.append(f"refused: {d['refused']}")
    return "\n".join(lines)


def run(args, ctx: CliContext) -> int:
    from fovea_tui.engine.volume.sync import run_sync

    if args.to and not args.pull:
        raise UsageError("--to only goes with --pull", key="--to")
    if args.full_listing and args.pull:
        raise UsageError("--full-listing only goes with a push: a pull always lists the target", key="--full-listing")
    # Only a real push is the job a dead-man's switch watches; a dry run or a pull is a person's.
    watched = not (args.dry_run or args.pull)
    watch = monitor.Watch.for_job(ctx.settings, "sync") if watched else monitor.Watch(ctx.settings, "sync")
    with watch, ctx.progress() as progress:
        result = run_sync(ctx.settings, dry_run=args.dry_run, pull=args.pull, to=args.to,
                          replace_changed=args.replace_changed, full_listing=args.full_listing,
                          progress=progress, cancel=ctx.cancel)
        data = result.as_dict()
        watch.finish(result.exit_code, f"{data['uploaded']} uploaded, {data['skipped']} unchanged, "
                                       f"{data['deleted']} deleted, {data['bytes']} bytes, "
                                       f"{plural(data['error_count'], 'error')}"
                     + (f"; refused: {data['refused']}" if data["refused"] else "")
                     + (f"; first error: {data['errors'][0]}" if data["errors"] else ""))
    data["monitor"] = watch.as_list()
    ctx.emit(data, render(data))
    if result.refused:
        ctx.info(f"fovea-tui: delete guard: {result.refused}")
    elif result.error_count and ctx.json:
        ctx.info(f"fovea-tui: sync finished with {formatting.plural(result.error_count, 'error')}")
    return result.exit_code
