"""The retention policy: which dumps `prune` keeps and which it forgets.

Pure functions, no I/O, no textual. The semantics are restic's `forget`:

- dumps are sorted newest first;
- `keep_last N` keeps the N newest;
- `keep_hourly/daily/weekly/monthly/yearly N` keep the newest dump in each of the last N
  hours / days / ISO weeks / months / years *that have at least one dump* (periods without
  a dump do not count, so a week-long outage does not eat the daily slots);
- a dump kept by any rule is kept, and its reasons name every rule that kept it with its
  position ("daily 3 of 14").

Bucket boundaries are computed in the policy's time zone (the host's local zone when it is
empty), so midnight and DST changes fall where the operator's clock says. Hourly buckets
are keyed by the local hour *and* its UTC offset, so the hour repeated when clocks go back
counts as two hours, as it is.

On top of restic:

- corrupt dumps never fill a bucket nor count for `keep_last`: they are always forgotten
  (reason "corrupt: never fills a bucket");
- pre-restore safety dumps are outside the policy: never forgotten, never fill a bucket
  (a safety dump wins over "corrupt": prune does not touch them at all);
- "mismatch" dumps (whole, but not what their manifest says) are outside the policy too:
  never forgotten (the operator decides which side is right), never fill a bucket;
- unverified dumps (legacy, no manifest) fill buckets like verified ones;
- the newest verified dump is always kept ("newest verified dump");
- the plan is *refused* (`Plan.refused` set, the caller exits 3 and deletes nothing) when
  the policy is empty (every keep_* is 0: restic refuses that too, it would mean "forget
  everything"), or when something would be forgotten while no verified dump would be kept
  (there is no verified regular dump at all). In that case even corrupt dumps are not
  deleted: if every dump looks corrupt, the verifier is more likely wrong than the dumps.
  A refused plan still carries the keep/forget split so a screen can show what the policy
  would have done; `Plan.deletable` is what a caller may actually delete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fovea_tui.errors import ConfigError, UsageError

STATUSES = ("verified", "unverified", "corrupt", "mismatch")

#: The bucketed rules, finest first.
BUCKET_RULES = ("hourly", "daily", "weekly", "monthly", "yearly")
#: Every rule, in the order reasons are listed.
RULES = ("last",) + BUCKET_RULES

REASON_NEWEST_VERIFIED = "newest verified dump"
REASON_SAFETY = "pre-restore safety dump (outside the policy)"
REASON_CORRUPT = "corrupt: never fills a bucket"
REASON_MISMATCH = "whole but not what its manifest says: kept for you to decide, never fills a bucket"

REFUSED_NO_VERIFIED = "the policy would leave no verified dump; run `fovea-tui verify` or relax the policy"
REFUSED_EMPTY = (
    "the retention policy is empty (every keep_* is 0) and would forget every dump; "
    "set keep_daily or another keep_* in [retention], or pass a --keep-* flag"
)


@dataclass(frozen=True)
class Candidate:
    """One dump in the inventory, as retention sees it."""

    name: str  # dump file name, e.g. fovea-20261101T020000Z.sql.gz
    time: datetime  # aware creation time (UTC by convention)
    status: str  # "verified" | "unverified" | "corrupt" | "mismatch"
    safety: bool = False  # a pre-restore safety dump: outside the policy

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError(f"Candidate {self.name!r}: time must be timezone-aware")
        if self.status not in STATUSES:
            raise ValueError(f"Candidate {self.name!r}: status {self.status!r} is not one of {', '.join(STATUSES)}")


@dataclass(frozen=True)
class Policy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_yearly: int = 0
    timezone: str = ""  # IANA zone for bucket boundaries; "" = host local zone

    def __post_init__(self) -> None:
        for rule in RULES:
            value = self.count(rule)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"config key retention.keep_{rule} must be a whole number", key=f"retention.keep_{rule}")
            if value < 0:
                raise ConfigError(f"config key retention.keep_{rule} must not be negative", key=f"retention.keep_{rule}")
        if not isinstance(self.timezone, str):
            raise ConfigError("config key retention.timezone must be a string", key="retention.timezone")
        if self.timezone:
            _zone(self.timezone)  # raises ConfigError naming the key

    @classmethod
    def from_settings(cls, retention_settings: Any, **overrides: int | None) -> Policy:
        """The policy of `[retention]` (a RetentionSettings or a mapping), with CLI flags on top.

        `overrides` are `keep_daily=7` and the like; None means "flag not given". A bad
        override raises UsageError naming the flag (`--keep-daily`).
        """

        def setting(name: str, default: Any) -> Any:
            if isinstance(retention_settings, Mapping):
                return retention_settings.get(name, default)
            return getattr(retention_settings, name, default)

        values: dict[str, Any] = {f"keep_{rule}": setting(f"keep_{rule}", 0) for rule in RULES}
        values["timezone"] = setting("timezone", "")
        for name, value in overrides.items():
            if name not in values:
                raise TypeError(f"Policy.from_settings: unknown override {name!r}")
            if value is None:
                continue
            flag = "--" + name.replace("_", "-")
            if name == "timezone":
                if not isinstance(value, str):
                    raise UsageError(f"{flag} must be a time zone name", key=flag)
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{flag} must be a whole number, 0 or more", key=flag)
            values[name] = value
        return cls(**values)

    def count(self, rule: str) -> int:
        """N of `keep_<rule>`."""
        if rule not in RULES:
            raise ValueError(f"unknown retention rule {rule!r}; expected one of {', '.join(RULES)}")
        return getattr(self, f"keep_{rule}")

    def is_empty(self) -> bool:
        return all(self.count(rule) == 0 for rule in RULES)

    def tzinfo(self) -> tzinfo | None:
        """The zone of bucket boundaries; None means the host's local zone."""
        return _zone(self.timezone) if self.timezone else None

    def describe(self) -> str:
        """"14 daily, 8 weekly (Europe/Berlin)": one line for screens and logs."""
        parts = [f"{self.count(rule)} {rule}" for rule in RULES if self.count(rule)]
        text = ", ".join(parts) if parts else "empty"
        return f"{text} ({self.timezone or 'local time'})"


