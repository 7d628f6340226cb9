"""Retention: restic `forget` semantics plus fovea-tui's guards. Pure, no I/O."""

from __future__ import annotations

import time as time_module
from collections import Counter
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fovea_tui.config import RetentionSettings
from fovea_tui.engine.backups.retention import (
    REASON_CORRUPT,
    REASON_NEWEST_VERIFIED,
    REASON_SAFETY,
    REFUSED_EMPTY,
    REFUSED_NO_VERIFIED,
    RULES,
    Candidate,
    Policy,
    plan,
)
from fovea_tui.errors import ConfigError, UsageError

UTC = UTC


def dump(when: str, status: str = "verified", safety: bool = False) -> Candidate:
    """A dump taken at `when` (ISO, UTC unless it carries an offset)."""
    t = datetime.fromisoformat(when)
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    stamp = t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = "-pre-restore" if safety else ""
    return Candidate(f"fovea-{stamp}{suffix}.sql.gz", t.astimezone(UTC), status, safety)


def local(when: str, zone: str) -> str:
    """A wall-clock time in `zone` as an aware ISO string."""
    return datetime.fromisoformat(when).replace(tzinfo=ZoneInfo(zone)).isoformat()


def names(decisions) -> list[str]:
    return [d.candidate.name for d in decisions]


def kept_times(p) -> list[str]:
    return [d.candidate.time.strftime("%Y-%m-%dT%H:%M") for d in p.keep]


def by_time(p, when: str):
    for d in p.keep + p.forget:
        if d.candidate.time == datetime.fromisoformat(when).replace(tzinfo=UTC):
            return d
    raise KeyError(when)


# -- restic semantics ---------------------------------------------------------------------


def test_gaps_periods_without_backups_do_not_count():
    history = [dump(t) for t in ("2026-11-01T02:00", "2026-10-25T02:00", "2026-10-20T02:00", "2026-10-19T02:00")]
    p = plan(history, Policy(keep_daily=3, timezone="UTC"))
    assert kept_times(p) == ["2026-11-01T02:00", "2026-10-25T02:00", "2026-10-20T02:00"]
    assert [d.reasons for d in p.keep] == [
        ("daily 1 of 3", REASON_NEWEST_VERIFIED),
        ("daily 2 of 3",),
        ("daily 3 of 3",),
    ]
    assert names(p.forget) == ["fovea-20261019T020000Z.sql.gz"]
    assert p.forget[0].reasons == ()
    assert p.refused is None


def test_several_backups_a_day_newest_of_the_day_is_kept():
    history = [
        dump(t)
        for t in ("2026-11-01T02:00", "2026-11-01T12:00", "2026-11-01T23:00", "2026-10-31T02:00", "2026-10-31T14:00")
    ]
    p = plan(history, Policy(keep_daily=2, timezone="UTC"))
    assert kept_times(p) == ["2026-11-01T23:00", "2026-10-31T14:00"]
    assert kept_times(plan(history, Policy(keep_last=3, timezone="UTC"))) == [
        "2026-11-01T23:00",
        "2026-11-01T12:00",
        "2026-11-01T02:00",
    ]


def test_rules_combine_and_reasons_list_every_rule():
    history = [dump(t) for t in ("2026-11-01T23:00", "2026-11-01T02:00", "2026-10-31T02:00")]
    p = plan(history, Policy(keep_last=2, keep_daily=2, keep_weekly=1, timezone="UTC"))
    assert by_time(p, "2026-11-01T23:00").reasons == (
        "last 1 of 2",
        "daily 1 of 2",
        "weekly 1 of 1",
        REASON_NEWEST_VERIFIED,
    )
    assert by_time(p, "2026-11-01T23:00").buckets == (("daily", "2026-11-01"), ("weekly", "2026-W44"))
    assert by_time(p, "2026-11-01T02:00").reasons == ("last 2 of 2",)
    assert by_time(p, "2026-11-01T02:00").buckets == ()
    assert by_time(p, "2026-10-31T02:00").reasons == ("daily 2 of 2",)
    assert p.forget == []


