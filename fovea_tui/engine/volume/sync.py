"""The video volume, copied to an object store (`volume.target`) and back.

The runbook does this with `rsync -av --delete`, which cannot write to S3 and which wipes
the off-site copy when run against an unmounted, empty volume. This module replaces it:

- The local walk and the remote listing are two streams sorted by key (S3 lists in
  UTF-8 byte order, which is Python's `str` order), merged like the two halves of a merge
  sort. Nothing holds the whole volume in memory: a directory with more names than
  `SORT_CHUNK` is sorted in runs spilled to temporary files. The plan (what to upload,
  what to delete) is spooled to a temporary file too, so its totals are known before the
  first byte moves, which is what gives progress a total and an ETA.
- Blobs are immutable: an object already off-site with the same size is skipped without
  reading the file. A file whose size differs from its off-site copy is reported and left
  alone unless `replace_changed` is asked for.
- Uploads run on a thread pool; each goes through `Store.put_file`, which makes the
  object visible only once complete (S3 multipart completes atomically, a directory gets
  a temp file and a rename) and verifies size and sha256. An interrupted run therefore
  leaves nothing partial under the target; the next run skips what arrived and starts by
  cleaning up incomplete uploads.
- `volume.delete` mirrors deletions behind a guard: refused (exit 3, nothing deleted) when
  the volume is missing or empty, or when more than `volume.max_delete_percent` of the
  off-site objects would go.
- A pull never writes outside its destination, whatever the object keys say.
- A push to S3 usually does not list the target: it reads what the last sync left it
  holding from a local snapshot, when a marker object and a sample say that can be
  trusted (offsite_listing). A pull always lists.

This module runs a push or a pull and records its summary; `plan` merges the two sorted
streams into what to do, `transfer` does it, `listing` keeps the listing snapshot, and
`result` is what a run returns. Never imports textual: the CLI and the TUI's Volume
screen both call `run_sync`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import acquire, ensure_private_dir
from fovea_tui.engine.infra.stores import DirectoryStore, open_store
from fovea_tui.engine.infra.targets import overlaps, prepare_directory_target
from fovea_tui.engine.ops import policy
from fovea_tui.engine.progress import CancelToken, ProgressEvent, no_progress
from fovea_tui.engine.volume import listing as offsite_listing
from fovea_tui.engine.volume.listing import SnapshotWriter
from fovea_tui.engine.volume.plan import Plan, plan_pull, plan_push
from fovea_tui.engine.volume.result import SyncResult
from fovea_tui.engine.volume.transfer import FileLooks, delete_planned, downloader, run_transfers
from fovea_tui.errors import Cancelled, ConfigError, FoveaError, OperationFailed, SafetyRefusal
from fovea_tui.formatting import ago, plural

SUMMARY_FILE = "sync-last.json"
PULL_SUMMARY_FILE = "sync-last-pull.json"
LOCK_NAME = "volume"

DEFAULT_WORKERS = 10
MAX_PLANNED = 1_000          # dry run: transfers and deletions listed (counts are always exact)
STALE_UPLOAD_S = 0           # incomplete uploads under the target are ours (we hold the lock)


# --------------------------------------------------------------------------- the runs


def _check_target(settings: Settings) -> None:
    if not settings.volume.target:
        raise ConfigError("config key volume.target is not set: nowhere to sync the volume to",
                          key="volume.target", hint='set it to "s3://bucket/prefix/" or a directory')
    target = settings.volume.target
    if not target.startswith("s3://"):
        if overlaps(target, settings.volume.path):
            raise ConfigError(f"volume.target {target} overlaps volume.path {settings.volume.path}",
                              key="volume.target", hint="use a directory outside the volume")


def _open(settings: Settings, workers: int):
    target = settings.volume.target
    try:
        if target.startswith("s3://"):
            return open_store(target, settings.s3, key="volume.target", max_concurrency=workers)
        return open_store(target, settings.s3, key="volume.target")
    except ConfigError as exc:
        raise ConfigError(str(exc.message).replace("backups.offsite", "volume.target"),
                          key="volume.target", hint=exc.hint) from None


def _lock(settings: Settings, dry_run: bool):
    if dry_run:
        return contextlib.nullcontext()

    return acquire(settings, LOCK_NAME, purpose="sync")


def run_sync(settings: Settings, *, dry_run: bool = False, pull: bool = False, to: str | os.PathLike | None = None,
             replace_changed: bool = False, full_listing: bool = False,
             progress: Callable[[ProgressEvent], None] | None = None,
             cancel: CancelToken | None = None, workers: int = DEFAULT_WORKERS) -> SyncResult:
    """Sync the videos to `volume.target` (or, with pull, back into `volume.path` or `to`).

    Where the videos are is the env file's VIDEO_STORAGE_TYPE: the volume (`local`), the app's
    bucket (`s3`; a pull without `to` goes back into it) or both (`hybrid`).

    A push to S3 reads what the target holds from the snapshot its last run left, when that
    can be trusted (see offsite_listing); `full_listing` makes it list the target anyway.

    Returns the result; a delete-guard refusal is `result.refused` (exit code 3), failed
    files are `result.errors` (exit code 1). Raises ConfigError for a bad configuration,
    SafetyRefusal when the volume is missing and deletions are mirrored, LockHeld when
    another sync runs, and Cancelled (after recording the summary) when cancelled.
    """
    progress = progress or no_progress
    cancel = cancel or CancelToken()
    _check_target(settings)
    if to is not None and not pull:
        raise ConfigError("--to only goes with --pull", key="--to")
    if pull:
        from fovea_tui.engine.volume.source import bucket_destination

        into_bucket = bucket_destination(settings, to) is not None

        def run() -> SyncResult:
            return _pull(settings, Path(to) if to is not None else Path(settings.volume.path), dry_run=dry_run,
                         replace_changed=replace_changed, progress=progress, cancel=cancel, workers=workers,
                         into_bucket=into_bucket)
    else:
        def run() -> SyncResult:
            return _push(settings, dry_run=dry_run, replace_changed=replace_changed, full_listing=full_listing,
                         progress=progress, cancel=cancel, workers=workers)
    if dry_run:
        return run()  # changes nothing: not audited
    action = "pull" if pull else "sync"
    where = {"target": settings.volume.target, "into": str(to) if to is not None else None} if pull else {
        "target": settings.volume.target}
    try:
        result = run()
    except Cancelled as exc:
        audit.record(settings, action, "cancelled", {**where, "reason": str(exc)})
        raise
    except SafetyRefusal as exc:
        audit.record(settings, action, "refused", {**where, "reason": str(exc)})
        raise
    except FoveaError as exc:
        audit.record(settings, action, "failed", {**where, "reason": str(exc)})
        raise
    outcome = "refused" if result.refused else "cancelled" if result.cancelled else "ok" if result.ok else "failed"
    audit.record(settings, action, outcome, {
        **where, "uploaded": result.uploaded, "downloaded": result.downloaded, "skipped": result.skipped,
        "deleted": result.deleted, "bytes": result.bytes, "errors": result.error_count, "pending": result.pending,
        "refused": result.refused, "duration_s": round(result.duration_s or 0.0, 2)})
    return result


def _finish(result: SyncResult, t0: float) -> SyncResult:
    result.finished_at = datetime.now(UTC)
    result.duration_s = time.monotonic() - t0
    return result


def _push(settings: Settings, *, dry_run: bool, replace_changed: bool, full_listing: bool, progress,
          cancel: CancelToken, workers: int) -> SyncResult:
    from fovea_tui.engine.volume.source import video_source

    root = Path(settings.volume.path)
    mirror = settings.volume.delete
    source = video_source(settings, workers=workers)
    result = SyncResult("push", source.describe(), settings.volume.target, dry_run=dry_run)
    t0 = time.monotonic()
    if source.storage.uses_volume and not root.is_dir():
        message = f"volume path {root} does not exist or is not a directory: is it mounted?"
        if mirror:
            raise SafetyRefusal(message, hint="refusing to sync with volume.delete = true; nothing was deleted")
        raise OperationFailed(message)
    with _lock(settings, dry_run):
        store = _open(settings, workers)
        try:
            if isinstance(store, DirectoryStore) and not prepare_directory_target(
                    settings, "volume.target", store.root, create=not dry_run):
                store.expect_created()
                result.warn(f"volume.target {store.root} does not exist yet: the sync creates it (0700)")
            if not dry_run:
                result.cleaned_up = store.cleanup_incomplete(older_than_s=STALE_UPLOAD_S)
            listing_started = datetime.now(UTC)
            choice = offsite_listing.choose(settings, store, full_listing=full_listing, now=listing_started)
            result.listing = choice.as_dict(listing_started)
            after = SnapshotWriter() if choice.remembers and not dry_run else None
            try:
                plan = plan_push(root, store, result, replace_changed=replace_changed, mirror_deletes=mirror,
                                 progress=progress, cancel=cancel, snapshot=choice.snapshot, after=after,
                                 local=None if source.kind == "local" else source.items(result.warn))
            except BaseException:
                if after is not None:
                    after.close()
                raise
        except (SafetyRefusal, Cancelled):
            raise
        except FoveaError as exc:  # the store is unreachable, the listing failed: status must know
            if not dry_run:
                result.error(str(exc))
                write_summary(settings, _finish(result, t0))
            raise
        try:
            result.to_transfer, result.to_transfer_bytes = plan.transfer_count, plan.transfer_bytes
            result.to_delete = plan.deletion_count
            if mirror and plan.deletion_count:
                if result.local_files == 0:
                    result.refused = (f"{_what(source)} is empty (is it mounted?): refusing to delete "
                                      f"{plural(plan.deletion_count, 'off-site object')}")
                elif plan.deletion_count * 100 > settings.volume.max_delete_percent * result.remote_objects:
                    share = 100 * plan.deletion_count / result.remote_objects
                    result.refused = (f"{plan.deletion_count} of {plural(result.remote_objects, 'off-site object')} "
                                      f"({share:.1f}%) would be deleted, more than volume.max_delete_percent "
                                      f"= {settings.volume.max_delete_percent}%: nothing deleted")
            if result.local_files == 0:
                result.warn(f"{_what(source)} is empty: is it mounted?")
            if dry_run:
                _list_planned(plan, result, "upload")
                result.deletions = list(itertools.islice(plan.iter_deletions(), MAX_PLANNED))
                result.to_delete = plan.deletion_count
                return _finish(result, t0)
            changes = plan.transfer_count or (plan.deletion_count and not result.refused)
            if changes:
                offsite_listing.discard(settings)  # stopped half-way, the next run must list
            with _recorded(settings, result, t0, cancel):
                reachable = run_transfers(plan, result, source.sender(store), phase="upload",
                                          workers=workers, progress=progress, cancel=cancel)
                result.copies = source.how() if plan.transfer_count else None
                if mirror and plan.deletion_count and not result.refused and reachable and not cancel.cancelled:
                    delete_planned(plan, store, result, progress, cancel)
                if after is not None and (changes or choice.snapshot is None):
                    _remember(settings, store, result, after, plan, cancel,
                              listed_at=choice.last_full_listing(listing_started))
            return result
        finally:
            plan.close()
            if after is not None:
                after.close()


def _what(source) -> str:
    return f"volume {source.describe()}" if source.kind == "local" else source.describe()


def _remember(settings: Settings, store, result: SyncResult, after: SnapshotWriter, plan: Plan,
              cancel: CancelToken, *, listed_at: datetime) -> None:
    """Keep what the target now holds, so the next push can skip listing it; only after a run
    that did everything it planned (otherwise the next run lists in full)."""
    done = (not result.error_count and not result.refused and not cancel.cancelled and not result.pending
            and not result.vanished
            and result.deleted == (plan.deletion_count if settings.volume.delete else 0))
    if not done:
        return
    try:
        after.commit(settings, store, listed_at=listed_at, now=datetime.now(UTC))
    except (OSError, FoveaError) as exc:
        result.warn(f"could not record what {settings.volume.target} holds ({exc}): the next sync lists it in full")


def _list_planned(plan: Plan, result: SyncResult, action: str) -> None:
    """A dry run's answer: the first MAX_PLANNED transfers (`action` is upload or download)."""
    for key, size, reason in itertools.islice(plan.iter_transfers(), MAX_PLANNED):
        result.planned.append({"key": key, "size": size, "action": action, "reason": reason})
    result.pending = plan.transfer_count


