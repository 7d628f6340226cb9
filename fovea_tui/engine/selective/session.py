"""A dump loaded into a scratch database for as long as a comparison is looked at.

The drill's machinery: the dump is verified, then streamed into `fovea_selective_<UTC time>`
on the live server (never the live database), and that database is dropped when the session
closes, whatever happened (failure, Ctrl-C). A session holds the `selective` lock, so any
`fovea_selective_*` database found when one opens belongs to a run that was killed: it is
dropped first.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.inventory import OFFSITE, load_inventory
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.drill.choose import Chosen
from fovea_tui.engine.drill.run import ScratchStreamContext, fetch_chosen
from fovea_tui.engine.infra.database import Database, open_database
from fovea_tui.engine.infra.files import ensure_private_dir, identity, unchanged
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.infra.stores import open_store
from fovea_tui.engine.progress import CancelToken, ProgressEvent, no_progress
from fovea_tui.engine.restore.steps import stream_dump
from fovea_tui.engine.selective.apply import ApplyResult, apply_changeset
from fovea_tui.engine.selective.changeset import ChangeSet, build_changeset
from fovea_tui.engine.selective.compare import Comparison, ScopeDiff, ScopeRows, compare, scope_names, scope_rows
from fovea_tui.engine.selective.scopes import KINDS, printable
from fovea_tui.errors import SafetyRefusal, UsageError

SCRATCH_PREFIX = "fovea_selective_"
LOCK_NAME = "selective"


def local_dump(settings: Settings, wanted: str) -> Path | None:
    """A local dump by path or by name in backups.dir."""
    candidate = Path(wanted)
    for path in (candidate, settings.backups_dir / candidate.name):
        if path.is_file():
            return path
    return None


def fetch_offsite(settings: Settings, wanted: str, tmp: Path, progress, cancel: CancelToken
                  ) -> tuple[Path, mf.Manifest] | None:
    """The off-site copy of `wanted` fetched (and decrypted) into `tmp` as the drill does,
    with its manifest; None when the store has no such dump with a manifest."""
    if not settings.backups.offsite:
        return None
    inventory = load_inventory(settings, include_offsite=True,
                               store=open_store(settings.backups.offsite, settings.s3))
    entry = inventory.find(wanted)
    if entry is None or entry.offsite is None or OFFSITE not in entry.manifests or inventory.store is None:
        return None
    key = entry.manifests[OFFSITE]
    manifest = mf.parse(inventory.store.read_bytes(key), source=f"off-site manifest {key}")
    chosen = Chosen(entry.name, "offsite", manifest, dump_key=entry.offsite.key, store=inventory.store)
    return fetch_chosen(settings, chosen, tmp, progress, cancel), manifest


def _unknown(settings: Settings, wanted: str) -> UsageError:
    where = f" nor off-site at {settings.backups.offsite}" if settings.backups.offsite else ""
    return UsageError(f"no dump {wanted!r} in {settings.backups_dir}{where}; `fovea-tui list` shows them",
                      key="DUMP")


def scratch_databases(db: Database) -> list[str]:
    return [name for name in db.databases() if name.startswith(SCRATCH_PREFIX)]


class Session:
    """One dump loaded beside the live database. Use `open_session`."""

    def __init__(self, settings: Settings, db: Database, dump: Path, scratch: str, cancel: CancelToken) -> None:
        self.settings = settings
        self.db = db
        self.dump = dump
        self.scratch = scratch
        self.cancel = cancel
        self.comparison: Comparison | None = None

    @property
    def live(self) -> str:
        return self.db.name

    def compare(self, kinds: tuple[str, ...] = KINDS, progress: Callable[[str], None] | None = None) -> Comparison:
        t0 = time.monotonic()
        result = compare(self.db, self.scratch, self.live, dump_name=self.dump.name, kinds=kinds,
                         cancel=self.cancel, progress=progress)
        result.duration_s = time.monotonic() - t0
        self.comparison = result
        return result

    def find(self, kind: str, wanted: str) -> ScopeDiff:
        """The scope named `wanted` (id or name); UsageError naming it when there is none.

        Without a comparison yet, only the names are read (no merge of every row)."""
        if self.comparison is not None:
            candidates = [s for s in self.comparison.scopes if s.kind == kind]
        else:
            dump, live = scope_names(self.db, kind, self.scratch), scope_names(self.db, kind, self.live)
            candidates = [ScopeDiff(kind, sid, dump.get(sid) or live[sid], in_dump=sid in dump, in_live=sid in live)
                          for sid in sorted(set(dump) | set(live))]
        exact = [s for s in candidates if s.id == wanted] or [s for s in candidates if s.name == wanted]
        if len(exact) == 1:
            return exact[0]
        why = f"{len(exact)} {kind}s are named so: give its id" if exact else \
            f"no {kind} {printable(wanted)!r} in {self.dump.name} nor in the live database"
        raise UsageError(why, key=f"--{kind}")

    def rows(self, scope: ScopeDiff) -> ScopeRows:
        return scope_rows(self.db, scope.kind, scope.id, scope.name, self.scratch, self.live)

    def changeset(self, scope: ScopeDiff, mode: str, *, recreate_personas: bool = False,
                  leave_out_orphans: bool = False) -> ChangeSet:
        return build_changeset(self.db, self.rows(scope), dump=self.dump.name, dump_db=self.scratch,
                               live_db=self.live, mode=mode, recreate_personas=recreate_personas,
                               leave_out_orphans=leave_out_orphans)

    def apply(self, cs: ChangeSet) -> ApplyResult:
        return apply_changeset(self.settings, self.db, cs)


@contextlib.contextmanager
def open_session(settings: Settings, dump: str, *, cancel: CancelToken | None = None,
                 progress: Callable[[ProgressEvent], None] | None = None,
                 database: Database | None = None) -> Iterator[Session]:
    """Verify `dump`, load it into a scratch database, yield the session; always drop it."""
    cancel = cancel or CancelToken()
    progress = progress or no_progress
    path = local_dump(settings, dump)
    if path is None and not settings.backups.offsite:
        raise _unknown(settings, dump)
    with acquire(settings, LOCK_NAME, purpose=f"selective restore from {Path(dump).name}"), \
            tempfile.TemporaryDirectory(dir=ensure_private_dir(settings.state_dir), prefix="selective-") as tmp:
        manifest = None
        if path is None:
            fetched = fetch_offsite(settings, dump, Path(tmp), progress, cancel)
            if fetched is None:
                raise _unknown(settings, dump)
            path, manifest = fetched
        seen = identity(path)
        verified = verify_dump(path, manifest, use_manifest_beside=manifest is None, cancel=cancel,
                               progress=progress)
        unchanged(path, seen, "it was verified")
        if not verified.ok:
            raise SafetyRefusal(f"{path.name} is corrupt: " + "; ".join(verified.reasons),
                                hint="pick another dump (`fovea-tui list`)")
        db = database or open_database(settings)
        for leftover in scratch_databases(db):  # ours is the lock: these belong to killed runs
            db.drop_database(leftover)
        scratch = SCRATCH_PREFIX + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        try:
            owner = settings.database.user if settings.database.mode == "docker" else db.user
            db.create_database(scratch, owner=owner or None)
            stream_dump(ScratchStreamContext(db, cancel, progress, path.name), path, scratch)
            unchanged(path, seen, "it was verified")  # the rows offered are the verified dump's
            cancel.check()
            yield Session(settings, db, path, scratch, cancel)
        finally:
            db.drop_database(scratch)
