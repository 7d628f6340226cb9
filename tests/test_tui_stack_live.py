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


@asynctest
async def test_the_watcher_follows_a_project_changed_in_settings(stack, tmp_path):
    """Settings named the wrong project; the operator fixes it on the settings screen: the
    live events now come from the new project, with no poll at all to fall back on."""
    from textual.widgets import Input

    from fovea_tui.config import save_settings
    from fovea_tui.tui.screens.settings import SettingsScreen
    from fovea_tui.tui.widgets.confirm import ConfirmDialog

    settings = stack.settings(tmp_path, install={"compose_project": "fovea-not-here"})
    save_settings(settings, tmp_path / "fovea-tui.toml")
    app = make_app(settings, status_source=lambda s, when: collect_status(s, when), watch_stack=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.stack_watch == "live" and app.status is not None, 60)
            assert _service_state(app, "frontend") is None  # the wrong project has no services
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
            app.screen.query_one("#f-install--compose_project", Input).value = stack.project
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "running", 60)
            await wait_for(pilot, lambda: app.stack_watch == "live" and app._events.project == stack.project
                           and not [w for w in app.workers if w.group == "status" and w.is_running], 30)
            stack.container("frontend").stop(timeout=5)
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "exited", 30)
    finally:
        stack.ensure_running()


@asynctest
async def test_the_watcher_follows_the_project_saved_by_first_run_setup(stack, tmp_path, monkeypatch):
    """First run on defaults (a project that is not here); setup saves the real one: its
    container events show at once."""
    from textual.widgets import Input

    from fovea_tui.tui.screens.setup import SetupScreen
    from fovea_tui.tui.widgets.confirm import ConfirmDialog

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    settings = stack.settings(tmp_path, install={"compose_project": "fovea-not-here"})
    app = make_app(settings, status_source=lambda s, when: collect_status(s, when), watch_stack=True,
                   first_run=True)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.stack_watch == "live", 60)
            screen = app.screen
            await wait_for(pilot, lambda: "found" in str(screen.query_one("#found-project").render()), 30)
            screen.query_one("#setup-project", Input).value = stack.project  # this host runs several stacks
            screen.query_one("#setup-env", Input).value = str(stack.env_file)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), 30)
            await pilot.press("y")
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "running", 60)
            await wait_for(pilot, lambda: app._events.project == stack.project
                           and not [w for w in app.workers if w.group == "status" and w.is_running], 30)
            stack.container("frontend").stop(timeout=5)
            await wait_for(pilot, lambda: _service_state(app, "frontend") == "exited", 30)
    finally:
        stack.ensure_running()
