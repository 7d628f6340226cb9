"""The restore screen's Roll back on a restore that finished: a new destructive act,
confirmed by typing the database name (issue 14, item 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.tui import asynctest, wait_for
from test_tui_restore import JOB, SIZE, AliveStates, final_ok, make_app, open_restore, settings_for, write_state
from textual.widgets import Button, Input

from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs
from fovea_tui.tui.widgets.confirm import TypedConfirmDialog


def dialog_ready(pilot) -> bool:
    """The typed-name dialog is on top and drawn (its buttons mounted)."""
    screen = pilot.app.screen
    return isinstance(screen, TypedConfirmDialog) and bool(screen.query("#confirm"))


@asynctest
async def test_rolling_back_a_finished_restore_needs_the_typed_name(tmp_path, monkeypatch):
    settings = settings_for(tmp_path)
    AliveStates(monkeypatch, alive=False)
    data = final_ok(settings)
    data["ended_at"] = (datetime.now(UTC) - timedelta(hours=2, minutes=5)).isoformat(timespec="seconds")
    write_state(settings, data)
    spawned = []
    # the runner itself is exercised against real PostgreSQL in test_restore_integrity.py
    monkeypatch.setattr(jobs, "spawn", lambda s, job_id, action="run", fork=False: spawned.append((job_id, action, fork)) or 1)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_restore(pilot)
        rollback = screen.query_one("#rollback", Button)
        await wait_for(pilot, lambda: not rollback.has_class("hidden"))
        rollback.press()
        await wait_for(pilot, lambda: dialog_ready(pilot))
        dialog = pilot.app.screen
        question = str(dialog.query_one(".question").render())
        assert "2 h 5 min" in question and "fresh safety dump" in question and "'fovea'" in question
        assert dialog.query_one("#typed", Input).placeholder == "type fovea"  # never the bare name, as if typed
        go = dialog.query_one("#confirm", Button)
        await pilot.press(*"fove")
        assert go.disabled
        await pilot.press("escape")  # declined: nothing happens
        await wait_for(pilot, lambda: not isinstance(pilot.app.screen, TypedConfirmDialog))
        assert spawned == []
        assert "rollback" not in jobs.read_state(jobs.jobs_dir(settings), JOB)

        rollback.press()
        await wait_for(pilot, lambda: dialog_ready(pilot))
        await pilot.press(*"fovea")
        assert not pilot.app.screen.query_one("#confirm", Button).disabled
        await pilot.press("enter")
        await wait_for(pilot, lambda: spawned == [(JOB, "rollback", False)])
    marked = jobs.read_state(jobs.jobs_dir(settings), JOB)["rollback"]
    assert marked["after_success"] is True and "2 h 5 min" in marked["reason"]


def test_engine_refuses_a_finished_restore_without_the_name(tmp_path):
    import pytest

    from fovea_tui.errors import SafetyRefusal

    settings = settings_for(tmp_path)
    write_state(settings, final_ok(settings))
    with pytest.raises(SafetyRefusal) as info:
        engine.rollback_restore(settings, JOB, typed="wrong", detach=False)
    assert info.value.exit_code == 3 and "live" in str(info.value)
    assert "rollback" not in jobs.read_state(jobs.jobs_dir(settings), JOB)
