"""Every threshold behind a verdict or an alert, written once.

`status`, the dashboard, the nightly schedule check and the sync summary all read these, so a
card never says FINE while an alert says the same thing is late. The policy, in words:

- The database is dumped nightly: its copy is STALE (and a CRITICAL alert) once the newest
  regular dump is older than a day plus two hours of slack. The env file travels with each
  dump, so it ages with it. The nightly schedule is overdue by the same measure.
- The videos are synced on the runbook's slow cadence: STALE (and a warning) once the last
  complete sync is older than two nightly runs plus slack.
- The live database is FAILING when it cannot be reached, holds no table, or holds less than
  half the rows the newest regular dump's manifest recorded: a restore that went wrong, or
  a wiped database, looks like that.
- The backups filesystem warns under a tenth free.
- The drill's interval is the operator's (`drill.interval_days`), not a constant here.
"""

from __future__ import annotations

from datetime import timedelta

BACKUP_STALE_AFTER = timedelta(hours=26)        # a nightly dump, with two hours of slack
SCHEDULE_OVERDUE_AFTER = BACKUP_STALE_AFTER     # the nightly run that makes that dump
SYNC_STALE_AFTER = timedelta(hours=50)          # two nightly syncs missed, with slack
DATABASE_ROWS_FAILING_FRACTION = 0.5            # live rows below this share of the newest dump's
DISK_WARN_FRACTION = 0.10                       # free share of the backups filesystem


def hours(delta: timedelta) -> int:
    """A threshold in whole hours, for messages."""
    return int(delta.total_seconds() // 3600)
