"""The restore's video step: the files of every restored `videos` row back in the install's
storage before the backend can see the database.

Fovea's backend deletes every `videos` row whose file it cannot find (at start-up outside
production, and on POST /api/videos/sync), and the cascade takes the video's annotations,
summaries and claims with it. So after the dump is restored, the rows are compared with the
files in the volume (or the objects in the app's bucket); what is missing and `volume.target`
holds is pulled back, only those files, verified; what is still missing is reported with what
depends on it, and the runner does not start the backend without the operator's acceptance.
"""

from __future__ import annotations

from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.engine.volume.storage import (
    VideoRow,
    VideoStorage,
    dependents,
    list_keys,
    missing_from,
    shown,
    video_rows,
    video_storage,
)
from fovea_tui.errors import ConfigError, FoveaError
from fovea_tui.formatting import plural

LISTED = 200  # missing keys kept in the job's facts (the count is always exact)


def _open_target(settings):
    from fovea_tui.engine.infra.stores import open_store

    return open_store(settings.volume.target, settings.s3, key="volume.target")


def bring_back(ctx) -> dict | None:
    """Compare, pull what `volume.target` holds of the missing files, compare again. None when
    the database has no videos table; else the facts the step, the report and the faces show."""
    settings = ctx.settings
    storage = video_storage(settings, ctx.env)
    rows = video_rows(ctx.db, storage.storage_path)
    if rows is None:
        return None

    def listing(event: ProgressEvent) -> None:
        ctx.progress(event.done, event.total, event.unit)

    missing = missing_from(storage, rows, cancel=ctx.cancel, progress=listing)
    ctx.output(f"{plural(len(rows), 'video')} referenced, {len(missing)} missing from {storage.describe()}")
    pulled = 0
    in_target = 0
    if missing and settings.volume.target:
        target = _open_target(settings)
        held = list_keys(target, ctx.cancel, listing, "listing")
        wanted = [r for r in missing if _target_key(r, held) is not None]
        in_target = len(wanted)
        ctx.output(f"{in_target} of the {len(missing)} missing are in {settings.volume.target}: pulling them")
        pulled = _pull(ctx, storage, target, wanted, held)
        missing = missing_from(storage, missing, cancel=ctx.cancel, progress=listing)
    was_running = ctx.facts.get("was_running") or []
    reconcilers = [s for s in settings.stack.reconcile_services if s in was_running] if ctx.stack is not None else []
    deps = dependents(ctx.db, [r.id for r in missing])
    return {
        "storage": storage.describe(), "kind": storage.kind, "target": settings.volume.target or None,
        "referenced": len(rows), "missing": len(missing), "missing_keys": [r.key for r in missing[:LISTED]],
        "pulled": pulled, "in_target": in_target, "reconcilers": reconcilers, **deps,
    }


def _target_key(row: VideoRow, held: dict[str, int]) -> str | None:
    if row.key in held:
        return row.key
    return row.filename if row.filename in held else None


def _held_key(row: VideoRow, held: dict[str, int]) -> str:
    """The copy's key of a row `_target_key` found."""
    key = _target_key(row, held)
    assert key is not None  # only rows the copy holds are pulled
    return key


def _pull(ctx, storage: VideoStorage, target, rows: list[VideoRow], held: dict[str, int]) -> int:
    """Copy these rows' files from `volume.target` into the install's storage (the volume when
    it has one, else the app's bucket), one after another, each verified; progress over bytes."""
    from fovea_tui.engine.infra.stores import DirectoryStore
    from fovea_tui.engine.volume.bucket import Copier
    from fovea_tui.engine.volume.plan import safe_destination

    total = sum(held[_held_key(r, held)] for r in rows)
    done = 0
    if storage.uses_volume:
        storage.volume.mkdir(parents=True, exist_ok=True)
        dest_store = DirectoryStore(storage.volume)
    else:
        dest_store = storage.open_bucket()
    copier = Copier(target, dest_store)
    pulled = 0
    for row in rows:
        ctx.cancel.check()
        key = _held_key(row, held)
        if storage.uses_volume and safe_destination(storage.volume, row.key) is None:
            ctx.output(f"refused video path {row.key!r}: it would be written outside {storage.volume}; left missing")
            continue
        base = done

        def progress(event: ProgressEvent, base: int = base) -> None:
            ctx.progress(base + event.done, total)

        ctx.output(f"pulling {key} ({held[key]} bytes)")
        if key != row.key:  # the copy holds it under its file name: put it where the row says
            dest = storage.volume / row.key
            dest.parent.mkdir(parents=True, exist_ok=True)
            target.get_file(key, dest, progress=progress, cancel=ctx.cancel)
        else:
            copier(key, held[key], progress=progress, cancel=ctx.cancel)
        done += held[key]
        pulled += 1
        ctx.progress(done, total)
    return pulled


def missing_words(found: dict) -> str:
    """The missing videos and what depends on them, in one sentence."""
    where = found["storage"]
    target = found.get("target")
    nowhere = f"not in {target}" if target else "volume.target is not set"
    return (f"{found['missing']} of {plural(found['referenced'], 'referenced video')} are missing from {where} ({nowhere}): "
            f"{shown(found['missing_keys'])}; {plural(found['annotations'], 'annotation')}, {plural(found['summaries'], 'summary')} "
            f"and {plural(found['claims'], 'claim')} depend on them")


def preflight_videos(ctx, names: list[tuple[str, str]]):
    """Pre-flight's view from the dump alone: of the videos the dump references
    (`names`: (filename, path) pairs read from its COPY block), how many are missing from the
    install's storage and whether `volume.target` holds them. Returns a dict for the check."""
    settings = ctx.settings
    storage = video_storage(settings, ctx.env)
    from fovea_tui.engine.volume.storage import video_key

    rows = [VideoRow("", filename, video_key(path, filename, storage.storage_path), None) for filename, path in names]
    missing = missing_from(storage, rows, cancel=ctx.cancel)
    in_target = None
    if missing and settings.volume.target:
        try:
            held = list_keys(_open_target(settings), ctx.cancel)
        except (ConfigError, FoveaError) as exc:
            return {"storage": storage.describe(), "referenced": len(rows), "missing": len(missing),
                    "missing_keys": [r.key for r in missing[:LISTED]], "in_target": None, "error": str(exc)}
        in_target = sum(1 for r in missing if _target_key(r, held) is not None)
    return {"storage": storage.describe(), "referenced": len(rows), "missing": len(missing),
            "missing_keys": [r.key for r in missing[:LISTED]], "in_target": in_target}
