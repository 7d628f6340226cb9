"""Where an install's videos live, as its env file says, and which referenced ones are there.

Fovea's `VIDEO_STORAGE_TYPE` is `local` (the volume mounted at STORAGE_PATH), `s3` (the
application's bucket: S3_BUCKET, S3_REGION, S3_ENDPOINT, AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY) or `hybrid` (both). The backend deletes every `videos` row whose file
it cannot find in that storage (FOVEA.md), so the restore, status and the drill all ask the
same question here: which of the rows' files are present?

A row's key is its path relative to STORAGE_PATH (the file name when the path is elsewhere);
the same key names the file in the volume, the object in the app's bucket and the copy under
`volume.target`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath

from fovea_tui import masking
from fovea_tui.config import S3Settings, Settings
from fovea_tui.engine.progress import CancelToken, ProgressEvent, Throttle, no_progress
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import ConfigError, FoveaError

KINDS = ("local", "s3", "hybrid")


@dataclass(frozen=True)
class VideoStorage:
    """The install's video storage. The credentials never appear in repr or str."""

    kind: str
    volume: Path
    storage_path: str = "/videos"
    bucket: str = ""
    region: str = ""
    endpoint: str = ""
    access_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)

    @property
    def uses_volume(self) -> bool:
        return self.kind in ("local", "hybrid")

    @property
    def uses_bucket(self) -> bool:
        return self.kind in ("s3", "hybrid")

    @property
    def bucket_url(self) -> str:
        return f"s3://{self.bucket}/"

    def describe(self) -> str:
        if self.kind == "local":
            return str(self.volume)
        if self.kind == "s3":
            return self.bucket_url
        return f"{self.volume} and {self.bucket_url}"

    def s3_settings(self) -> S3Settings:
        return S3Settings(endpoint_url=self.endpoint, region=self.region)

    def open_bucket(self, *, max_concurrency: int = 8):
        """The app's bucket as a store, with the env file's credentials (or boto3's chain when
        the env file has none: an instance role)."""
        from fovea_tui.engine.infra.stores import S3Store

        creds = (self.access_key, self.secret_key) if self.access_key and self.secret_key else None
        return S3Store(self.bucket_url, self.s3_settings(), max_concurrency=max_concurrency, credentials=creds)


def video_storage(settings: Settings, env: EnvFile | None = None) -> VideoStorage:
    """Read VIDEO_STORAGE_TYPE and the bucket settings from the install's env file. An env file
    that cannot be read means the volume (`local`), as Fovea's own default."""
    volume = Path(settings.volume.path)
    if env is None:
        try:
            env = EnvFile.load(settings.install.env_file)
        except FoveaError:
            return VideoStorage("local", volume)
    kind = (env.get("VIDEO_STORAGE_TYPE") or "local").strip().lower()
    if kind not in KINDS:
        raise ConfigError(f"VIDEO_STORAGE_TYPE in {env.path} is {kind!r}; Fovea knows local, s3 and hybrid",
                          key="VIDEO_STORAGE_TYPE")
    storage = VideoStorage(
        kind, volume, storage_path=env.get("STORAGE_PATH") or "/videos", bucket=env.get("S3_BUCKET").strip(),
        region=env.get("S3_REGION").strip(), endpoint=env.get("S3_ENDPOINT").strip(),
        access_key=env.get("AWS_ACCESS_KEY_ID"), secret_key=env.get("AWS_SECRET_ACCESS_KEY"))
    masking.register(storage.access_key, storage.secret_key)
    if storage.uses_bucket and not storage.bucket:
        raise ConfigError(f"VIDEO_STORAGE_TYPE is {kind} in {env.path} but S3_BUCKET is empty",
                          key="S3_BUCKET", hint="set S3_BUCKET in the env file, or VIDEO_STORAGE_TYPE=local")
    if storage.endpoint and not storage.endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"S3_ENDPOINT in {env.path} is not an http(s) URL", key="S3_ENDPOINT")
    return storage


def video_key(row_path: str, filename: str, storage_path: str) -> str:
    """The key of a `videos` row's file: its path under STORAGE_PATH; a relative path as it
    is; else the file name."""
    prefix = _storage_prefix(storage_path or "/videos")
    if row_path.startswith(prefix) and _plain(row_path[len(prefix):]):
        return row_path[len(prefix):]  # the usual row, without pathlib's cost (rows come by thousands)
    return pathlib_key(row_path, filename, storage_path)


def pathlib_key(row_path: str, filename: str, storage_path: str) -> str:
    """`video_key` as pathlib computes it, for any path (a plain one takes the short way)."""
    storage = PurePosixPath(storage_path or "/videos")
    p = PurePosixPath(row_path) if row_path else None
    if p is not None and p.is_absolute():
        try:
            return p.relative_to(storage).as_posix()
        except ValueError:
            return filename or p.name
    if p is not None and str(p) not in ("", "."):
        return p.as_posix()
    return filename


@lru_cache(maxsize=8)
def _storage_prefix(storage_path: str) -> str:
    return PurePosixPath(storage_path).as_posix().rstrip("/") + "/"


def _plain(key: str) -> bool:
    """A relative key that pathlib would leave as it is and that stays inside its root: parts
    neither empty, `.` nor `..`, no backslash, NUL or drive-like first part."""
    if not key or "\\" in key or "\x00" in key:
        return False
    parts = key.split("/")
    return not parts[0].endswith(":") and all(part not in ("", ".", "..") for part in parts)


