"""What a sync copies: the install's videos, wherever its env file says they live.

`local`: the files under `volume.path`, uploaded. `s3`: the objects of the app's bucket,
copied (server-side inside one endpoint, streamed otherwise). `hybrid`: both, as one sorted
stream of keys (a key in both is the volume's file). A pull writes back into the same
place: the volume, or for `s3` the app's bucket.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from fovea_tui.config import Settings
from fovea_tui.engine.volume.storage import VideoStorage, video_storage

if TYPE_CHECKING:
    from fovea_tui.engine.volume.bucket import Copier


class VideoSource:
    """The install's videos as a sorted stream of (key, size) and a way to send each."""

    def __init__(self, storage: VideoStorage, *, workers: int = 10) -> None:
        self.storage = storage
        self.root = storage.volume
        self.bucket = storage.open_bucket(max_concurrency=workers) if storage.uses_bucket else None
        self._copier: Copier | None = None

    @property
    def kind(self) -> str:
        return self.storage.kind

    def describe(self) -> str:
        return self.storage.describe()

    def items(self, warn: Callable[[str], None]) -> Iterator:
        """Every video key in S3 order (a key in both the volume and the bucket once)."""
        from fovea_tui.engine.volume.plan import walk_sorted

        streams = []
        if self.storage.uses_volume:
            streams.append(walk_sorted(self.root, warn))
        if self.bucket is not None:
            streams.append(bucket_items(self.bucket))
        if len(streams) == 1:
            yield from streams[0]
            return
        last = None
        for item in heapq.merge(*streams, key=lambda i: i.key):
            if item.key != last:
                yield item
            last = item.key

    def sender(self, target):
        """`send(key, size, progress=, cancel=)` for the transfer pool: an upload of the
        volume's file, else a copy of the bucket's object."""
        from fovea_tui.engine.volume.bucket import Copier
        from fovea_tui.engine.volume.transfer import uploader

        upload = uploader(target, self.root) if self.storage.uses_volume else None
        self._copier = Copier(self.bucket, target) if self.bucket is not None else None

        copier = self._copier

        def send(key: str, size: int, *, progress, cancel) -> int:
            if upload is not None and (copier is None or (self.root / key).is_file()):
                return upload(key, size, progress=progress, cancel=cancel)
            assert copier is not None  # no volume: the bucket is the source
            return copier(key, size, progress=progress, cancel=cancel)
        return send

    def how(self) -> str | None:
        """How bucket objects travelled (server-side or streamed), once a run has sent some."""
        return self._copier.describe() if self._copier is not None else None


def bucket_items(bucket) -> Iterator:
    """A bucket's objects as the sorted (key, size) items a plan merges."""
    from fovea_tui.engine.volume.plan import LocalFile

    return (LocalFile(o.key, o.size, Path(o.key)) for o in bucket.iter_objects(""))


def video_source(settings: Settings, *, workers: int = 10) -> VideoSource:
    return VideoSource(video_storage(settings), workers=workers)


def bucket_destination(settings: Settings, to) -> VideoStorage | None:
    """The app's bucket when a pull goes back into it (`s3` storage and no --to), else None."""
    if to is not None:
        return None
    storage = video_storage(settings)
    return storage if storage.kind == "s3" else None
