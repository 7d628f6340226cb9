"""Settings form: every key, inline errors naming the key, diff before saving; first-run setup."""

from __future__ import annotations

import tomllib
from dataclasses import fields

from support.tui import SIZE, asynctest, make_app, settings_in, wait_for
from textual.widgets import Input, Select, Switch

from fovea_tui.config import SECTIONS, load_file, save_settings
from fovea_tui.tui.screens import setup as setup_screen
from fovea_tui.tui.screens.settings import SettingsScreen, field_id
from fovea_tui.tui.widgets.confirm import ConfirmDialog


async def _open_settings(app, pilot, config):
    app.settings = load_file(config)
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
    await pilot.pause()
    return app.screen


def _config(tmp_path):
    path = tmp_path / "fovea-tui.toml"
    path.write_text('[backups]\ndir = "%s"\n' % (tmp_path / "b"))
    return path


@asynctest
async def test_form_has_every_key_of_the_contract(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_settings(app, pilot, _config(tmp_path))
        for section, cls in SECTIONS.items():
            for f in fields(cls):
                assert screen.query_one(f"#{field_id(section + '.' + f.name)}")
        assert screen.query_one("#f-backups--dir", Input).value == str(tmp_path / "b")
        assert screen.query_one("#f-database--mode", Select).value == "docker"
        assert screen.query_one("#f-stack--migrate_command", Input).value == "npx prisma migrate deploy"


@asynctest
async def test_invalid_value_is_shown_inline_naming_the_key(tmp_path):
    config = _config(tmp_path)
    before = config.read_text()
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_settings(app, pilot, config)
        screen.query_one("#f-retention--timezone", Input).value = "Mars/Olympus_Mons"
        await pilot.press("ctrl+s")
        await pilot.pause()
        error = screen.query_one("#err-f-retention--timezone")
        assert error.has_class("-shown")
        assert "retention.timezone" in str(error.render())
        assert not isinstance(app.screen, ConfirmDialog)
        screen.query_one("#f-retention--timezone", Input).value = ""
        screen.query_one("#f-volume--max_delete_percent", Input).value = "250"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "volume.max_delete_percent" in str(screen.query_one("#err-f-volume--max_delete_percent").render())
        assert not screen.query_one("#err-f-retention--timezone").has_class("-shown")
    assert config.read_text() == before


@asynctest
async def test_save_shows_the_diff_then_writes_the_file(tmp_path):
    config = _config(tmp_path)
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_settings(app, pilot, config)
        screen.query_one("#f-retention--keep_daily", Input).value = "30"
        screen.query_one("#f-volume--delete", Switch).value = True
        screen.query_one("#f-notify--webhooks", Input).value = "https://hooks.example/a https://hooks.example/b"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        dialog = app.screen
        assert "-keep_daily = 14" in dialog.diff and "+keep_daily = 30" in dialog.diff
        assert "+delete = true" in dialog.diff
        await pilot.press("n")  # cancel: nothing written
        assert "keep_daily" not in config.read_text()
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.settings.retention.keep_daily == 30)
    data = tomllib.loads(config.read_text())
    assert data["retention"]["keep_daily"] == 30
    assert data["volume"]["delete"] is True
    assert data["notify"]["webhooks"] == ["https://hooks.example/a", "https://hooks.example/b"]
    assert load_file(config).retention.keep_daily == 30


@asynctest
async def test_nothing_changed_is_said_not_saved(tmp_path):
    config = _config(tmp_path)
    save_settings(load_file(config), config)
    mtime = config.stat().st_mtime_ns
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await _open_settings(app, pilot, config)
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDialog)
        assert any("Nothing changed" in n.message for n in app._notifications)
    assert config.stat().st_mtime_ns == mtime


@asynctest
async def test_escape_leaves_a_field_then_the_screen(tmp_path):
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        screen = await _open_settings(app, pilot, _config(tmp_path))
        screen.query_one("#f-install--compose_project", Input).focus()
        await pilot.press("d")  # typed, not navigation
        assert app.current_mode == "settings"
        assert screen.query_one("#f-install--compose_project", Input).value.endswith("d")
        await pilot.press("escape")
        assert app.current_mode == "settings" and app.focused is None
        await pilot.press("escape")  # the typed "d" is not saved: leaving asks before dropping it
        from fovea_tui.tui.widgets.confirm import ConfirmDialog

        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.current_mode == "dashboard")


@asynctest
async def test_first_run_setup_offers_what_discovery_found(tmp_path, monkeypatch):
    env = tmp_path / "srv" / ".env"
    env.parent.mkdir()
    env.write_text("DATABASE_URL=postgresql://fovea:x@postgres:5432/fovea\n")

    def fake_discover(backend_service="backend"):
        return setup_screen.Discovery(projects={"fovea-prod": str(env.parent)}, env_files=[str(env)],
                                      volume_paths=["/srv/fovea/videos"], has_postgres={"fovea-prod": True})

    monkeypatch.setattr(setup_screen, "discover", fake_discover)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    app = make_app(settings_in(tmp_path), first_run=True)
    app.settings.source = None
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, setup_screen.SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: screen.query_one("#setup-project", Input).value == "fovea-prod")
        assert screen.query_one("#setup-env", Input).value == str(env)
        assert screen.query_one("#setup-volume", Input).value == "/srv/fovea/videos"
        screen.action_save()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: not isinstance(app.screen, (ConfirmDialog, setup_screen.SetupScreen)))
    written = tmp_path / "xdg" / "fovea-tui" / "config.toml"
    saved = load_file(written)
    assert saved.install.compose_project == "fovea-prod"
    assert saved.volume.path == "/srv/fovea/videos"


def test_discover_without_docker_still_finds_nothing_gracefully(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    found = setup_screen.discover()
    assert found.engine  # says why
    assert found.projects == {}


@asynctest
async def test_test_alerts_sends_what_the_form_holds_and_shows_each_outcome_masked(tmp_path):
    from support.receivers import HttpReceiver, free_port

    receiver = HttpReceiver()
    dead = f"http://127.0.0.1:{free_port()}/ping/dead-check-secret-1"
    config = _config(tmp_path)
    before = config.read_text()
    app = make_app(settings_in(tmp_path))
    try:
        async with app.run_test(size=SIZE) as pilot:
            screen = await _open_settings(app, pilot, config)
            result = screen.query_one("#notify-result")
            await pilot.press("ctrl+t")  # nothing configured yet: said, nothing sent
            await wait_for(pilot, lambda: "notify.urls" in str(result.render()))
            assert result.has_class("-failed")
            screen.query_one("#f-notify--urls", Input).value = receiver.url("/apprise/form-token-77", scheme="json")
            screen.query_one("#f-monitor--ping_url", Input).value = dead
            await pilot.press("ctrl+t")
            await wait_for(pilot, lambda: "Test alerts:" in str(result.render()), timeout=30)
            shown = str(result.render())
    finally:
        receiver.close()
    assert "Test alerts: 1 of 2 FAILED" in shown
    assert f"apprise       json://127.0.0.1:{receiver.port}/••••••: delivered" in shown
    assert "ping success  http://127.0.0.1:" in shown and "FAILED after" in shown
    assert "form-token-77" not in shown and "dead-check-secret-1" not in shown
    assert [r.path for r in receiver.requests] == ["/apprise/form-token-77"]
    assert config.read_text() == before  # testing saves nothing
