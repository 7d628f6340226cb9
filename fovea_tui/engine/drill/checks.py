"""The drill's checks of a restored scratch database and of the copies it depends on.

Rows per table use the restore's own comparison (`restore.verify.row_differences`); the
drill's check compares against the manifest, without the restore's allowance for tables
that applied migrations touched (a drill applies none).
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.backups import encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.drill.choose import Chosen
from fovea_tui.engine.drill.result import Check
from fovea_tui.engine.infra.stores import open_store
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.restore.verify import row_differences
from fovea_tui.envfile import CRITICAL_KEYS, EnvFile
from fovea_tui.errors import ConfigError, FoveaError
from fovea_tui.formatting import plural


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


def check_videos(settings: Settings, db, database: str, storage_path: str, cancel: CancelToken,
                 progress) -> Check:
    """Every video the restored dump references is in the off-site copy (`volume.target`) with
    the same size, by listing (no download). A restore of this dump onto a host that lost its
    videos pulls exactly these back before the backend starts; any missing one would be
    deleted with its annotations, summaries and claims. Also says how many are missing from
    the install's own storage (the volume or the app's bucket) right now."""
    from fovea_tui.engine.volume.storage import dependents, list_keys, missing_from, shown, video_rows, video_storage

    target = settings.volume.target
    rows = video_rows(db, storage_path, database=database)
    if rows is None:
        return Check("videos", True, "the restored database has no videos table")
    if not target:
        return Check("videos", False, f"{plural(len(rows), 'video')} referenced, but volume.target is not set: "
                     "the videos are not backed up anywhere")
    try:
        store = open_store(target, settings.s3, key="volume.target")
    except ConfigError as exc:
        raise ConfigError(str(exc.message).replace("backups.offsite", "volume.target"), key="volume.target") from None
    found = list_keys(store, cancel, progress)
    live = video_storage(settings)
    missing, wrong = [], []
    for row in rows:
        got = row.key if row.key in found else (row.filename if row.filename in found else None)
        if got is None:
            missing.append(row)
            continue
        try:
            expected = (live.volume / row.key).stat().st_size if live.uses_volume else row.size
        except OSError:
            expected = row.size
        if expected is not None and found[got] != expected:
            wrong.append(f"{row.key} ({found[got]} bytes off-site, {expected} expected)")
    try:
        here = len(missing_from(live, rows, cancel=cancel))
        here_words = f"; {here} of them missing from {live.describe()} now" if here else ""
    except FoveaError as exc:
        here, here_words = None, f"; {live.describe()} not checked: {exc}"
    extra = {"referenced": len(rows), "missing": len(missing), "size_mismatch": len(wrong), "missing_here": here}
    if missing or wrong:
        parts = []
        if missing:
            deps = dependents(db, [r.id for r in missing], database=database)
            extra.update(deps)
            parts.append(f"{len(missing)} of {plural(len(rows), 'referenced video')} missing from {target}: "
                         f"{shown([r.key for r in missing])} ({plural(deps['annotations'], 'annotation')}, "
                         f"{plural(deps['summaries'], 'summary')} and {plural(deps['claims'], 'claim')} depend on them)")
        if wrong:
            parts.append(f"{len(wrong)} with another size: {shown(wrong)}")
        return Check("videos", False, "; ".join(parts) + here_words + " (run `fovea-tui sync`)", extra=extra)
    return Check("videos", True, f"all {plural(len(rows), 'referenced video')} present in {target} with the same size "
                 f"({plural(len(found), 'object')} listed, nothing downloaded){here_words}", extra=extra)


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
    return Check("rows", True, f"{plural(len(expected), 'table')}, {plural(sum(expected.values()), 'row')}, as in the manifest")


def check_migrations(db, database: str, manifest: mf.Manifest) -> Check:
    actual = db.applied_migrations(database)
    expected = list(manifest.prisma_migrations)
    if actual == expected:
        return Check("migrations", True, f"{plural(len(actual), 'migration')} recorded, as in the manifest"
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