@contextlib.contextmanager
def _recorded(settings: Settings, result: SyncResult, t0: float, cancel: CancelToken) -> Iterator[None]:
    """Around a sync's transfers: however they end, the result is finished and written as the
    last sync; then, if they were cancelled, Cancelled is raised."""
    try:
        yield
    finally:
        result.cancelled = cancel.cancelled
        _finish(result, t0)
        write_summary(settings, result)
    if result.cancelled:
        raise Cancelled(cancel.reason)


def _pull(settings: Settings, root: Path, *, dry_run: bool, replace_changed: bool, progress,
          cancel: CancelToken, workers: int, into_bucket: bool = False) -> SyncResult:
    """Back into `root`, or with `into_bucket` (videos in S3, no --to) into the app's bucket."""
    from fovea_tui.engine.volume.bucket import Copier
    from fovea_tui.engine.volume.source import bucket_items
    from fovea_tui.engine.volume.storage import video_storage

    bucket = video_storage(settings).open_bucket(max_concurrency=workers) if into_bucket else None
    result = SyncResult("pull", settings.volume.target, bucket.url if bucket else str(root), dry_run=dry_run)
    t0 = time.monotonic()
    if bucket is None and root.exists() and not root.is_dir():
        raise OperationFailed(f"pull destination {root} is not a directory")
    with _lock(settings, dry_run):
        store = _open(settings, workers)
        held = bucket_items(bucket) if bucket is not None else None
        plan = plan_pull(root, store, result, replace_changed=replace_changed, progress=progress, cancel=cancel,
                         destination=held)
        try:
            result.to_transfer, result.to_transfer_bytes = plan.transfer_count, plan.transfer_bytes
            if dry_run:
                _list_planned(plan, result, "download")
                return _finish(result, t0)
            if bucket is None:
                looks = FileLooks.of(root)  # before anything is pulled into it
                ensure_private_dir(root)
                receive = downloader(store, root, looks)
            else:
                receive = Copier(store, bucket)
            with _recorded(settings, result, t0, cancel):
                run_transfers(plan, result, receive, phase="download", workers=workers,
                              progress=progress, cancel=cancel)
                if bucket is not None and plan.transfer_count:
                    result.copies = receive.describe()
            return result
        finally:
            plan.close()


