"""Copying objects between two stores: the app's video bucket and `volume.target`.

Inside one S3 endpoint the copy is server-side (CopyObject, UploadPartCopy for large
objects): no byte passes through this host. Across endpoints, or when the store or the
credentials refuse a server-side copy, each object is streamed through a private temp file
and uploaded with the usual verification (size and sha256).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from fovea_tui.engine.infra.stores import DirectoryStore, S3Store, ServerCopyUnavailable, Store


def same_endpoint(a: Store, b: Store) -> bool:
    return isinstance(a, S3Store) and isinstance(b, S3Store) and a.endpoint_url == b.endpoint_url


class Copier:
    """`copier(key, size, progress=..., cancel=...)` copies one object from `source` to
    `target` and returns its size; `server_side` says whether copies stay in the store."""

    def __init__(self, source: Store, target: Store, *, scratch: Path | None = None) -> None:
        self.source, self.target = source, target
        self.server_side = same_endpoint(source, target)
        self.scratch = scratch
        self._lock = threading.Lock()
        self.fallback_reason = ""

    def __call__(self, key: str, size: int, *, progress=None, cancel=None) -> int:
        if self.server_side and isinstance(self.target, S3Store) and isinstance(self.source, S3Store):
            try:
                return self.target.copy_from(self.source, key, size=size, progress=progress, cancel=cancel).size
            except ServerCopyUnavailable as exc:
                with self._lock:
                    self.server_side = False
                    self.fallback_reason = str(exc)
        return self._streamed(key, progress, cancel)

    def _streamed(self, key: str, progress, cancel) -> int:
        if isinstance(self.target, DirectoryStore):  # checked against the sha256 the source recorded
            dest = self.target._path(key)
            self.source.get_file(key, dest, progress=progress, cancel=cancel)
            return dest.stat().st_size
        if isinstance(self.source, DirectoryStore):
            return self.target.put_file(self.source._path(key), key, progress=progress, cancel=cancel).size
        with tempfile.TemporaryDirectory(prefix="fovea-copy-", dir=self.scratch) as tmp:
            local = Path(tmp) / "object"
            self.source.get_file(key, local, progress=progress, cancel=cancel)
            return self.target.put_file(local, key, progress=progress, cancel=cancel).size

    def describe(self) -> str:
        if self.server_side:
            return "server-side copies (CopyObject)"
        return "streamed through this host" + (f" ({self.fallback_reason})" if self.fallback_reason else "")