@dataclass(frozen=True)
class Decision:
    candidate: Candidate
    keep: bool
    reasons: tuple[str, ...]
    buckets: tuple[tuple[str, str], ...]  # (rule, bucket label) it fills, e.g. ("daily", "2026-11-01")


@dataclass(frozen=True)
class Slot:
    """One slot of a rule's bucket grid: position `position` of `of`.

    `label` is the bucket (e.g. "2026-W44") and `decision` the dump that fills it; both are
    None for slots left unfilled because fewer periods have dumps than the policy allows.
    For the "last" rule the label is the dump's name.
    """

    rule: str
    position: int  # 1-based, 1 = newest
    of: int
    label: str | None
    decision: Decision | None

    @property
    def filled(self) -> bool:
        return self.decision is not None


@dataclass(frozen=True)
class Plan:
    keep: list[Decision]  # newest first
    forget: list[Decision]  # newest first
    refused: str | None  # set: the caller must delete nothing and exit 3
    policy: Policy = field(default_factory=Policy)
    _fills: Mapping[str, tuple[tuple[str, Decision], ...]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def deletable(self) -> list[Decision]:
        """What the caller may delete: `forget`, or nothing when the plan is refused."""
        return [] if self.refused else list(self.forget)

    def slots(self, rule: str) -> list[Slot]:
        """The N slots of `keep_<rule>` for the TUI's bucket grid, newest first."""
        n = self.policy.count(rule)
        fills = self._fills.get(rule, ())
        out = [Slot(rule, i, n, label, decision) for i, (label, decision) in enumerate(fills, start=1)]
        out += [Slot(rule, i, n, None, None) for i in range(len(fills) + 1, n + 1)]
        return out

    def to_json(self) -> dict[str, Any]:
        """The contract's `prune --dry-run` shape (plus status, buckets and refused)."""

        def entry(d: Decision) -> dict[str, Any]:
            return {
                "name": d.candidate.name,
                "time": _iso_utc(d.candidate.time),
                "status": d.candidate.status,
                "safety": d.candidate.safety,
                "reasons": list(d.reasons),
                "buckets": [{"rule": r, "bucket": b} for r, b in d.buckets],
            }

        return {
            "keep": [entry(d) for d in self.keep],
            "forget": [entry(d) for d in self.forget],
            "refused": self.refused,
        }


def plan(candidates: Iterable[Candidate], policy: Policy) -> Plan:
    """Decide, for every candidate, keep or forget. Deterministic, independent of input order."""
    ordered = sorted(candidates, key=_sort_key, reverse=True)
    zone = policy.tzinfo()

    # The dumps the policy applies to: not safety dumps, not corrupt or mismatched ones.
    eligible = [c for c in ordered if not c.safety and c.status not in ("corrupt", "mismatch")]

    # rule -> [(label, index into eligible)], in fill order (newest first).
    fills: dict[str, list[tuple[str, int]]] = {}
    n_last = policy.keep_last
    if n_last:
        fills["last"] = [(c.name, i) for i, c in enumerate(eligible[:n_last])]
    for rule in BUCKET_RULES:
        n = policy.count(rule)
        if not n:
            continue
        seen: set[Any] = set()
        rule_fills: list[tuple[str, int]] = []
        for i, c in enumerate(eligible):
            if len(rule_fills) >= n:
                break
            key, label = _bucket(rule, _local(c.time, zone))
            if key in seen:
                continue
            seen.add(key)
            rule_fills.append((label, i))
        fills[rule] = rule_fills

    reasons: dict[int, list[str]] = {i: [] for i in range(len(eligible))}
    buckets: dict[int, list[tuple[str, str]]] = {i: [] for i in range(len(eligible))}
    for rule in RULES:
        rule_fills = fills.get(rule, [])
        n = policy.count(rule)
        for pos, (label, i) in enumerate(rule_fills, start=1):
            reasons[i].append(f"{rule} {pos} of {n}")
            if rule != "last":
                buckets[i].append((rule, label))

    newest_verified = next((i for i, c in enumerate(eligible) if c.status == "verified"), None)
    if newest_verified is not None:
        reasons[newest_verified].append(REASON_NEWEST_VERIFIED)

    eligible_decisions = [
        Decision(c, keep=bool(reasons[i]), reasons=tuple(reasons[i]), buckets=tuple(buckets[i]))
        for i, c in enumerate(eligible)
    ]
    eligible_iter = iter(eligible_decisions)

    decisions: list[Decision] = []
    for c in ordered:  # `eligible` is `ordered` filtered, so its decisions come in this order
        if c.safety:
            decisions.append(Decision(c, keep=True, reasons=(REASON_SAFETY,), buckets=()))
        elif c.status == "corrupt":
            decisions.append(Decision(c, keep=False, reasons=(REASON_CORRUPT,), buckets=()))
        elif c.status == "mismatch":
            decisions.append(Decision(c, keep=True, reasons=(REASON_MISMATCH,), buckets=()))
        else:
            decisions.append(next(eligible_iter))

    keep = [d for d in decisions if d.keep]
    forget = [d for d in decisions if not d.keep]

    refused: str | None = None
    if policy.is_empty():
        refused = REFUSED_EMPTY
    elif forget and newest_verified is None:
        refused = REFUSED_NO_VERIFIED

    slot_fills = {
        rule: tuple((label, eligible_decisions[i]) for label, i in rule_fills) for rule, rule_fills in fills.items()
    }
    return Plan(keep=keep, forget=forget, refused=refused, policy=policy, _fills=slot_fills)


# -- helpers ----------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"config key retention.timezone: unknown time zone {name!r}",
            key="retention.timezone",
            hint="use an IANA name such as Europe/Berlin, or leave it empty for the host's zone",
        ) from None