# --------------------------------------------------------------------------- summary and status


def _summary_path(settings: Settings, direction: str = "push") -> Path:
    return settings.state_dir / (SUMMARY_FILE if direction == "push" else PULL_SUMMARY_FILE)


def write_summary(settings: Settings, result: SyncResult) -> Path | None:
    """Record the run for `status` and the dashboard (atomically; a failure here is not fatal)."""
    path = _summary_path(settings, result.direction)
    data = {
        "time": (result.finished_at or datetime.now(UTC)).isoformat(),
        "started_at": result.started_at.isoformat(),
        "duration_s": round(result.duration_s, 3),
        "direction": result.direction,
        "source": result.source,
        "target": result.target,
        "uploaded": result.uploaded,
        "downloaded": result.downloaded,
        "skipped": result.skipped,
        "deleted": result.deleted,
        "bytes": result.bytes,
        "errors": result.errors[:20],
        "error_count": result.error_count,
        "warning_count": result.warning_count,
        "changed": len(result.changed),
        "pending": result.pending,
        "local_files": result.local_files,
        "remote_objects": result.remote_objects,
        "refused": result.refused,
        "cancelled": result.cancelled,
        "listing": result.listing,
        # the last run that copied everything it planned (status ages the backup by it)
        "last_ok": None,
    }
    clean = not result.error_count and not result.cancelled
    data["last_ok"] = data["time"] if clean else (read_summary(settings, result.direction) or {}).get("last_ok")
    try:
        ensure_private_dir(path.parent)
        return write_atomic(path, json.dumps(data, indent=2))
    except (OSError, FoveaError):
        return None


