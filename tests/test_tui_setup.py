"""First-run setup as an operator meets it: Enter saves, skipping a found install asks first,
and the backups and off-site locations are asked for and checked before anything is saved.
Discovery is the real one: against the compose-labelled test stack, or against no engine."""

from __future__ import annotations

import stat
import tomllib

from support.tui import SIZE, asynctest, make_app, settings_in, wait_for
from textual.widgets import Button, Input, Static

from fovea_tui.config import load_file
from fovea_tui.engine.infra.targets import suggest_backups_dir
from fovea_tui.tui.screens.setup import SetupScreen
from fovea_tui.tui.widgets.confirm import ConfirmDialog


def _first_run_app(tmp_path, monkeypatch, settings=None):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    app = make_app(settings or settings_in(tmp_path), first_run=True)
    app.settings.source = None
    return app, tmp_path / "xdg" / "fovea-tui" / "config.toml"


def _no_docker(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")


def _shown(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


@asynctest
async def test_enter_right_after_open_saves(tmp_path, monkeypatch):
    _no_docker(monkeypatch)
    app, written = _first_run_app(tmp_path, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.focused is not None)
        assert isinstance(app.focused, Button) and app.focused.id == "setup-save"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert str(written) in app.screen.question
        await pilot.press("y")
        await wait_for(pilot, lambda: not isinstance(app.screen, (ConfirmDialog, SetupScreen)))
    assert load_file(written).backups.dir == str(tmp_path / "backups")
    assert app.settings.source == written.resolve()


@asynctest
async def test_skipping_a_found_install_asks_and_says_what_skipping_means(stack, tmp_path, monkeypatch):
    from fovea_tui.config import Settings

    app, written = _first_run_app(tmp_path, monkeypatch, Settings())  # built-in defaults, as on a new host
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: _shown(screen, "#found-project").startswith("found:"), 30)
        assert stack.project in _shown(screen, "#found-project")
        project = screen.query_one("#setup-project", Input).value
        assert screen.query_one("#setup-backups", Input).value == suggest_backups_dir(project)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        question = app.screen.question
        assert "built-in defaults" in question and "'fovea'" in question and "does not exist here" in question
        assert stack.project in question
        await pilot.press("enter")  # Enter by habit: back to setup, nothing skipped
        await wait_for(pilot, lambda: app.screen is screen)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: not isinstance(app.screen, (ConfirmDialog, SetupScreen)))
    assert not written.exists()
    assert app.settings.source is None


@asynctest
async def test_skipping_when_nothing_was_found_just_closes(tmp_path, monkeypatch):
    _no_docker(monkeypatch)
    app, written = _first_run_app(tmp_path, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "no compose project found" in _shown(screen, "#found-project"))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, SetupScreen))
        assert not isinstance(app.screen, ConfirmDialog)
    assert not written.exists()


@asynctest
async def test_locations_are_asked_checked_and_an_unwritable_one_is_refused(tmp_path, monkeypatch, read_only_dir):
    _no_docker(monkeypatch)
    app, written = _first_run_app(tmp_path, monkeypatch)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        await wait_for(pilot, lambda: "exists" in _shown(screen, "#setup-backups-check")
                       or "created" in _shown(screen, "#setup-backups-check"))
        assert "empty: no off-site copy" in _shown(screen, "#setup-offsite-check")
        screen.query_one("#setup-backups", Input).value = str(read_only_dir / "backups")
        await wait_for(pilot, lambda: "Read-only file system" in _shown(screen, "#setup-backups-check"))
        assert _shown(screen, "#setup-backups-check").startswith("refused: cannot be created in")
        screen.query_one("#setup-offsite", Input).value = "s3://Not_A_Bucket/x/"
        await wait_for(pilot, lambda: "is not a bucket name" in _shown(screen, "#setup-offsite-check"))
        screen.query_one("#setup-save", Button).focus()
        await wait_for(pilot, lambda: app.focused is screen.query_one("#setup-save", Button))  # focus() lands on a refresh
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(n.title == "Not saved" for n in app._notifications))
        note = next(n for n in app._notifications if n.title == "Not saved")
        assert note.message.startswith("backups.dir: cannot be created in") and "Read-only file system" in note.message
        assert isinstance(app.screen, SetupScreen) and app.focused.id == "setup-backups"
        # fixed: a new directory, an S3 URL of the right shape, a directory target
        screen.query_one("#setup-backups", Input).value = str(tmp_path / "srv" / "backups")
        screen.query_one("#setup-offsite", Input).value = "s3://fovea-offsite/prod/"
        screen.query_one("#setup-target", Input).value = str(tmp_path / "disk" / "videos")
        await wait_for(pilot, lambda: "shape checked" in _shown(screen, "#setup-offsite-check")
                       and "created (0700)" in _shown(screen, "#setup-target-check"))
        await pilot.press("ctrl+s")  # the save key, from whatever field has focus
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: not isinstance(app.screen, (ConfirmDialog, SetupScreen)))
    saved = tomllib.loads(written.read_text())
    assert saved["backups"] == {"dir": str(tmp_path / "srv" / "backups"), "offsite": "s3://fovea-offsite/prod/"}
    assert saved["volume"]["target"] == str(tmp_path / "disk" / "videos")
    assert not (tmp_path / "disk").exists()  # checked, not made: the first sync makes it
    assert stat.S_IMODE((tmp_path / "srv" / "backups").stat().st_mode) == 0o700  # the audit of the save made it


@asynctest
async def test_a_target_inside_the_volume_is_refused_on_save(tmp_path, monkeypatch):
    _no_docker(monkeypatch)
    app, written = _first_run_app(tmp_path, monkeypatch)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen))
        screen = app.screen
        screen.query_one("#setup-volume", Input).value = str(tmp_path / "videos")
        screen.query_one("#setup-target", Input).value = str(tmp_path / "videos" / "copy")
        await wait_for(pilot, lambda: "overlaps volume.path" in _shown(screen, "#setup-target-check"))
        screen.action_save()
        await wait_for(pilot, lambda: any(n.title == "Not saved" for n in app._notifications))
        assert not isinstance(app.screen, ConfirmDialog)
    assert not written.exists()