@dataclass(frozen=True)
class VideoRow:
    id: str
    filename: str
    key: str
    size: int | None


def video_rows(db, storage_path: str, database: str | None = None) -> list[VideoRow] | None:
    """Every `videos` row (None when the database has no videos table), in key order. One
    round trip: the server writes the query that fits its table (with `fileSize` or without)
    and psql's \\gexec runs it; no table gives an empty line."""
    out = db.psql(
        "SELECT CASE WHEN to_regclass('public.videos') IS NULL THEN 'SELECT NULL' ELSE format("
        "'SELECT coalesce(json_agg(json_build_array(id, filename, path, %s) ORDER BY filename), ''[]'') "
        "FROM public.videos', CASE WHEN EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = "
        "'public' AND table_name = 'videos' AND column_name = 'fileSize') THEN '\"fileSize\"' ELSE 'NULL' END) END "
        "\\gexec\n", database=database)
    if not out:
        return None
    rows = [VideoRow(str(r[0]), str(r[1] or ""), video_key(str(r[2] or ""), str(r[1] or ""), storage_path),
                     int(r[3]) if isinstance(r[3], (int, float)) else None) for r in json.loads(out)]
    return sorted(rows, key=lambda r: r.key)


def dependents(db, video_ids: Iterable[str], database: str | None = None) -> dict[str, int]:
    """How many annotations, summaries and claims hang off these videos (what the backend's
    cascade deletes with them)."""
    ids = sorted(set(video_ids))
    counts = {"annotations": 0, "summaries": 0, "claims": 0}
    if not ids:
        return counts
    present = db.psql("SELECT coalesce(string_agg(c, ','), '') FROM (SELECT unnest(ARRAY['annotations', "
                      "'video_summaries', 'claims']) AS c) t WHERE to_regclass('public.' || quote_ident(c)) "
                      "IS NOT NULL;", database=database).split(",")
    literal = "ARRAY[" + ",".join("'" + i.replace("'", "''") + "'" for i in ids) + "]::text[]"
    parts = []
    if "annotations" in present:
        parts.append(f'(SELECT count(*) FROM public.annotations WHERE "videoId" = ANY({literal}))')
    else:
        parts.append("0")
    if "video_summaries" in present:
        parts.append(f'(SELECT count(*) FROM public.video_summaries WHERE "videoId" = ANY({literal}))')
        if "claims" in present:
            parts.append(f'(SELECT count(*) FROM public.claims c JOIN public.video_summaries s '
                         f'ON c."summaryId" = s.id WHERE s."videoId" = ANY({literal}))')
        else:
            parts.append("0")
    else:
        parts += ["0", "0"]
    out = db.psql("SELECT " + ", ".join(parts) + ";", database=database)
    a, s, c = (int(x) for x in out.split("|"))
    return {"annotations": a, "summaries": s, "claims": c}


def list_keys(store, cancel: CancelToken | None = None,
              progress: Callable[[ProgressEvent], None] = no_progress, what: str = "videos") -> dict[str, int]:
    """{key: size} of every object in `store` (sync's bookkeeping objects left out)."""
    from fovea_tui.engine.volume.listing import is_marker

    found: dict[str, int] = {}
    throttle = Throttle(progress, 0.2)
    t0 = time.monotonic()
    for n, obj in enumerate(store.iter_objects(""), 1):
        if is_marker(obj.key):
            continue
        found[obj.key] = obj.size
        if n % 1000 == 0:
            if cancel is not None:
                cancel.check()
            throttle(ProgressEvent(what, n, None, "files", current=obj.key, started_at=t0))
    return found


def missing_from(storage: VideoStorage, rows: list[VideoRow], *, cancel: CancelToken | None = None,
                 progress: Callable[[ProgressEvent], None] = no_progress) -> list[VideoRow]:
    """The rows whose file is in none of the install's storages (the volume is listed once
    per directory the rows name; the bucket is listed once)."""
    missing = rows
    if storage.uses_volume:
        files = VolumeFiles(storage.volume)
        missing = [r for r in missing if not files.holds_any(r.key, r.filename)]
    if storage.uses_bucket and missing:
        listed = list_keys(storage.open_bucket(), cancel, progress)
        missing = [r for r in missing if r.key not in listed and r.filename not in listed]
    return missing


class VolumeFiles:
    """Which keys name a regular file in the volume: one scandir per directory asked about,
    not a stat per file (a restore asks for thousands). A key that would leave the volume
    (`../x`) is never present: nothing outside is looked at."""

    def __init__(self, volume: Path) -> None:
        self.volume = volume
        self._listed: dict[str, frozenset[str]] = {}

    def holds_any(self, *keys: str) -> bool:
        return any(self.holds(key) for key in keys if key)

    def holds(self, key: str) -> bool:
        if not _plain(key):
            from fovea_tui.engine.infra.stores import safe_relative_key

            return safe_relative_key(key) is not None and (self.volume / key).is_file()
        parent, _, name = key.rpartition("/")
        names = self._listed.get(parent)
        if names is None:
            names = self._listed[parent] = self._list(parent)
        return name in names

    def _list(self, parent: str) -> frozenset[str]:
        try:
            with os.scandir(os.path.join(self.volume, parent) if parent else self.volume) as entries:
                return frozenset(e.name for e in entries if e.is_file())  # follows links, as Path.is_file
        except OSError:
            return frozenset()  # no such directory, or unreadable: its files are missing


def shown(items: list[str], limit: int = 5) -> str:
    """The first few of a list, and how many more."""
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")
