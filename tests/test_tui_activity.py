"""The activity screen reads the audit log directly and tolerates its absence."""

from __future__ import annotations

import json

from support.tui import SIZE, asynctest, make_app, settings_in, wait_for

from fovea_tui.tui.screens.activity import ActivityScreen, read_audit


def test_read_audit_newest_first_skipping_bad_lines(tmp_path):
    path = tmp_path / "audit.jsonl"
    path.write_text(
        json.dumps({"time": "2026-06-01T02:15:00+00:00", "action": "backup", "outcome": "ok"}) + "\n"
        + "not json\n\n"
        + json.dumps({"time": "2026-06-02T02:15:00+00:00", "action": "prune", "outcome": "failed"}) + "\n"
        + "[1, 2]\n")
    entries, bad = read_audit(path)
    assert [e["action"] for e in entries] == ["prune", "backup"]
    assert bad == 2
    assert read_audit(tmp_path / "absent.jsonl") == ([], 0)


@asynctest
async def test_activity_screen_lists_entries_and_follows_new_ones(tmp_path):
    app = make_app(settings_in(tmp_path))
    state = app.settings.state_dir
    state.mkdir(parents=True)
    log = state / "audit.jsonl"
    log.write_text(json.dumps({"time": "2026-06-01T02:15:00+00:00", "action": "backup", "outcome": "ok",
                               "details": {"dump": "fovea-20260601T021500Z.sql.gz"}}) + "\n")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, ActivityScreen))
        table = app.screen.query_one("#log")
        await wait_for(pilot, lambda: table.row_count == 1)
        assert "fovea-20260601T021500Z.sql.gz" in str(app.screen.query_one("#detail").render())
        with log.open("a") as fh:
            fh.write(json.dumps({"time": "2026-06-02T02:15:00+00:00", "action": "sync", "outcome": "failed",
                                 "details": {"error": "store unreachable"}}) + "\n")
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: table.row_count == 2)
        assert str(table.get_row_at(0)[2]) == "sync"


@asynctest
async def test_activity_without_a_log_says_so(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        await wait_for(pilot, lambda: "does not exist yet" in str(app.screen.query_one("#caption").render()))
