"""The drill's checks of a restored scratch database and of the copies it depends on.

Rows per table use the restore's own comparison (`restore.verify.row_differences`); the
drill's check compares against the manifest, without the restore's allowance for tables
that applied migrations touched (a drill applies none).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from datetime import datetime
from pathlib import Path, PurePosixPath

from fovea_tui.config import Settings
from fovea_tui.engine.backups import encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.drill.choose import Chosen
from fovea_tui.engine.drill.result import Check, iso
from fovea_tui.engine.infra.stores import open_store
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle
from fovea_tui.engine.restore.verify import row_differences, video_file
from fovea_tui.engine.volume.listing import is_marker
from fovea_tui.engine.volume.sync import read_summary
from fovea_tui.envfile import CRITICAL_KEYS, EnvFile
from fovea_tui.errors import ConfigError
from fovea_tui.formatting import human_duration


def video_key(row_path: str, filename: str, storage_path: str) -> str:
    """The key under `volume.target` of a `videos` row: its path under STORAGE_PATH (the
    sync's keys are paths relative to `volume.path`, which is STORAGE_PATH on the host)."""
    return video_file(row_path or "", filename or "", storage_path or "/videos", PurePosixPath("")).as_posix()


def parse_env_bytes(data: bytes, name: str) -> EnvFile:
    """An env copy read from a store, parsed like the install's .env (values registered as secrets)."""
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(data.decode("utf-8", "replace")), interpolate=False)
    return EnvFile(Path(name), {k: (v or "") for k, v in values.items() if k})


def check_env_copy(settings: Settings, chosen: Chosen) -> tuple[Check, EnvFile | None]:
    name = chosen.name[: -len(mf.DUMP_SUFFIX)] + ".env"
    recorded = (chosen.manifest.env_file or {}).get("sha256")
    if chosen.source == "offsite":
        where = f"off-site at {settings.backups.offsite}"
        if not chosen.env_key:
            return Check("env_copy", False, f"no env copy {name} {where}: a rebuilt install would have no "
                         "SESSION_SECRET, no DATABASE_URL and no API_KEY_ENCRYPTION_KEY (stored API keys lost)"), None
        data = encryption.read_decrypted(chosen.store, chosen.env_key,
                                         identities=encryption.identities_for(settings, chosen.env_key))
        if chosen.env_key.endswith(encryption.AGE_SUFFIX):
            where += ", decrypted with encryption.identity_file"
    else:
        where = f"in {settings.backups_dir} (no off-site store configured)"
        if chosen.env_path is None:
            return Check("env_copy", False, f"no env copy {name} {where}"), None
        data = chosen.env_path.read_bytes()
    env = parse_env_bytes(data, name)
    missing = [k for k in CRITICAL_KEYS if not env.has(k)]
    notes = []
    ok = not missing
    if missing:
        notes.append("missing or empty: " + ", ".join(missing))
    else:
        notes.append(", ".join(CRITICAL_KEYS) + " present and non-empty (values not shown)")
    if recorded:
        if hashlib.sha256(data).hexdigest() == recorded:
            notes.append("matches the sha256 in the manifest")
        else:
            ok = False
            notes.append("differs from the env copy recorded in the manifest")
    return Check("env_copy", ok, f"{name} {where}: " + "; ".join(notes)), env


def video_rows(db, database: str) -> list[tuple[str, str, int | None]] | None:
    if db.psql("SELECT to_regclass('public.videos') IS NOT NULL;", database=database) != "t":
        return None
    has_size = db.psql("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
                       "AND table_name = 'videos' AND column_name = 'fileSize';", database=database) == "1"
    size_sql = '"fileSize"' if has_size else "NULL"
    out = db.psql("SELECT coalesce(json_agg(json_build_array(filename, path, " + size_sql
                  + ") ORDER BY filename), '[]') FROM public.videos;", database=database)
    rows = json.loads(out or "[]")
    return [(str(r[0] or ""), str(r[1] or ""), int(r[2]) if isinstance(r[2], (int, float)) else None) for r in rows]


