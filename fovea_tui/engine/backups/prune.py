"""`prune`: apply the retention policy to the inventory, local and off-site.

One function computes what a prune deletes (`build_plan`); `--dry-run` prints it and a real
run executes exactly that list, so the preview never lies.

A real run, under the "backups" lock:

1. lists the inventory afresh (a dry run computed earlier may be stale);
2. reads, end to end, every dump the plan keeps because it is good (the newest verified
   one above all) and every dump it would delete as corrupt, whatever the verification
   cache says (`read_before_deleting`): a dump that fails is corrupt and fills no bucket, a
   whole dump that disagrees with its manifest is "mismatch" and is kept; the plan is
   computed again until every dump it keeps was read in this run. The cost is one read of
   the kept dumps per prune (an off-site-only one is downloaded);
3. refuses (SafetyRefusal, exit 3, nothing deleted) when retention refuses the plan (no
   verified dump would remain, or the policy is empty); fails (exit 1, nothing deleted) when
   the off-site store cannot be listed: a prune never deletes on a partial picture;
4. deletes dump by dump, off-site first, then local; before it starts on a dump it writes
   the pending-deletions journal (`<state_dir>/prune-pending.json`) holding the files of
   the dumps it started and has not finished (never the rest of the plan); at
   each location the dump goes first, then its env copy, then its manifest, so a dump is
   never left without the manifest that marks it verified. A failure stops that dump at
   that location (its later files stay), is reported, and stays in the journal;
5. the next prune (whatever its policy) first finishes the dumps the journal holds, whose
   deletion was under way: it deletes the files they have left (unless that dump is by now
   the newest verified one: then it is dropped from the journal, kept and reported), then
   plans afresh. (A journal written by an older version held a whole plan: of it, only the
   dumps some of whose files are gone are finished.) The inventory marks journaled dumps
   "pending deletion" meanwhile;
6. appends one entry to the audit log.

Forgotten corrupt dumps lose only their copies that are themselves corrupt: an off-site
copy of a corrupt local dump that still matches its manifest's size is kept (and shows up
as an off-site dump on the next listing, where retention treats it on its own merits).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.backups.inventory import LOCAL, OFFSITE, Entry, Inventory, load_inventory
from fovea_tui.engine.backups.prune_journal import read_journal_items, write_journal
from fovea_tui.engine.backups.retention import Candidate, Plan, Policy
from fovea_tui.engine.backups.retention import plan as retention_plan
from fovea_tui.engine.backups.verify import VerifyResult, verify_dump, verify_offsite
from fovea_tui.engine.backups.verify_cache import remember
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.infra.stores import Store, open_store
from fovea_tui.engine.progress import CancelToken, ProgressEvent, no_progress
from fovea_tui.errors import Cancelled, FoveaError, OperationFailed, SafetyRefusal

log = logging.getLogger(__name__)

OVERRIDE_KEYS = ("keep_last", "keep_hourly", "keep_daily", "keep_weekly", "keep_monthly", "keep_yearly")


class PruneRefused(SafetyRefusal):
    """Retention refused the plan; `result` holds the plan for display (exit 3)."""

    def __init__(self, message: str, result: PruneResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class Deletion:
    dump: str
    location: str  # "local" | "offsite"
    key: str  # file name in backups.dir, or key under the off-site prefix

    def to_json(self) -> dict[str, str]:
        return {"dump": self.dump, "location": self.location, "key": self.key}


@dataclass
class PrunePlan:
    """What a prune will do: retention's plan, then the exact files, in order."""

    plan: Plan
    inventory: Inventory
    deletions: list[Deletion]  # this run's, in execution order
    pending: list[Deletion]  # a previous run's, retried first
    dropped: list[Deletion] = field(default_factory=list)  # journal items not retried (newest verified)
    kept_copies: list[dict[str, str]] = field(default_factory=list)  # sound copies of forgotten corrupt dumps

    @property
    def refused(self) -> str | None:
        return self.plan.refused

    def all_deletions(self) -> list[Deletion]:
        return self.pending + self.deletions

    def to_json(self) -> dict[str, Any]:
        data = self.plan.to_json()
        data["policy"] = self.plan.policy.describe()
        data["deletions"] = [d.to_json() for d in self.all_deletions()]
        data["retry"] = [d.to_json() for d in self.pending]
        data["dropped_from_journal"] = [d.to_json() for d in self.dropped]
        data["kept_copies"] = list(self.kept_copies)
        return data


