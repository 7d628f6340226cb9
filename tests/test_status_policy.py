"""The policy of `engine.ops.policy`, applied by `judge` alone (no services): each threshold's
two sides, the database against its newest dump, the restore section, and the rule that a
section never reads FINE beside an alert of its own."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fovea_tui.engine.ops import policy
from fovea_tui.engine.ops.status import Alert, RestoreSection, Verdict, judge
from fovea_tui.tui import model
from fovea_tui.tui.sample import SAMPLE_NOW, sample_report

MINUTE = timedelta(minutes=1)


def _with_backup_age(age: timedelta):
    report = sample_report()
    report.backups.last.time = SAMPLE_NOW - age
    return judge(report, SAMPLE_NOW)


def test_the_backup_turns_stale_and_critical_at_the_same_moment():
    fresh = _with_backup_age(policy.BACKUP_STALE_AFTER - MINUTE)
    assert fresh.database.verdict == fresh.backups.verdict == fresh.env_file.verdict == Verdict.FINE
    assert not any(a.subject == "backups" for a in fresh.alerts)
    late = _with_backup_age(policy.BACKUP_STALE_AFTER + MINUTE)
    assert late.database.verdict == late.backups.verdict == late.env_file.verdict == Verdict.STALE
    assert any(a.subject == "backups" and a.level == "critical" for a in late.alerts)
    assert late.critical


def test_the_videos_turn_stale_at_the_policy_threshold_on_the_card_and_in_status():
    for age, verdict in ((policy.SYNC_STALE_AFTER - MINUTE, Verdict.FINE), (policy.SYNC_STALE_AFTER + MINUTE, Verdict.STALE)):
        report = sample_report()
        report.sync.found, report.sync.pending = [], 0
        report.sync.age_s = age.total_seconds()
        report.sync.last = (SAMPLE_NOW - age).isoformat()
        judge(report, SAMPLE_NOW)
        card = next(c for c in model.cards(report, SAMPLE_NOW) if c.key == "volume")
        assert report.volume.verdict == report.sync.verdict == card.verdict == verdict, age


@pytest.mark.parametrize("rows, verdict", [(181_900, "fine"), (91_000, "fine"), (90_000, "failing"), (0, "failing")])
def test_the_database_against_its_newest_dump(rows, verdict):
    report = sample_report()
    report.database.rows = rows
    judge(report)
    assert report.database.verdict == verdict
    assert (verdict == "failing") == any(a.subject == "database" and a.level == "critical" for a in report.alerts)


def test_an_old_corrupt_dump_fails_the_backups_not_the_database():
    report = sample_report()
    report.backups.found = [Alert("critical", "backups", "1 corrupt dump: fovea-20260101T020000Z.sql.gz")]
    judge(report)
    assert report.backups.verdict == Verdict.FAILING and report.database.verdict == Verdict.FINE
    report.backups.last.status = "corrupt"
    judge(report)
    assert report.database.verdict == Verdict.FAILING


@pytest.mark.parametrize("status, touched, verdict, critical", [
    ("running", False, "active", True), ("waiting", False, "active", True),
    ("interrupted", False, "failing", True), ("rollback_failed", True, "failing", True),
    ("held", True, "failing", True),  # stopped before the backend: videos still missing
    ("failed", True, "failing", True), ("failed", False, "warning", False),
    ("ok", True, "fine", False), ("rolled_back", True, "fine", False),
    ("pending", False, "warning", False),  # created, its runner never started
])
def test_the_restore_section(status, touched, verdict, critical):
    report = sample_report()
    report.restore = RestoreSection(job="restore-x", status=status, dump="d.sql.gz", install_touched=touched,
                                    alive=status in ("running", "waiting"),
                                    next=["fovea-tui restore --follow restore-x"])
    judge(report)
    assert report.restore.verdict == verdict
    assert any(a.subject == "restore" and a.level == "critical" for a in report.alerts) == critical
    assert report.restore.needs_operator == (verdict in ("active", "failing"))


def test_no_section_reads_fine_beside_its_own_alert():
    report = sample_report(healthy=False)
    report.env_file.missing = ["SESSION_SECRET"]
    report.disk.free_fraction = 0.01
    report.schedule.found = [Alert("warning", "schedule", "no nightly schedule installed")]
    judge(report)
    sections = report.sections()
    for alert in report.alerts:
        if alert.subject in sections:
            assert sections[alert.subject].verdict != Verdict.FINE, alert
    assert report.as_dict()["schedule"]["verdict"] == "warning"