def check_videos(settings: Settings, db, database: str, storage: str, cancel: CancelToken,
                  progress) -> tuple[Check, datetime | None]:
    """Every video row's file in the volume copy, by listing (no download); also returns the
    newest object time for the age check."""
    target = settings.volume.target
    rows = video_rows(db, database)
    if rows is None:
        return Check("videos", True, "the restored database has no videos table"), None
    if not target:
        return Check("videos", False, f"{len(rows)} videos referenced, but volume.target is not set: "
                     "the video volume is not backed up anywhere"), None

    try:
        store = open_store(target, settings.s3, key="volume.target")
    except ConfigError as exc:
        raise ConfigError(str(exc.message).replace("backups.offsite", "volume.target"), key="volume.target") from None
    wanted: dict[str, tuple[str, int | None]] = {}
    for filename, path, size in rows:
        key = video_key(path, filename, storage)
        local = Path(settings.volume.path) / key
        expected: int | None
        try:
            expected = local.stat().st_size
        except OSError:
            expected = size
        wanted[key] = (filename, expected)
        if filename and filename != key:
            wanted.setdefault(filename, (filename, expected))
    found: dict[str, int] = {}
    newest: datetime | None = None
    listed = 0
    t0 = time.monotonic()
    throttle = Throttle(progress, 0.2)
    for obj in store.iter_objects(""):
        if is_marker(obj.key):
            continue  # sync's own bookkeeping, not a video (and its time is not the volume's)
        listed += 1
        if listed % 1000 == 0:
            cancel.check()
            throttle(ProgressEvent("videos", listed, None, "files", current=obj.key, started_at=t0))
        if newest is None or obj.mtime > newest:
            newest = obj.mtime
        if obj.key in wanted:
            found[obj.key] = obj.size
    missing, wrong = [], []
    for filename, path, _size in rows:
        key = video_key(path, filename, storage)
        got_key = key if key in found else (filename if filename in found else None)
        if got_key is None:
            missing.append(key)
            continue
        expected = wanted[key][1]
        if expected is not None and found[got_key] != expected:
            wrong.append(f"{key} ({found[got_key]} bytes off-site, {expected} expected)")
    def shown(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} of {len(rows)} referenced videos missing from {target}: {shown(missing)}")
        if wrong:
            parts.append(f"{len(wrong)} with another size: {shown(wrong)}")
        return Check("videos", False, "; ".join(parts) + " (run `fovea-tui sync`)",
                     extra={"missing": len(missing), "size_mismatch": len(wrong), "referenced": len(rows)}), newest
    return Check("videos", True, f"all {len(rows)} referenced videos present in {target} with the same size "
                 f"({listed} objects listed, nothing downloaded)", extra={"referenced": len(rows)}), newest


def check_volume_age(settings: Settings, dump_time: datetime | None, newest_object: datetime | None) -> Check:
    target = settings.volume.target
    if not target:
        return Check("volume_age", False, "volume.target is not set: no off-site copy of the videos")
    summary = read_summary(settings) or {}
    when, how = None, ""
    # the last complete sync (`last_ok`) when the summary records it, else the last run
    stamp = summary.get("last_ok") if "last_ok" in summary else summary.get("time")
    if summary.get("target") == target and stamp:
        try:
            when = datetime.fromisoformat(str(stamp))
            how = "last complete sync (sync-last.json)" if "last_ok" in summary else "last sync (sync-last.json)"
        except ValueError:
            when = None
    if when is None and newest_object is not None:
        when, how = newest_object, "newest object in the copy"
    if when is None:
        return Check("volume_age", False, f"no sync to {target} on record and no object there")
    if dump_time is None:
        return Check("volume_age", True, f"{how} at {iso(when)}; the dump's time is unknown")
    if when < dump_time:
        return Check("volume_age", False, f"the video copy ({how} at {iso(when)}) is older than the dump "
                     f"({iso(dump_time)}) by {human_duration((dump_time - when).total_seconds())}: videos "
                     "uploaded since are referenced but not copied (run `fovea-tui sync`)")
    return Check("volume_age", True, f"{how} at {iso(when)}, not older than the dump ({iso(dump_time)})")


def check_rows(db, database: str, manifest: mf.Manifest) -> Check:
    actual = db.table_rows(database)
    expected = manifest.tables
    if not expected:
        return Check("rows", False, "the manifest records no row counts: nothing to compare")
    diffs = [f"{table}: {got if got is not None else 'missing'} restored, "
             f"manifest says {want if want is not None else 'no such table'}"
             for table, want, got in row_differences(expected, actual)]
    if diffs:
        return Check("rows", False, "; ".join(diffs), extra={"mismatched": len(diffs)})
    return Check("rows", True, f"{len(expected)} tables, {sum(expected.values())} rows, as in the manifest")


def check_migrations(db, database: str, manifest: mf.Manifest) -> Check:
    actual = db.applied_migrations(database)
    expected = list(manifest.prisma_migrations)
    if actual == expected:
        return Check("migrations", True, f"{len(actual)} migrations recorded, as in the manifest"
                     + (f" (newest {actual[-1]})" if actual else ""))
    missing = [m for m in expected if m not in actual]
    extra = [m for m in actual if m not in expected]
    parts = []
    if missing:
        parts.append("missing: " + ", ".join(missing))
    if extra:
        parts.append("not in the manifest: " + ", ".join(extra))
    if not parts:
        parts.append("same migrations in another order")
    return Check("migrations", False, "; ".join(parts))