def test_month_and_year_boundaries():
    history = [
        dump(t)
        for t in (
            "2027-01-01T00:30",
            "2026-12-31T23:00",
            "2026-12-01T00:00",
            "2026-11-30T23:59",
            "2026-11-15T02:00",
            "2025-06-01T02:00",
            "2024-12-31T23:59",
        )
    ]
    p = plan(history, Policy(keep_monthly=3, keep_yearly=2, timezone="UTC"))
    assert kept_times(p) == ["2027-01-01T00:30", "2026-12-31T23:00", "2026-11-30T23:59"]
    assert by_time(p, "2027-01-01T00:30").buckets == (("monthly", "2027-01"), ("yearly", "2027"))
    assert by_time(p, "2026-12-31T23:00").buckets == (("monthly", "2026-12"), ("yearly", "2026"))
    assert by_time(p, "2026-11-30T23:59").reasons == ("monthly 3 of 3",)
    # One more year reaches back over the gap in 2026 months to 2025.
    p = plan(history, Policy(keep_yearly=4, timezone="UTC"))
    assert kept_times(p) == ["2027-01-01T00:30", "2026-12-31T23:00", "2025-06-01T02:00", "2024-12-31T23:59"]


def test_month_boundary_in_local_time():
    # 2026-11-30T23:30Z is already December in Berlin.
    history = [dump("2026-11-30T23:30"), dump("2026-11-30T22:30"), dump("2026-11-29T02:00")]
    p = plan(history, Policy(keep_monthly=2, timezone="Europe/Berlin"))
    assert [b for d in p.keep for b in d.buckets] == [("monthly", "2026-12"), ("monthly", "2026-11")]
    assert kept_times(p) == ["2026-11-30T23:30", "2026-11-30T22:30"]


def test_iso_week_53_and_the_week_spanning_new_year():
    history = [
        dump(t)
        for t in (
            "2027-01-04T02:00",  # Monday: 2027-W01
            "2027-01-03T02:00",  # Sunday: still 2026-W53
            "2027-01-01T02:00",
            "2026-12-31T02:00",  # Thursday: 2026-W53
            "2026-12-28T02:00",
            "2026-12-27T02:00",  # 2026-W52
            "2026-12-21T02:00",
        )
    ]
    p = plan(history, Policy(keep_weekly=3, timezone="UTC"))
    assert kept_times(p) == ["2027-01-04T02:00", "2027-01-03T02:00", "2026-12-27T02:00"]
    assert [d.buckets for d in p.keep] == [
        (("weekly", "2027-W01"),),
        (("weekly", "2026-W53"),),
        (("weekly", "2026-W52"),),
    ]
    # Without the 2027-W01 dump, 2026-W53 is one week holding dumps from two calendar years.
    p = plan(history[1:], Policy(keep_weekly=1, keep_yearly=2, timezone="UTC"))
    assert by_time(p, "2027-01-03T02:00").buckets == (("weekly", "2026-W53"), ("yearly", "2027"))
    assert by_time(p, "2026-12-31T02:00").buckets == (("yearly", "2026"),)


def test_iso_week_one_starts_in_the_previous_year():
    p = plan([dump("2025-12-30T02:00"), dump("2025-12-28T02:00")], Policy(keep_weekly=2, keep_yearly=1, timezone="UTC"))
    assert by_time(p, "2025-12-30T02:00").buckets == (("weekly", "2026-W01"), ("yearly", "2025"))
    assert by_time(p, "2025-12-28T02:00").buckets == (("weekly", "2025-W52"),)


# -- time zones and DST -------------------------------------------------------------------


def test_dst_spring_forward_berlin_local_days():
    # 2026-03-29: Berlin switches from CET (+1) to CEST (+2).
    late_on_dst_day = dump(local("2026-03-29T23:30", "Europe/Berlin"))  # 21:30Z
    early_on_dst_day = dump(local("2026-03-29T00:30", "Europe/Berlin"))  # 2026-03-28T23:30Z
    late_day_before = dump(local("2026-03-28T23:30", "Europe/Berlin"))  # 22:30Z
    history = [late_on_dst_day, early_on_dst_day, late_day_before]
    p = plan(history, Policy(keep_daily=2, timezone="Europe/Berlin"))
    assert [d.candidate for d in p.keep] == [late_on_dst_day, late_day_before]
    assert [d.buckets for d in p.keep] == [(("daily", "2026-03-29"),), (("daily", "2026-03-28"),)]
    assert [d.candidate for d in p.forget] == [early_on_dst_day]
    # In UTC the same dumps fall on other days.
    p = plan(history, Policy(keep_daily=2, timezone="UTC"))
    assert [d.candidate for d in p.keep] == [late_on_dst_day, early_on_dst_day]