@dataclass
class DumpRead:
    """One dump prune read end to end before deleting anything."""

    name: str
    location: str
    status: str
    size: int
    seconds: float
    reasons: list[str] = field(default_factory=list)
    cached: str = ""  # what the inventory said before the read

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "location": self.location, "status": self.status, "size": self.size,
                "seconds": round(self.seconds, 3), "reasons": list(self.reasons), "listed_as": self.cached}


@dataclass
class PruneResult:
    dry_run: bool
    prune_plan: PrunePlan
    deleted: list[Deletion] = field(default_factory=list)
    failed: list[tuple[Deletion, str]] = field(default_factory=list)
    duration_s: float = 0.0
    reads: list[DumpRead] = field(default_factory=list)

    @property
    def read_bytes(self) -> int:
        return sum(r.size for r in self.reads)

    @property
    def read_s(self) -> float:
        return sum(r.seconds for r in self.reads)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.prune_plan.refused

    def to_json(self) -> dict[str, Any]:
        data = self.prune_plan.to_json()
        data.update({
            "ok": self.ok,
            "dry_run": self.dry_run,
            "deleted": [d.to_json() for d in self.deleted],
            "failed": [{**d.to_json(), "error": err} for d, err in self.failed],
            "duration_s": round(self.duration_s, 3),
            "read": [r.to_json() for r in self.reads],
            "read_bytes": self.read_bytes,
            "read_s": round(self.read_s, 3),
        })
        return data


# -- planning --------------------------------------------------------------------------


def policy_for(settings: Settings, overrides: dict[str, int | None] | None = None) -> Policy:
    """`[retention]` with the `--keep-*` flags on top (None: flag not given)."""
    return Policy.from_settings(settings.retention, **{k: v for k, v in (overrides or {}).items()})


def _entry_deletions(entry: Entry, status: str, read: DumpRead | None,
                     kept_copies: list[dict[str, str]]) -> list[Deletion]:
    """Every file of a forgotten dump, off-site first, each location in safe order."""
    out: list[Deletion] = []
    for location in (OFFSITE, LOCAL):
        copy = entry.copies.get(location)
        copy_status = read.status if read is not None and read.location == location else copy and copy.status
        if status == "corrupt" and copy is not None and copy_status != "corrupt":
            kept_copies.append({"dump": entry.name, "location": location, "key": copy.key,
                                "reason": f"{location} copy not shown corrupt ({copy.detail}); kept"})
            continue
        out += [Deletion(entry.name, location, key) for key in entry.files(location)]
    return out


def build_plan(settings: Settings, *, overrides: dict[str, int | None] | None = None,
               inventory: Inventory | None = None, policy: Policy | None = None,
               reads: dict[str, DumpRead] | None = None) -> PrunePlan:
    """The one function behind both `prune --dry-run` and a real prune.

    `reads`: the dumps read in this run, by name; their statuses override the inventory's
    (which come from cheap facts and the verification cache).
    Raises OperationFailed when the off-site store is configured but could not be listed.
    A refused plan is returned (check `.refused`); its deletion list is empty.
    """
    reads = reads or {}

    def status(entry: Entry) -> str:
        return reads[entry.name].status if entry.name in reads else entry.status

    policy = policy or policy_for(settings, overrides)
    inventory = inventory if inventory is not None else load_inventory(settings)
    if settings.backups.offsite and not inventory.offsite_listed:
        detail = "; ".join(inventory.errors) or "off-site store not listed"
        raise OperationFailed(f"cannot prune without the off-site listing: {detail}",
                              hint="nothing was deleted; prune again when the store answers")

    newest_verified = next((e for e in inventory.entries if status(e) == "verified" and not e.safety), None)
    items, started_only = read_journal_items(settings)
    journal = [Deletion(i["dump"], i["location"], i["key"]) for i in items]
    if not started_only:
        journal = _in_flight(journal, inventory)
    pending = [d for d in journal if newest_verified is None or d.dump != newest_verified.name]
    dropped = [d for d in journal if newest_verified is not None and d.dump == newest_verified.name]
    pending_dumps = {d.dump for d in pending}

    candidates = [Candidate(e.name, e.time, status(e), e.safety) for e in inventory.entries
                  if e.name not in pending_dumps]
    plan = retention_plan(candidates, policy)

    deletions: list[Deletion] = []
    kept_copies: list[dict[str, str]] = []
    if not plan.refused:
        for decision in plan.deletable:
            entry = inventory.find(decision.candidate.name)
            if entry is None:  # pragma: no cover - candidates come from the inventory
                continue
            if newest_verified is not None and entry.name == newest_verified.name:  # pragma: no cover
                raise AssertionError("retention planned to forget the newest verified dump")
            deletions += _entry_deletions(entry, status(entry), reads.get(entry.name), kept_copies)
    seen = {(d.location, d.key) for d in pending}
    deletions = [d for d in deletions if (d.location, d.key) not in seen]
    return PrunePlan(plan=plan, inventory=inventory, deletions=deletions,
                     pending=pending if not plan.refused else [], dropped=dropped, kept_copies=kept_copies)


