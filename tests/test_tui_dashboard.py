"""Dashboard verdicts (pure model) and what the dashboard screen shows (Pilot)."""

from __future__ import annotations

import copy
from datetime import timedelta

from support.tui import SIZE, asynctest, make_app, settings_in, wait_for

from fovea_tui.engine.ops.status import BackupsSection, DatabaseSection, StackSection, SyncSection, judge
from fovea_tui.tui import model
from fovea_tui.tui.sample import SAMPLE_NOW, sample_report


def _cards(report, now=SAMPLE_NOW):
    """The cards of `report` after the engine judged its (edited) facts again."""
    return {c.key: c for c in model.cards(judge(report, now), now)}


def test_cards_follow_the_runbook_table():
    cards = _cards(sample_report())
    assert list(cards) == ["database", "volume", "env_file", "model_cache", "redis", "drill"]
    assert cards["database"].verdict == "fine"
    assert "7 hours ago" in " ".join(cards["database"].lines)
    assert "verified" in " ".join(cards["database"].lines)
    assert cards["volume"].verdict == "stale"          # synced three days ago
    assert cards["env_file"].verdict == "fine"
    assert cards["drill"].verdict == "missing"         # never drilled
    assert "2 jobs active" in " ".join(cards["redis"].lines)
    assert all(c.cost for c in cards.values())


def test_old_backup_is_stale_and_unreachable_database_is_failing():
    report = sample_report()
    report.backups.last.time = SAMPLE_NOW - timedelta(days=3)
    assert _cards(report)["database"].verdict == "stale"
    assert _cards(report)["env_file"].verdict == "stale"
    report.database = DatabaseSection(ok=False, error="connection refused")
    card = _cards(report)["database"]
    assert card.verdict == "failing" and "connection refused" in card.lines[0]


def test_no_backup_and_no_sync_target_are_missing():
    report = sample_report()
    report.backups = BackupsSection(dir="/b", count=0, last=None, summary="no backup in /b")
    report.volume.target = None
    report.sync = SyncSection(target=None, last=None, summary="no volume.target configured")
    cards = _cards(report)
    assert cards["database"].verdict == "missing"
    assert cards["volume"].verdict == "missing"
    assert "no copy" in " ".join(cards["volume"].lines)


def test_corrupt_last_dump_and_world_readable_env():
    report = sample_report()
    report.backups.last.status = "corrupt"
    report.env_file.world_readable = True
    cards = _cards(report)
    assert cards["database"].verdict == "failing"
    assert cards["env_file"].verdict == "stale"
    assert any("chmod 600" in line for line in cards["env_file"].lines)


def test_stack_caption():
    caption, services = model.services(sample_report())
    assert caption == "compose project fovea" and len(services) == 5
    report = sample_report()
    report.stack = StackSection(managed=False, reason="no Docker engine answers")
    assert model.services(report)[0].startswith("stack not managed")


@asynctest
async def test_dashboard_shows_cards_services_and_alerts(tmp_path):
    app = make_app(settings_in(tmp_path), status_source=lambda s, now: sample_report(now, healthy=False))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.status is not None)
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#card-database").has_class("-fine")
        assert screen.query_one("#card-volume").has_class("-stale")
        assert screen.query_one("#card-drill").has_class("-missing")
        table = screen.query_one("#services")
        assert table.row_count == 5
        alerts = str(screen.query_one("#alerts").render())
        assert "service backend is unhealthy" in alerts
        assert alerts.index("CRITICAL") < alerts.index("WARNING")


@asynctest
async def test_stack_events_update_the_service_table(tmp_path):
    from fovea_tui.tui.app import StackServices

    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.status is not None)
        services = copy.deepcopy(app.status.stack.services)
        services[0]["state"] = "exited"
        app.post_message(StackServices(app._events, services, True))  # no watcher here: None
        await pilot.pause(0.1)
        table = app.screen.query_one("#services")
        assert str(table.get_row("postgres")[1]) == "exited"
        assert app.stack_watch == "live"
        await pilot.pause(1.1)
        assert "live events" in str(app.screen.query_one("#statusline").render())


@asynctest
async def test_dashboard_is_usable_at_80x24(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.status is not None)
        await pilot.pause()
        assert app.screen.has_class("-narrow") or app.has_class("-narrow")
        body = app.screen.query_one("#body")
        body.scroll_end(animate=False)
        await pilot.pause()
        assert body.max_scroll_y > 0  # everything is reachable by scrolling