def test_dst_fall_back_new_york_late_evening_stays_on_its_local_day():
    # 2026-11-01: New York goes from EDT (-4) to EST (-5). 23:30 EST is 04:30Z on Nov 2.
    late_on_dst_day = dump(local("2026-11-01T23:30", "America/New_York"))
    assert late_on_dst_day.time == datetime(2026, 11, 2, 4, 30, tzinfo=UTC)
    morning_after = dump(local("2026-11-02T00:30", "America/New_York"))
    earlier_same_day = dump(local("2026-11-01T01:30", "America/New_York"))
    day_before = dump(local("2026-10-31T23:30", "America/New_York"))
    history = [morning_after, late_on_dst_day, earlier_same_day, day_before]
    p = plan(history, Policy(keep_daily=3, timezone="America/New_York"))
    assert [d.candidate for d in p.keep] == [morning_after, late_on_dst_day, day_before]
    assert [d.buckets[0][1] for d in p.keep] == ["2026-11-02", "2026-11-01", "2026-10-31"]


def test_hourly_the_repeated_hour_when_clocks_go_back_is_two_hours():
    # 2026-10-25: Berlin's 02:00-03:00 happens first in CEST (00:xxZ), then in CET (01:xxZ).
    history = [dump("2026-10-25T01:40"), dump("2026-10-25T01:10"), dump("2026-10-25T00:40"), dump("2026-10-25T00:10")]
    p = plan(history, Policy(keep_hourly=3, timezone="Europe/Berlin"))
    assert kept_times(p) == ["2026-10-25T01:40", "2026-10-25T00:40"]
    assert [d.buckets for d in p.keep] == [
        (("hourly", "2026-10-25T02:00+01:00"),),
        (("hourly", "2026-10-25T02:00+02:00"),),
    ]
    slots = p.slots("hourly")
    assert [s.label for s in slots] == ["2026-10-25T02:00+01:00", "2026-10-25T02:00+02:00", None]


def test_half_hour_offset_zone_hour_and_day_boundaries():
    # Asia/Kolkata is +05:30: local hours start at hh:30Z, local days at 18:30Z.
    history = [dump("2026-11-01T18:35"), dump("2026-11-01T18:25"), dump("2026-11-01T17:35")]
    p = plan(history, Policy(keep_hourly=3, keep_daily=2, timezone="Asia/Kolkata"))
    assert [d.buckets for d in p.keep] == [
        (("hourly", "2026-11-02T00:00+05:30"), ("daily", "2026-11-02")),
        (("hourly", "2026-11-01T23:00+05:30"), ("daily", "2026-11-01")),
    ]
    assert [d.candidate.name for d in p.forget] == ["fovea-20261101T173500Z.sql.gz"]


