"""What the off-site volume copy holds, remembered between syncs so most runs need not list it.

Listing is what a sync with nothing to do spends its time on: S3 answers 1,000 keys per
request, and a store is slow to serve them (moto takes 0.3 s a page), so a volume of
100,000 videos costs a hundred round trips before the first decision. Yet after a push
that finished everything it planned, the engine knows exactly what the target holds: what
it listed, plus what it uploaded, minus what it deleted. It keeps that as a snapshot in
the state directory (one per target) and writes a small marker object into the target
naming the snapshot's generation.

The next push trusts the snapshot instead of listing only when all of these hold:

- the last full listing is younger than `volume.full_listing_hours` (0: always list), and
  not dated in the future (a clock moved back could make any snapshot look young);
- the marker in the target still names the snapshot's generation, so no other run (this
  host's or another's) has changed the target since, and the target was not emptied or
  replaced (the marker would be gone);
- a random sample of SAMPLE_SIZE objects from the snapshot is still there with the same
  sizes, which catches a lifecycle rule or a person deleting objects wholesale.

What a trusted snapshot cannot see is a few objects deleted behind fovea-tui's back: they
stay missing off-site until the next full listing (at most `full_listing_hours` later, or
`sync --full-listing`); the drill's video check always lists in full. A run that stops
half-way discards the snapshot before it changes anything, so the run after it lists.

Only S3 targets use this: a directory target is listed by walking it, which is cheap.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

from fovea_tui.config import Settings
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import ago, plural

MARKER_NAME = ".fovea-tui-listing.json"   # at the root of the target; never synced or pulled
SNAPSHOT_DIR = "offsite-listing"
FORMAT = 1
SAMPLE_SIZE = 8


def is_marker(key: str) -> bool:
    return key == MARKER_NAME


@dataclass(frozen=True)
class Entry:
    """One object of the snapshot; has the `key` and `size` the sync's merge reads."""

    key: str
    size: int


def snapshot_path(settings: Settings) -> Path:
    """One file per target and endpoint, so pointing volume.target elsewhere starts afresh."""
    ident = f"{settings.s3.endpoint_url}\n{settings.volume.target}".encode()
    return settings.state_dir / SNAPSHOT_DIR / f"{hashlib.sha256(ident).hexdigest()[:20]}.jsonl"


class Snapshot:
    """A snapshot file: a header line, then one `[key, size]` JSON line per object in key order."""

    def __init__(self, path: Path, header: dict) -> None:
        self.path = path
        self.generation: str = header["generation"]
        self.listed_at = datetime.fromisoformat(header["listed_at"])
        self.count: int = int(header["objects"])
        self.target: str = header["target"]

    @classmethod
    def load(cls, path: Path) -> Snapshot | None:
        """The snapshot's header, or None when there is none or it cannot be read (the caller
        then lists in full, so a damaged file costs time, never correctness)."""
        try:
            with path.open(encoding="utf-8") as fh:
                header = json.loads(fh.readline())
            if header.get("format") != FORMAT:
                return None
            return cls(path, header)
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def __iter__(self) -> Iterator[Entry]:
        with self.path.open(encoding="utf-8") as fh:
            fh.readline()
            for line in fh:
                key, size = json.loads(line)
                yield Entry(key, size)

    def sample(self, k: int, rng: random.Random) -> list[Entry]:
        """k entries at random positions (reading lines, parsing only the chosen ones)."""
        wanted = set(rng.sample(range(self.count), min(k, self.count)))
        picked = []
        with self.path.open(encoding="utf-8") as fh:
            fh.readline()
            for i, line in enumerate(fh):
                if i in wanted:
                    key, size = json.loads(line)
                    picked.append(Entry(key, size))
        return picked


@dataclass
class ListingChoice:
    """How a push learns what the target holds: `snapshot` to trust, or None to list in full."""

    snapshot: Snapshot | None
    reason: str
    remembers: bool = True                    # keep a snapshot after this run (S3 targets)

    @property
    def mode(self) -> str:
        return "snapshot" if self.snapshot is not None else "full"

    def last_full_listing(self, listing_now: datetime) -> datetime:
        """When the target was last listed in full: by the trusted snapshot's run, or by this
        run (which lists it, starting at `listing_now`)."""
        return self.snapshot.listed_at if self.snapshot is not None else listing_now

    def as_dict(self, listing_now: datetime) -> dict:
        return {"mode": self.mode, "reason": self.reason,
                "last_full_listing": self.last_full_listing(listing_now).isoformat()}


