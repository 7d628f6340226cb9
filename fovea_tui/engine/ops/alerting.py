"""Alerting as cron runs it: the nightly run and `status`, each followed by the alerts that
are new today, and the install-time test of every channel and ping (`notify test`).

Here, above both: status reads the nightly run's record (through the schedule card) and
the drill's, so neither the nightly run nor `notify` can import status themselves.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fovea_tui import __version__
from fovea_tui.config import Settings
from fovea_tui.engine.ops import monitor, nightly, notify
from fovea_tui.engine.ops.status import StatusReport, collect_status
from fovea_tui.engine.progress import CancelToken, ProgressCallback, no_progress
from fovea_tui.errors import ConfigError

log = logging.getLogger(__name__)


def check_status_alerts(settings: Settings, *, report: StatusReport | None = None,
                        now: datetime | None = None) -> notify.AlertsOutcome:
    """Compute status (unless given) and send its alerts that are new today; nothing at all
    without `notify.urls`. Never raises: a probe's bug is a warning, not a lost run."""
    if not settings.notify.urls:
        return notify.AlertsOutcome()
    if report is None:
        try:
            report = collect_status(settings, now)
        except Exception as exc:  # noqa: BLE001 - a probe's bug must not cost the run that asked
            error = notify.scrub(f"{type(exc).__name__}: {exc}")
            log.warning("status for alerts not computed: %s", error)
            return notify.AlertsOutcome(error=error)
    return notify.send_alerts(settings, notify.alerts_from_status(report.alerts), now=now)


def run_nightly(settings: Settings, progress: ProgressCallback = no_progress, cancel: CancelToken | None = None,
                **options: Any) -> nightly.NightlyResult:
    """What `run-nightly` does: the run (pings, record, notifications), then the status
    alerts that are new today (unless notifications are off)."""
    result = nightly.run_nightly(settings, progress, cancel, **options)
    if options.get("send_notifications", True):
        result.alerts = check_status_alerts(settings, now=result.finished_at).as_dict()
    return result


@dataclass
class TestReport:
    """`fovea-tui notify test`: one outcome per webhook, Apprise URL and ping URL."""

    deliveries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d["ok"] for d in self.deliveries)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "host": notify.host_name(), "deliveries": self.deliveries}


def run_test(settings: Settings, *, warn: Callable[[str], None] | None = None) -> TestReport:
    """Send one test message to every configured channel and ping every monitor URL.

    Raises ConfigError (exit 2) when nothing is configured: there is nothing to test."""
    if not (settings.notify.webhooks or settings.notify.urls or any(vars(settings.monitor).values())):
        raise ConfigError("nothing to test: notify.urls, notify.webhooks and monitor.ping_url are all empty",
                          key="notify.urls", hint="add an Apprise URL to notify.urls or a ping URL to monitor.ping_url")
    host = notify.host_name()
    text = f"fovea-tui notify test from {host}: if you read this, alerts from this host reach you."
    payload = {"source": "fovea-tui", "event": "test", "ok": True, "host": host, "text": text,
               "tool_version": __version__}
    report = TestReport()
    report.deliveries += notify.deliver(settings, notify.Message(f"fovea-tui on {host}: test message",
                                                                 text + "\n\nNext: nothing to do.", payload=payload),
                                        warn=warn or (lambda message: None))
    report.deliveries += monitor.send_test_pings(settings)
    return report