@pytest.fixture
def host_zone(monkeypatch):
    """Make the host's local zone America/New_York for one test (time.tzset: POSIX, as every
    host fovea-tui runs on)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    yield
    monkeypatch.undo()
    time_module.tzset()


def test_empty_timezone_means_the_host_local_zone(host_zone):
    late = dump(local("2026-11-01T23:30", "America/New_York"))  # 2026-11-02T04:30Z
    earlier = dump(local("2026-11-01T08:00", "America/New_York"))
    p = plan([late, earlier], Policy(keep_daily=1, keep_hourly=1))
    assert [d.candidate for d in p.keep] == [late]
    assert p.keep[0].buckets == (("hourly", "2026-11-01T23:00-05:00"), ("daily", "2026-11-01"))


# -- fovea-tui's additions ----------------------------------------------------------------


def test_corrupt_dump_inside_a_bucket_the_next_good_dump_fills_it():
    corrupt = dump("2026-11-01T23:00", status="corrupt")
    history = [corrupt, dump("2026-11-01T02:00"), dump("2026-10-31T02:00")]
    p = plan(history, Policy(keep_last=1, keep_daily=2, timezone="UTC"))
    assert kept_times(p) == ["2026-11-01T02:00", "2026-10-31T02:00"]
    assert p.keep[0].reasons == ("last 1 of 1", "daily 1 of 2", REASON_NEWEST_VERIFIED)
    assert p.keep[0].buckets == (("daily", "2026-11-01"),)
    assert [d.candidate for d in p.forget] == [corrupt]
    assert p.forget[0].reasons == (REASON_CORRUPT,)
    assert p.forget[0].buckets == ()


def test_a_day_holding_only_corrupt_dumps_is_not_a_period():
    history = [dump("2026-11-01T02:00"), dump("2026-10-31T02:00", status="corrupt"), dump("2026-10-30T02:00")]
    p = plan(history, Policy(keep_daily=2, timezone="UTC"))
    assert kept_times(p) == ["2026-11-01T02:00", "2026-10-30T02:00"]


def test_safety_dumps_are_outside_the_policy():
    safety = dump("2026-11-01T12:00", safety=True)
    old_safety = dump("2025-01-01T12:00", status="corrupt", safety=True)
    history = [safety, old_safety, dump("2026-11-01T02:00"), dump("2026-10-31T02:00"), dump("2026-10-30T02:00")]
    p = plan(history, Policy(keep_daily=1, timezone="UTC"))
    assert names(p.keep) == [safety.name, "fovea-20261101T020000Z.sql.gz", old_safety.name]
    assert p.keep[0].reasons == (REASON_SAFETY,)
    assert p.keep[0].buckets == ()
    assert p.keep[2].reasons == (REASON_SAFETY,)  # even a corrupt one: prune does not touch them
    assert p.keep[1].reasons == ("daily 1 of 1", REASON_NEWEST_VERIFIED)
    assert kept_times(plan(history, Policy(keep_last=1, timezone="UTC")))[1] == "2026-11-01T02:00"


def test_unverified_dumps_fill_buckets_but_the_newest_verified_is_kept_too():
    history = [
        dump("2026-11-01T02:00", status="unverified"),
        dump("2026-10-31T02:00", status="unverified"),
        dump("2026-10-30T02:00"),
        dump("2026-10-29T02:00"),
    ]
    p = plan(history, Policy(keep_daily=2, timezone="UTC"))
    assert [d.reasons for d in p.keep] == [("daily 1 of 2",), ("daily 2 of 2",), (REASON_NEWEST_VERIFIED,)]
    assert [d.buckets for d in p.keep][2] == ()
    assert kept_times(p)[2] == "2026-10-30T02:00"
    assert names(p.forget) == ["fovea-20261029T020000Z.sql.gz"]
    assert p.refused is None
    assert p.deletable == p.forget


def test_refused_when_no_verified_dump_would_remain():
    history = [dump(t, status="unverified") for t in ("2026-11-01T02:00", "2026-10-31T02:00", "2026-10-30T02:00")]
    p = plan(history, Policy(keep_last=1, timezone="UTC"))
    assert p.refused == REFUSED_NO_VERIFIED
    assert p.deletable == []
    assert len(p.forget) == 2  # what the policy would do, for the screen
    # Nothing to forget: nothing to refuse.
    assert plan(history, Policy(keep_last=3, timezone="UTC")).refused is None
    assert plan([], Policy(keep_daily=14)).refused is None


def test_refused_even_when_only_corrupt_dumps_would_go():
    # If everything looks corrupt, the verifier is more likely wrong than the dumps.
    history = [dump("2026-11-01T02:00", status="corrupt"), dump("2026-10-31T02:00", status="unverified")]
    p = plan(history, Policy(keep_daily=14, timezone="UTC"))
    assert names(p.forget) == ["fovea-20261101T020000Z.sql.gz"]
    assert p.refused == REFUSED_NO_VERIFIED
    all_corrupt = [dump("2026-11-01T02:00", status="corrupt")]
    assert plan(all_corrupt, Policy(keep_daily=14)).refused == REFUSED_NO_VERIFIED


def test_a_verified_safety_dump_does_not_satisfy_the_verified_guard():
    history = [dump("2026-11-01T12:00", safety=True), dump("2026-11-01T02:00", status="unverified"), dump("2026-10-01T02:00", status="unverified")]
    p = plan(history, Policy(keep_last=1, timezone="UTC"))
    assert p.refused == REFUSED_NO_VERIFIED


def test_empty_policy_is_refused_not_delete_everything():
    history = [dump("2026-11-01T02:00", status="unverified"), dump("2026-10-31T02:00"), dump("2026-10-30T02:00")]
    policy = Policy(timezone="UTC")
    assert policy.is_empty()
    p = plan(history, policy)
    assert p.refused == REFUSED_EMPTY
    assert p.deletable == []
    assert kept_times(p) == ["2026-10-31T02:00"]  # the guard still holds in the preview
    assert plan([], policy).refused == REFUSED_EMPTY
    assert not Policy(keep_yearly=1).is_empty()


def test_newest_verified_guard_with_only_a_keep_last_policy():
    history = [dump("2026-11-01T02:00", status="unverified"), dump("2026-10-31T02:00", status="corrupt"), dump("2026-10-30T02:00")]
    p = plan(history, Policy(keep_last=1, timezone="UTC"))
    assert [d.reasons for d in p.keep] == [("last 1 of 1",), (REASON_NEWEST_VERIFIED,)]
    assert p.refused is None


# -- the runbook default ------------------------------------------------------------------


def nightly(first: str, last: str, at: str = "02:00", status: str = "verified") -> list[Candidate]:
    day = datetime.fromisoformat(f"{first}T{at}").replace(tzinfo=UTC)
    end = datetime.fromisoformat(f"{last}T{at}").replace(tzinfo=UTC)
    out = []
    while day <= end:
        out.append(dump(day.isoformat(), status=status))
        day += timedelta(days=1)
    return out


def test_runbook_default_14_daily_8_weekly_over_four_months_of_nightlies():
    history = nightly("2026-07-01", "2026-10-31")
    assert len(history) == 123
    policy = Policy.from_settings(RetentionSettings(timezone="Europe/Berlin"))
    assert (policy.keep_daily, policy.keep_weekly) == (14, 8)
    p = plan(history, policy)
    expected_days = [f"2026-10-{d:02d}" for d in range(31, 17, -1)] + [
        "2026-10-11",
        "2026-10-04",
        "2026-09-27",
        "2026-09-20",
        "2026-09-13",
    ]
    assert [d.candidate.time.strftime("%Y-%m-%d") for d in p.keep] == expected_days
    assert len(p.forget) == 123 - 19
    assert p.refused is None
    assert by_time(p, "2026-10-31T02:00").reasons == ("daily 1 of 14", "weekly 1 of 8", REASON_NEWEST_VERIFIED)
    assert by_time(p, "2026-10-29T02:00").reasons == ("daily 3 of 14",)
    assert by_time(p, "2026-10-18T02:00").reasons == ("daily 14 of 14", "weekly 3 of 8")
    assert by_time(p, "2026-09-13T02:00").reasons == ("weekly 8 of 8",)
    assert by_time(p, "2026-09-13T02:00").buckets == (("weekly", "2026-W37"),)
    # Newest first on both sides.
    for side in (p.keep, p.forget):
        times = [d.candidate.time for d in side]
        assert times == sorted(times, reverse=True)


def test_runbook_cron_dumps_unverified_mixed_with_verified_ones():
    # Legacy cron dumps (no manifest) before fovea-tui took over on 2026-10-20.
    history = nightly("2026-09-01", "2026-10-19", status="unverified") + nightly("2026-10-20", "2026-10-31")
    p = plan(history, Policy(keep_daily=14, keep_weekly=8, timezone="UTC"))
    assert [d.candidate.time.strftime("%m-%d") for d in p.keep][-6:] == ["10-18", "10-11", "10-04", "09-27", "09-20", "09-13"]
    assert p.refused is None


# -- the grid -----------------------------------------------------------------------------


def test_slots_for_the_bucket_grid():
    history = [dump("2026-11-01T02:00"), dump("2026-11-01T01:00"), dump("2026-10-30T02:00"), dump("2026-10-20T02:00")]
    p = plan(history, Policy(keep_last=2, keep_daily=5, keep_weekly=2, timezone="UTC"))
    daily = p.slots("daily")
    assert [(s.position, s.of) for s in daily] == [(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]
    assert [s.label for s in daily] == ["2026-11-01", "2026-10-30", "2026-10-20", None, None]
    assert [s.decision.candidate.name if s.decision else None for s in daily] == [
        "fovea-20261101T020000Z.sql.gz",
        "fovea-20261030T020000Z.sql.gz",
        "fovea-20261020T020000Z.sql.gz",
        None,
        None,
    ]
    assert [s.filled for s in daily] == [True, True, True, False, False]
    assert all(s.decision.keep for s in daily if s.decision)
    weekly = p.slots("weekly")
    assert [(s.label, s.decision.candidate.name) for s in weekly] == [
        ("2026-W44", "fovea-20261101T020000Z.sql.gz"),
        ("2026-W43", "fovea-20261020T020000Z.sql.gz"),
    ]
    assert [s.label for s in p.slots("last")] == ["fovea-20261101T020000Z.sql.gz", "fovea-20261101T010000Z.sql.gz"]
    assert p.slots("hourly") == []
    with pytest.raises(ValueError):
        p.slots("fortnightly")


# -- policy, candidates, JSON -------------------------------------------------------------


def test_policy_from_settings_and_flag_overrides():
    settings_ = RetentionSettings(keep_daily=14, keep_weekly=8, timezone="Europe/Berlin")
    assert Policy.from_settings(settings_) == Policy(keep_daily=14, keep_weekly=8, timezone="Europe/Berlin")
    p = Policy.from_settings(settings_, keep_daily=7, keep_last=None, keep_monthly=0, keep_weekly=None)
    assert p == Policy(keep_daily=7, keep_weekly=8, timezone="Europe/Berlin")
    assert Policy.from_settings({"keep_last": 3}) == Policy(keep_last=3)
    with pytest.raises(UsageError) as err:
        Policy.from_settings(settings_, keep_daily=-1)
    assert err.value.key == "--keep-daily"
    with pytest.raises(TypeError):
        Policy.from_settings(settings_, keep_fortnightly=2)


def test_policy_validation_names_the_key():
    with pytest.raises(ConfigError) as err:
        Policy(keep_weekly=-2)
    assert err.value.key == "retention.keep_weekly"
    with pytest.raises(ConfigError) as err:
        Policy(timezone="Mars/Olympus_Mons")
    assert err.value.key == "retention.timezone"
    assert Policy(keep_daily=14, keep_weekly=8, timezone="UTC").describe() == "14 daily, 8 weekly (UTC)"


def test_candidate_validation():
    with pytest.raises(ValueError):
        Candidate("fovea-x.sql.gz", datetime(2026, 11, 1, 2, 0), "verified")
    with pytest.raises(ValueError):
        Candidate("fovea-x.sql.gz", datetime(2026, 11, 1, 2, 0, tzinfo=UTC), "fine")


def test_json_shape_of_prune_dry_run():
    history = [dump("2026-11-01T02:00"), dump("2026-10-31T02:00", status="corrupt")]
    doc = plan(history, Policy(keep_daily=14, timezone="UTC")).to_json()
    assert doc["keep"][0]["name"] == "fovea-20261101T020000Z.sql.gz"
    assert doc["keep"][0]["time"] == "2026-11-01T02:00:00Z"
    assert doc["keep"][0]["reasons"] == ["daily 1 of 14", REASON_NEWEST_VERIFIED]
    assert doc["forget"] == [
        {
            "name": "fovea-20261031T020000Z.sql.gz",
            "time": "2026-10-31T02:00:00Z",
            "status": "corrupt",
            "safety": False,
            "reasons": [REASON_CORRUPT],
            "buckets": [],
        }
    ]
    assert doc["refused"] is None


def test_input_order_does_not_matter():
    history = nightly("2026-09-01", "2026-10-31") + [dump("2026-10-31T02:00", status="unverified")]
    policy = Policy(keep_last=3, keep_daily=7, keep_weekly=4, keep_monthly=2, timezone="Europe/Berlin")
    assert plan(history, policy) == plan(list(reversed(history)), policy)


# -- properties ---------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
BASE = datetime(2025, 12, 20, tzinfo=UTC)


@st.composite
def histories(draw):
    n = draw(st.integers(0, 30))
    out = []
    for i in range(n):
        # Mostly within weeks of each other (many shared hours and days), sometimes far apart.
        minutes = draw(st.one_of(st.integers(0, 60 * 24 * 21), st.integers(0, 60 * 24 * 800)))
        t = BASE + timedelta(minutes=minutes)
        status = draw(st.sampled_from(["verified", "verified", "unverified", "corrupt"]))
        safety = draw(st.integers(0, 9)) == 0
        out.append(Candidate(f"fovea-{t:%Y%m%dT%H%M%SZ}-{i}.sql.gz", t, status, safety))
    return out


@st.composite
def policies(draw):
    counts = {f"keep_{rule}": draw(st.integers(0, 5)) for rule in RULES}
    return Policy(**counts, timezone=draw(st.sampled_from(ZONES)))


def oracle_keys(c: Candidate, zone: str) -> dict[str, object]:
    """Bucket keys computed independently of the module under test."""
    t = c.time.astimezone(ZoneInfo(zone))
    return {
        "hourly": (t.replace(minute=0, second=0, microsecond=0, tzinfo=None), t.utcoffset()),
        "daily": t.date(),
        "weekly": t.isocalendar()[:2],
        "monthly": (t.year, t.month),
        "yearly": t.year,
    }


def oracle_kept(history: list[Candidate], policy: Policy) -> set[str]:
    """Group-then-rank formulation of restic's rules (the module scans instead)."""
    eligible = [c for c in history if not c.safety and c.status != "corrupt"]
    eligible.sort(key=lambda c: (c.time, c.name), reverse=True)
    kept = {c.name for c in history if c.safety}
    kept |= {c.name for c in eligible[: policy.keep_last]}
    for rule in ("hourly", "daily", "weekly", "monthly", "yearly"):
        newest: dict[object, Candidate] = {}
        for c in eligible:
            newest.setdefault(oracle_keys(c, policy.timezone)[rule], c)
        ranked = sorted(newest.values(), key=lambda c: (c.time, c.name), reverse=True)
        kept |= {c.name for c in ranked[: policy.count(rule)]}
    verified = [c for c in eligible if c.status == "verified"]
    if verified:
        kept.add(verified[0].name)
    return kept


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(histories(), policies(), st.randoms(use_true_random=False))
def test_property_partition_deterministic_and_matches_the_oracle(history, policy, rnd):
    p = plan(history, policy)
    kept = [d.candidate for d in p.keep]
    forgotten = [d.candidate for d in p.forget]
    # kept ∪ forgotten == input, disjoint.
    assert Counter(kept) + Counter(forgotten) == Counter(history)
    assert not set(kept) & set(forgotten)
    assert all(d.keep for d in p.keep) and not any(d.keep for d in p.forget)
    # Newest first.
    for side in (kept, forgotten):
        assert [c.time for c in side] == sorted((c.time for c in side), reverse=True)
    # Deterministic, whatever the input order.
    shuffled = list(history)
    rnd.shuffle(shuffled)
    assert plan(shuffled, policy) == p
    assert plan(history, policy) == p
    # Same answer as an independent formulation.
    assert {c.name for c in kept} == oracle_kept(history, policy)
    # The guards.
    assert all(c.safety for c in kept if c.status == "corrupt")
    assert all(c in kept for c in history if c.safety)
    regular_verified = [c for c in history if c.status == "verified" and not c.safety]
    if regular_verified:
        assert max(regular_verified, key=lambda c: (c.time, c.name)) in kept
    if policy.is_empty():
        assert p.refused == REFUSED_EMPTY
    elif forgotten and not regular_verified:
        assert p.refused == REFUSED_NO_VERIFIED
    else:
        assert p.refused is None
    # Every kept dump says why; slots are consistent with decisions.
    assert all(d.reasons for d in p.keep)
    for rule in RULES:
        slots = p.slots(rule)
        n = policy.count(rule)
        assert len(slots) == n
        filled = [s for s in slots if s.filled]
        assert slots[: len(filled)] == filled  # filled slots first, then the empty ones
        assert len({s.label for s in filled}) == len(filled)
        for s in filled:
            assert s.decision in p.keep
            assert f"{rule} {s.position} of {n}" in s.decision.reasons
            if rule != "last":
                assert (rule, s.label) in s.decision.buckets


@PROPERTY_SETTINGS
@given(histories(), policies(), st.sampled_from(RULES), st.integers(1, 4))
def test_property_monotonic_keeping_more_never_forgets_more(history, policy, rule, extra):
    bigger = Policy(**{**policy.__dict__, f"keep_{rule}": policy.count(rule) + extra})
    small, big = plan(history, policy), plan(history, bigger)
    assert {d.candidate for d in big.forget} <= {d.candidate for d in small.forget}
    assert {d.candidate for d in big.keep} >= {d.candidate for d in small.keep}