def _in_flight(journal: list[Deletion], inventory: Inventory) -> list[Deletion]:
    """For a journal of an older version (a whole plan): the journaled files still present
    of the dumps whose deletion was under way (some of their journaled files gone, some
    left); the dumps not yet touched are left to the new plan."""
    present: dict[str, set[str]] = {LOCAL: set(), OFFSITE: set()}
    for entry in inventory.entries:
        for location in (LOCAL, OFFSITE):
            present[location].update(entry.files(location))
    for stray in inventory.orphans + inventory.unrecognised:
        present[stray.location].add(stray.name)
    out: list[Deletion] = []
    for dump in dict.fromkeys(d.dump for d in journal):
        files = [d for d in journal if d.dump == dump]
        left = [d for d in files if d.key in present[d.location]]
        if 0 < len(left) < len(files):
            out += left
    return out


# -- reading before deleting ------------------------------------------------------------


def _needs_reading(pp: PrunePlan) -> list[Entry]:
    """The dumps this plan keeps because they are good, and those it deletes as corrupt:
    neither decision may rest on a cache or a cheap guess."""
    out = []
    for decision in pp.plan.keep + pp.plan.forget:
        c = decision.candidate
        if c.safety or c.status == "mismatch" or (not decision.keep and c.status != "corrupt"):
            continue
        entry = pp.inventory.find(c.name)
        if entry is not None:
            out.append(entry)
    return out


def _read(settings: Settings, entry: Entry, progress, cancel: CancelToken) -> DumpRead:
    """Read one dump end to end: its local copy (the result cached), else its off-site copy."""
    t0 = time.monotonic()
    if entry.local is not None:
        path = settings.backups_dir / entry.local.key
        result: VerifyResult = verify_dump(path, cancel=cancel, progress=progress)
        try:
            remember(settings, path, result)
        except (OSError, FoveaError) as exc:  # the verdict counts for this run; the cache only saves a read
            log.warning("could not remember the verdict of %s (%s); the next prune reads it again", entry.name, exc)
        location = LOCAL
    else:
        try:
            assert entry.offsite is not None, "an entry is local, off-site or both"
            result = verify_offsite(settings, entry.offsite.key, cancel=cancel, progress=progress)
        except FoveaError as exc:
            raise OperationFailed(f"cannot read the off-site dump {entry.name} before pruning: {exc}",
                                  hint="nothing was deleted; prune again when the store answers") from None
        location = OFFSITE
    return DumpRead(entry.name, location, result.status, result.size, time.monotonic() - t0,
                    reasons=list(result.reasons), cached=entry.status)


def read_before_deleting(settings: Settings, policy: Policy, inventory: Inventory, *, progress=no_progress,
                         cancel: CancelToken | None = None) -> tuple[PrunePlan, list[DumpRead]]:
    """Plan, read what the plan's decisions rest on, plan again with what was read, until
    every dump the plan keeps as good (or deletes as corrupt) was read in this run."""
    cancel = cancel or CancelToken()
    reads: dict[str, DumpRead] = {}
    while True:
        pp = build_plan(settings, policy=policy, inventory=inventory, reads=reads)
        todo = [] if pp.refused else [e for e in _needs_reading(pp) if e.name not in reads]
        if not todo:
            return pp, list(reads.values())
        for entry in todo:
            cancel.check()
            progress(ProgressEvent("prune", len(reads), len(reads) + len(todo), "dumps", current=entry.name,
                                   message=f"reading {entry.name} before deleting anything"))
            reads[entry.name] = _read(settings, entry, progress, cancel)


# -- running ---------------------------------------------------------------------------


def _delete(settings: Settings, store: Store | None, d: Deletion) -> None:
    if d.location == LOCAL:
        if "/" in d.key or d.key.startswith("."):
            raise OperationFailed(f"refusing to delete {d.key!r}: not a file name in {settings.backups_dir}")
        try:
            (settings.backups_dir / d.key).unlink(missing_ok=True)
        except OSError as exc:
            raise OperationFailed(f"cannot delete {settings.backups_dir / d.key}: {exc.strerror}") from None
    else:
        if store is None:
            raise OperationFailed(f"cannot delete off-site {d.key}: no off-site store configured")
        store.delete(d.key)


