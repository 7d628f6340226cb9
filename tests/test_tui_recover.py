"""The TUI's side of encryption and recovery: the first-run setup offers "Recover this install
from an off-site copy" (a wizard over `engine.drill.recover`, on a real encrypted backup in a
directory target) and a key; Settings generates a key into the form."""

from __future__ import annotations

import json
import subprocess
import sys

from support.tui import SIZE, asynctest, make_app, settings_in, wait_for
from test_backup_helpers import direct_config, settings_and_config, write_env
from textual.widgets import Button, DataTable, Input, Static

from fovea_tui.config import load_file
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.tui.screens import setup as setup_screen
from fovea_tui.tui.screens.recover import RecoverScreen
from fovea_tui.tui.screens.settings import SettingsScreen, field_id
from fovea_tui.tui.widgets.confirm import ConfirmDialog


def _lost_host(tmp_path, db):
    """An install whose backups go, encrypted, to a directory: the copy a new host starts from."""
    env_file, _values = write_env(tmp_path / "old")
    out = tmp_path / "kept-away.txt"
    made = subprocess.run([sys.executable, "-m", "fovea_tui", "keygen", "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=60, check=True)
    offsite = tmp_path / "offsite"
    offsite.mkdir()
    data = direct_config(tmp_path / "old", db.url, env_file, backups={"offsite": str(offsite)},
                         encryption={"recipients": [json.loads(made.stdout)["recipient"]]})
    settings, _cfg = settings_and_config(tmp_path / "old", data)
    return run_backup(settings), offsite, out, env_file


@asynctest
async def test_first_run_setup_offers_recovery_and_the_wizard_recovers(fresh_direct_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    result, offsite, identity, env_file = _lost_host(tmp_path, fresh_direct_db)
    monkeypatch.setattr(setup_screen, "discover", lambda backend_service="backend": setup_screen.Discovery(
        engine="no Docker here"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    new_dir = tmp_path / "new-host" / "backups"
    app = make_app(settings_in(tmp_path / "new-host"), first_run=True)
    app.settings.source = None
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, setup_screen.SetupScreen)
                       and app.screen.query("#setup-recover"))
        app.screen.query_one("#setup-recover", Button).press()
        await wait_for(pilot, lambda: isinstance(app.screen, RecoverScreen) and app.screen.query("#rec-url"))
        screen = app.screen
        screen.query_one("#rec-url", Input).value = str(offsite)
        screen.query_one("#rec-identity", Input).value = str(identity)
        assert screen.query_one("#rec-dir", Input).value == str(new_dir)
        screen.action_list()
        await wait_for(pilot, lambda: result.name in str(screen.query_one("#rec-list", Static).render()))
        assert "encrypted" in str(screen.query_one("#rec-list", Static).render())
        await wait_for(pilot, lambda: not screen.query_one("#rec-go", Button).disabled)
        screen.action_recover()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: not screen.query_one("#rec-restore", Button).disabled, timeout=120)
        log = str(screen.query_one("#rec-log", Static).render())
        assert "config written" in log and "SESSION_SECRET" in log
        screen.query_one("#rec-restore", Button).press()
        # the guided restore takes over, and offers the dump just fetched and verified
        await wait_for(pilot, lambda: app.current_mode == "restore" and app.screen.query("#dumps")
                       and app.screen.query_one("#dumps", DataTable).row_count > 0, timeout=60)
        table = app.screen.query_one("#dumps", DataTable)
        assert any(result.name in str(cell) for row in range(table.row_count) for cell in table.get_row_at(row))
    written = load_file(tmp_path / "xdg" / "fovea-tui" / "config.toml")
    assert written.backups.offsite == str(offsite) and written.backups.dir == str(new_dir)
    assert written.encryption.identity_file == str(identity)
    fetched = new_dir / result.name
    assert fetched.read_bytes() == result.path.read_bytes()
    assert (new_dir / result.name.replace(".sql.gz", ".env")).read_bytes() == env_file.read_bytes()


@asynctest
async def test_settings_generates_a_key_into_the_form(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "fovea-tui.toml"
    config.write_text('[backups]\ndir = "%s"\n' % (tmp_path / "b"))
    app = make_app(settings_in(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        app.settings = load_file(config)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        await pilot.pause()
        screen = app.screen
        screen.query_one("#keygen", Button).press()
        field = screen.query_one(f"#{field_id('encryption.recipients')}", Input)
        await wait_for(pilot, lambda: field.value.startswith("age1"))
        key = tmp_path / "xdg" / "fovea-tui" / "age-identity.txt"
        assert screen.query_one(f"#{field_id('encryption.identity_file')}", Input).value == str(key)
        assert oct(key.stat().st_mode & 0o777) == "0o600"
        screen.action_save()
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: not isinstance(app.screen, ConfirmDialog))
    saved = load_file(config)
    assert saved.encryption.recipients == [field.value] and saved.encryption.identity_file == str(key)
