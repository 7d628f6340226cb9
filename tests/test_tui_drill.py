"""The Drill screen: Pilot tests (a real drill in direct mode, checks landing live, cancel)
and a snapshot of the last drill's report with a frozen clock."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.tui import asynctest, make_app, settle, wait_for
from test_drill import install, scratch_databases  # noqa: F401 - the `install` fixture
from textual.widgets import DataTable, Static

from fovea_tui.config import Settings
from fovea_tui.engine.drill.result import CHECK_ORDER, CHECK_TITLES
from fovea_tui.tui.sample import SAMPLE_NOW
from fovea_tui.tui.screens.drill import DrillScreen

SIZE = (160, 45)
DRILL_SECONDS = 60.0  # a real drill restores a whole dump into a scratch database


def rows(screen: DrillScreen) -> dict[str, tuple[str, str]]:
    table = screen.query_one("#checks", DataTable)
    return {str(k.value): (str(table.get_row(k)[1]), str(table.get_row(k)[2])) for k in table.rows}


async def open_drill(pilot, app) -> DrillScreen:
    await pilot.press("D")
    await wait_for(pilot, lambda: isinstance(app.screen, DrillScreen), timeout=DRILL_SECONDS)
    await settle(pilot, timeout=DRILL_SECONDS)
    return app.screen


@asynctest
async def test_run_a_drill_from_the_screen(install):  # noqa: F811
    app = make_app(install.settings, now=datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_drill(pilot, app)
        caption = str(screen.query_one("#caption", Static).render())
        assert "No restore drill on record" in caption
        guide = str(screen.query_one("#guide", Static).render())
        assert "fovea-tui sync --pull" in guide
        await wait_for(pilot, lambda: f"fovea-tui restore {install.dump.name}" in str(
            screen.query_one("#guide", Static).render()), timeout=DRILL_SECONDS)

        await pilot.press("g")
        await wait_for(pilot, lambda: app.jobs.running_kind("drill") is not None or screen.live,
                       timeout=DRILL_SECONDS)
        # the check list starts as pending rows and fills in as checks land
        await wait_for(pilot, lambda: "dump" in screen.live, timeout=DRILL_SECONDS)
        await wait_for(pilot, lambda: screen.job is not None and not screen.job.running, timeout=DRILL_SECONDS)
        await settle(pilot, timeout=DRILL_SECONDS)  # the screen reloads once the job's end reaches it
        assert screen.job.state == "finished", screen.job.error
        seen = rows(screen)
        assert list(seen) == CHECK_ORDER
        assert all(result.startswith("✔") for result, _ in seen.values()), seen
        caption = str(screen.query_one("#caption", Static).render())
        assert "PASSED" in caption and "RTO" in caption and "every 30 days" in caption
        assert scratch_databases(lambda sql: install.db.cluster.psql(sql, "postgres")) == []
        assert list((install.settings.state_dir / "drills").glob("drill-*.md"))


@asynctest
async def test_cancel_from_the_screen_drops_the_scratch_database(install, monkeypatch):  # noqa: F811
    import fovea_tui.engine.restore.steps as steps

    real = steps.stream_dump

    def slow(ctx, path, database):
        # hold the restore until the operator cancels, like a big dump would
        while not ctx.cancel.cancelled:
            ctx.cancel.wait(0.05)
        return real(ctx, path, database)

    import fovea_tui.engine.drill.run as drill_run

    monkeypatch.setattr(drill_run, "stream_dump", slow)  # the drill imports the restore's stream_dump by name
    app = make_app(install.settings, now=datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_drill(pilot, app)
        await pilot.press("g")
        psql = lambda sql: install.db.cluster.psql(sql, "postgres")  # noqa: E731
        await wait_for(pilot, lambda: len(scratch_databases(psql)) == 1, timeout=DRILL_SECONDS)
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.job is not None and not screen.job.running, timeout=DRILL_SECONDS)
        await settle(pilot, timeout=DRILL_SECONDS)
        assert screen.job.state == "cancelled"
        assert scratch_databases(psql) == []
        assert "cancelled" in str(screen.query_one("#caption", Static).render())


def _report_settings(tmp_path: Path) -> Settings:
    settings = Settings()
    settings.backups.dir = str(tmp_path / "backups")
    settings.backups.offsite = "s3://fovea-backups/nightly/"
    settings.volume.target = "s3://fovea-videos/volume/"
    settings.source = Path("/etc/fovea-tui/config.toml")
    directory = settings.state_dir / "drills"
    directory.mkdir(parents=True)
    started = SAMPLE_NOW - timedelta(days=12, hours=3)
    checks = []
    details = {
        "dump": "fovea-20260101T020000Z.sql.gz (fetched from off-site): whole gzip stream, completion line, size and sha256 as in the manifest",
        "restore": "restored into fovea_drill_20260101_051500 (one transaction; the live database untouched)",
        "rows": "13 tables, 2412 rows, as in the manifest",
        "migrations": "4 migrations recorded, as in the manifest",
        "env_copy": "fovea-20260101T020000Z.env off-site: SESSION_SECRET, DATABASE_URL, API_KEY_ENCRYPTION_KEY present",
        "videos": "1 of 20 referenced videos missing from s3://fovea-videos/volume/: clips/a-0007.mp4 (run `fovea-tui sync`)",
        "cleanup": "scratch database fovea_drill_20260101_051500 dropped",
    }
    for name in CHECK_ORDER:
        ok = name != "videos"
        checks.append({"name": name, "ok": ok, "status": "ok" if ok else "failed", "detail": details[name],
                       "title": CHECK_TITLES[name]})
    data = {"ok": False, "dump": "fovea-20260101T020000Z.sql.gz", "dump_key": "fovea-20260101T020000Z.sql.gz",
            "env_key": "fovea-20260101T020000Z.env", "source": "offsite", "rto_s": 48.2, "rpo_s": 11700.0,
            "checks": checks, "failed": ["videos"], "started_at": started.isoformat(),
            "finished_at": (started + timedelta(seconds=61)).isoformat()}
    (directory / f"drill-{started.strftime('%Y%m%dT%H%M%SZ')}.json").write_text(json.dumps(data))
    return settings


@asynctest
async def test_last_report_is_shown_with_its_failed_check(tmp_path):
    settings = _report_settings(tmp_path)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_drill(pilot, app)
        seen = rows(screen)
        assert seen["videos"][0].startswith("✘") and "clips/a-0007.mp4" in seen["videos"][1]
        caption = str(screen.query_one("#caption", Static).render())
        assert "FAILED (videos)" in caption and "RTO 48.2 s" in caption
        guide = str(screen.query_one("#guide", Static).render())
        assert "aws s3 cp s3://fovea-backups/nightly/fovea-20260101T020000Z.env /opt/fovea/.env" in guide
        assert "fovea-tui restore fovea-20260101T020000Z.sql.gz" in guide


def test_drill_screen_snapshot(snap_compare, tmp_path):
    settings = _report_settings(tmp_path)
    app = make_app(settings)

    async def run_before(pilot):
        await wait_for(pilot, lambda: pilot.app.status is not None)
        await pilot.press("D")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DrillScreen))
        await settle(pilot)
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=(140, 40), run_before=run_before)
