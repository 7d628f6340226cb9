"""The dashboard's stack panel follows Docker events from the real compose-labelled stack:
a service stopped outside fovea-tui shows as stopped without a keypress or a poll."""

from __future__ import annotations

from support.tui import SIZE, asynctest, make_app, wait_for

from fovea_tui.engine.ops.status import collect_status


def _service_state(app, name: str) -> str | None:
    services = app.status.stack.services if app.status else []
    return next((s["state"] for s in services if s["name"] == name), None)


@asynctest
async def test_a_stopped_service_shows_up_live(stack, tmp_path):
    settings = stack.settings(tmp_path)
    # One real status collection at start, then no polling: only events can change it.
    app = make_app(settings, status_source=lambda s, when: collect_status(s, when), watch_stack=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "running" and app.stack_watch == "live", 60)
            stack.container("frontend").stop(timeout=5)
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "exited", 30)
            stack.container("frontend").start()
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "running", 30)
    finally:
        stack.ensure_running()