def choose(settings: Settings, store, *, full_listing: bool, now: datetime,
           rng: random.Random | None = None) -> ListingChoice:
    """Decide whether this push may trust the snapshot; every "no" says why."""
    if not store.keeps_listing_snapshot:
        return ListingChoice(None, "a directory target is always listed", remembers=False)
    hours = settings.volume.full_listing_hours
    if hours == 0:
        return ListingChoice(None, "volume.full_listing_hours = 0: every sync lists the target", remembers=False)
    if full_listing:
        return ListingChoice(None, "a full listing was asked for")
    snap = Snapshot.load(snapshot_path(settings))
    if snap is None or snap.target != settings.volume.target:
        return ListingChoice(None, "no snapshot of an earlier sync to this target")
    age = now - snap.listed_at
    if age.total_seconds() < 0:
        return ListingChoice(None, "the last full listing is dated in the future: this host's clock moved back")
    if age.total_seconds() >= hours * 3600:
        return ListingChoice(None, f"the last full listing was {ago(snap.listed_at, now)}, "
                                   f"volume.full_listing_hours = {hours}")
    try:
        marker = _read_marker(store)
        if marker is None:
            return ListingChoice(None, f"no {MARKER_NAME} in the target: it was emptied, replaced, or "
                                       "written by another tool")
        if marker.get("generation") != snap.generation:
            return ListingChoice(None, "the target changed since this host's last sync "
                                       "(another host or run wrote it)")
        missing = _sample_missing(store, snap, rng or random.Random())
    except FoveaError as exc:  # e.g. credentials that may list and write but not read
        return ListingChoice(None, f"cannot check the snapshot against the target: {exc.message}")
    if missing:
        return ListingChoice(None, f"{missing} is gone from the target or changed size: objects were removed "
                                   "behind fovea-tui's back")
    return ListingChoice(snap, f"the snapshot of the listing {ago(snap.listed_at, now)}, checked by the marker "
                               f"and {plural(min(SAMPLE_SIZE, snap.count), 'sampled object')}")


def _read_marker(store) -> dict | None:
    raw = store.read_if_exists(MARKER_NAME)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _sample_missing(store, snap: Snapshot, rng: random.Random) -> str | None:
    """The key of a sampled object that is gone or changed size, or None when all are there."""
    sample = snap.sample(SAMPLE_SIZE, rng)
    if not sample:
        return None
    with ThreadPoolExecutor(max_workers=len(sample), thread_name_prefix="fovea-sample") as pool:
        for entry, info in zip(sample, pool.map(lambda e: store.head(e.key), sample), strict=True):
            if info is None or info.size != entry.size:
                return entry.key
    return None


def discard(settings: Settings) -> None:
    """Forget the snapshot: called before a run changes the target, so a run that stops
    half-way leaves the next one to list in full."""
    try:
        snapshot_path(settings).unlink()
    except FileNotFoundError:
        pass


class SnapshotWriter:
    """What the target will hold once a push has done all it planned, spooled while planning.

    `commit` turns it into the trusted snapshot: the file first (temp name), then the marker
    object with a new generation, then the rename. A failure at any point leaves no snapshot
    that matches the marker, so the next run lists in full.
    """

    def __init__(self) -> None:
        self._body: IO[str] = tempfile.TemporaryFile("w+", encoding="utf-8")
        self.count = 0

    def add(self, key: str, size: int) -> None:
        self._body.write(json.dumps([key, size]))
        self._body.write("\n")
        self.count += 1

    def close(self) -> None:
        self._body.close()

    def commit(self, settings: Settings, store, *, listed_at: datetime, now: datetime) -> None:
        """Raises the store's error if the marker cannot be written (the caller warns)."""
        path = snapshot_path(settings)
        ensure_private_dir(path.parent)
        generation = uuid.uuid4().hex
        header = {"format": FORMAT, "target": settings.volume.target, "generation": generation,
                  "listed_at": listed_at.isoformat(), "objects": self.count, "written_at": now.isoformat()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps(header) + "\n")
                self._body.seek(0)
                shutil.copyfileobj(self._body, out)
                out.flush()
                os.fsync(out.fileno())
            marker = {"format": FORMAT, "generation": generation, "objects": self.count,
                      "written_at": now.isoformat(), "written_by": "fovea-tui sync"}
            store.put_bytes(MARKER_NAME, json.dumps(marker).encode())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