def prune(settings: Settings, *, dry_run: bool = False, overrides: dict[str, int | None] | None = None,
          progress=no_progress, cancel: CancelToken | None = None, store: Store | None = None,
          expected: list[Deletion] | None = None) -> PruneResult:
    """Plan and (unless `dry_run`) execute. Raises PruneRefused (exit 3) on a refused plan,
    LockHeld (exit 3) when another operation holds the backups lock, OperationFailed (exit 1)
    when the off-site store cannot be listed. Per-file failures land in `result.failed`.

    `expected`: the deletions an operator confirmed (the TUI's preview); when the plan
    recomputed under the lock differs, nothing is deleted (SafetyRefusal, exit 3)."""
    started = time.monotonic()
    cancel = cancel or CancelToken()
    policy = policy_for(settings, overrides)  # bad flags fail before anything is touched
    if dry_run:
        pp, reads = read_before_deleting(settings, policy, load_inventory(settings, store=store),
                                         progress=progress, cancel=cancel)
        result = PruneResult(True, pp, duration_s=time.monotonic() - started, reads=reads)
        if pp.refused:
            raise PruneRefused(pp.refused, result)
        return result

    with acquire(settings, "backups", purpose="prune"):
        inventory = load_inventory(settings, store=store)
        try:
            pp, reads = read_before_deleting(settings, policy, inventory, progress=progress, cancel=cancel)
        except OperationFailed as exc:
            audit.record(settings, "prune", "failed", {"error": str(exc)})
            raise
        result = PruneResult(False, pp, reads=reads)
        if expected is not None and pp.all_deletions() != list(expected):
            changed = [f"{r.name} is {r.status}" for r in reads if r.status != r.cached]
            audit.record(settings, "prune", "refused", {"reason": "plan changed since the preview"})
            raise SafetyRefusal("the backups changed since the preview you confirmed"
                                + (f" (reading them found: {'; '.join(changed)})" if changed else "")
                                + "; nothing was deleted", hint="review the new plan and prune again")
        if pp.refused:
            result.duration_s = time.monotonic() - started
            audit.record(settings, "prune", "refused", {"reason": pp.refused, "policy": policy.describe()})
            raise PruneRefused(pp.refused, result)
        try:
            _execute(settings, pp, result, inventory.store, progress, cancel)
        except Cancelled:
            audit.record(settings, "prune", "cancelled", _audit_details(result))
            raise
        result.duration_s = time.monotonic() - started
        audit.record(settings, "prune", "ok" if result.ok else "failed", _audit_details(result))
    return result


def _execute(settings: Settings, pp: PrunePlan, result: PruneResult, store: Store | None, progress,
             cancel: CancelToken) -> None:
    todo = pp.all_deletions()
    if store is None and any(d.location == OFFSITE for d in todo) and settings.backups.offsite:
        store = open_store(settings.backups.offsite, settings.s3)
    # Group by (dump, location), keeping order: a failure stops the rest of that group only.
    groups: list[list[Deletion]] = []
    for d in todo:
        if groups and groups[-1][0].dump == d.dump and groups[-1][0].location == d.location:
            groups[-1].append(d)
        else:
            groups.append([d])
    remaining = list(todo)
    started: set[str] = set()  # dumps whose deletion began: the only ones the journal holds

    def journal() -> None:
        write_journal(settings, [d for d in remaining if d.dump in started])

    total, done = len(todo), 0
    try:
        for group in groups:
            cancel.check()
            if group[0].dump not in started:
                started.add(group[0].dump)
                journal()
            for i, d in enumerate(group):
                progress(ProgressEvent("prune", done, total, "files", current=d.key,
                                       message=f"deleting {d.location} {d.key}"))
                try:
                    _delete(settings, store, d)
                except FoveaError as exc:
                    result.failed.append((d, str(exc)))
                    # the group's later files (env copy, manifest) stay, and stay journaled
                    done += len(group) - i
                    break
                result.deleted.append(d)
                remaining.remove(d)
                done += 1
            journal()
    except Cancelled:
        journal()  # only the dumps started stay journaled
        raise
    progress(ProgressEvent("prune", total, total, "files", message="prune finished"))


def _audit_details(result: PruneResult) -> dict[str, Any]:
    pp = result.prune_plan
    return {
        "policy": pp.plan.policy.describe(),
        "kept": len(pp.plan.keep),
        "forgotten": [d.candidate.name for d in pp.plan.forget],
        "deleted": [f"{d.location}:{d.key}" for d in result.deleted],
        "failed": [f"{d.location}:{d.key}: {err}" for d, err in result.failed],
        "retried": len(pp.pending),
        "read": {r.name: r.status for r in result.reads},
    }