def read_summary(settings: Settings, direction: str = "push") -> dict[str, Any] | None:
    try:
        return json.loads(_summary_path(settings, direction).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _age_text(seconds: float) -> str:
    now = datetime.now(UTC)
    return ago(now - timedelta(seconds=seconds), now)


def volume_sync_summary(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The `sync` section of status: last run, its age, files pending, and alerts.

    `alerts` is a list of {"subject", "level", "message"} for collect_status to raise.
    """
    now = now or datetime.now(UTC)
    target = settings.volume.target or None
    last = read_summary(settings)
    section: dict[str, Any] = {"ok": True, "target": target, "last": None, "age_s": None, "pending": None,
                               "error_count": 0, "alerts": []}
    alerts = section["alerts"]
    if last is None:
        if target:
            section["summary"] = f"never synced to {target}"
            alerts.append({"subject": "sync", "level": "critical", "message": f"volume never synced to {target}"})
        else:
            section["summary"] = "no volume.target configured"
        return section
    run_age = (now - datetime.fromisoformat(last["time"])).total_seconds()
    ok_time = last.get("last_ok", last["time"])  # files written before last_ok existed: the run itself
    age = (now - datetime.fromisoformat(ok_time)).total_seconds() if ok_time else None
    section.update({
        "last": ok_time, "age_s": round(age, 1) if age is not None else None,
        "last_run": last["time"], "last_run_age_s": round(run_age, 1), "pending": last.get("pending", 0),
        "error_count": last.get("error_count", len(last.get("errors", []))),
        "uploaded": last.get("uploaded", 0), "skipped": last.get("skipped", 0),
        "deleted": last.get("deleted", 0), "bytes": last.get("bytes", 0),
        "changed": last.get("changed", 0), "refused": last.get("refused"),
        "cancelled": last.get("cancelled", False), "last_target": last.get("target"),
        "listing": last.get("listing"),
    })
    text = (f"last synced {_age_text(age)} to {last.get('target')}" if age is not None
            else f"no complete sync to {last.get('target')} yet")
    if ok_time != last["time"]:
        text += f"; last run {_age_text(run_age)} " + ("was interrupted" if section["cancelled"] else "failed")
    if section["pending"]:
        text += f", {plural(section['pending'], 'file')} pending"
    section["summary"] = text
    if section["error_count"]:
        alerts.append({"subject": "sync", "level": "warning",
                       "message": f"last volume sync had {plural(section['error_count'], 'error')}"
                                  f"{', ' + str(section['pending']) + ' files pending' if section['pending'] else ''}"})
    if section["refused"]:
        alerts.append({"subject": "sync", "level": "warning", "message": f"last volume sync refused deletions: {section['refused']}"})
    elif section["cancelled"]:
        alerts.append({"subject": "sync", "level": "warning", "message": f"last volume sync was interrupted; "
                                                      f"{plural(section['pending'], 'file')} pending"})
    if section["changed"]:
        alerts.append({"subject": "sync", "level": "warning", "message": f"{plural(section['changed'], 'video file')} changed locally "
                                                      "but were not replaced off-site"})
    if target and age is None:
        alerts.append({"subject": "sync", "level": "critical", "message": f"volume never synced completely to {target}"})
    elif target and age is not None and age > policy.SYNC_STALE_AFTER.total_seconds():
        alerts.append({"subject": "sync", "level": "warning", "message": f"volume last synced {_age_text(age)}"})
    if target and last.get("target") and last.get("target") != target:
        alerts.append({"subject": "sync", "level": "warning", "message": f"volume never synced to the configured target {target}"})
    return section