def _sort_key(c: Candidate) -> tuple[Any, ...]:
    # Aware datetimes compare by instant. Ties are broken by name, status and safety so the
    # order never depends on the input order (fully equal candidates are interchangeable).
    return (c.time, c.name, c.status, c.safety)


def _local(t: datetime, zone: tzinfo | None) -> datetime:
    # astimezone() with no argument: the host's zone, with the offset valid at that instant.
    return t.astimezone(zone) if zone is not None else t.astimezone()


def _offset_text(local: datetime) -> str:
    offset = local.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "+" if minutes >= 0 else "-"
    h, m = divmod(abs(minutes), 60)
    return f"{sign}{h:02d}:{m:02d}"


def _bucket(rule: str, local: datetime) -> tuple[Any, str]:
    """(key, label) of the period of `rule` that contains the local time `local`."""
    if rule == "hourly":
        # The offset is part of the key: when clocks go back, 02:00-03:00 happens twice.
        offset = local.utcoffset()
        key = (local.year, local.month, local.day, local.hour, offset)
        return key, f"{local:%Y-%m-%dT%H}:00{_offset_text(local)}"
    if rule == "daily":
        return (local.year, local.month, local.day), f"{local:%Y-%m-%d}"
    if rule == "weekly":
        iso = local.isocalendar()
        return (iso.year, iso.week), f"{iso.year:04d}-W{iso.week:02d}"
    if rule == "monthly":
        return (local.year, local.month), f"{local:%Y-%m}"
    if rule == "yearly":
        return (local.year,), f"{local.year:04d}"
    raise ValueError(f"unknown bucket rule {rule!r}")


def _iso_utc(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
