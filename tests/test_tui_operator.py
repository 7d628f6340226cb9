"""What an operator under stress relies on (Pilot): dialogs that default to Cancel, a cursor that
stays on the dump chosen, outcomes that say FAILED and why, keys and actions that can be found,
a restore that is never left behind unseen, and an audit log of every change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from support import tui as support_tui
from support.backup_history import History, make_settings
from support.tui import all_rows_shown, asynctest, settle, wait_for
from textual.widgets import DataTable, Static

from fovea_tui.config import BackupSettings, Settings, VolumeSettings
from fovea_tui.engine.infra import audit, jobs
from fovea_tui.engine.ops.status import RestoreSection
from fovea_tui.engine.volume.sync import run_sync
from fovea_tui.tui.screens import backups as backups_screen
from fovea_tui.tui.screens.backups import BackupsScreen
from fovea_tui.tui.screens.help import HelpScreen
from fovea_tui.tui.screens.retention import RetentionScreen
from fovea_tui.tui.widgets.confirm import ConfirmDialog

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
SIZE = (120, 36)


def make_app(settings, **kw):
    return support_tui.make_app(settings, now=NOW, **kw)


def text(widget) -> str:
    return str(widget.render())


# ------------------------------------------------------------------ destructive dialogs default to Cancel


@asynctest
async def test_enter_on_the_prune_dialog_cancels(tmp_path):
    """`p` then Enter by habit must not delete anything: the dialog's default is Cancel."""
    settings = make_settings(tmp_path, keep_daily=2)
    h = History(settings)
    for i in range(6):
        h.add(T0 + timedelta(days=i))
    before = sorted(p.name for p in settings.backups_dir.iterdir())
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await wait_for(pilot, lambda: isinstance(app.screen, RetentionScreen) and app.screen.prune_plan is not None)
        await pilot.press("p")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert app.focused is app.screen.query_one("#cancel")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RetentionScreen))
        await pilot.pause(0.3)
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == before


@asynctest
async def test_every_confirm_dialog_focuses_cancel(tmp_path):
    app = make_app(make_settings(tmp_path))
    answers = []
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(ConfirmDialog("Pull into the live volume?", confirm_label="Pull"), answers.append)
        await pilot.pause(0.1)
        assert app.focused.id == "cancel"
        await pilot.press("enter")
        await pilot.pause(0.1)
        app.push_screen(ConfirmDialog("Again?"), answers.append)
        await pilot.pause(0.1)
        await pilot.press("y")  # the way to go ahead: a deliberate key
        await pilot.pause(0.1)
    assert answers == [False, True]


# ------------------------------------------------------------------ Backups: the cursor stays on the dump chosen


@asynctest
async def test_sort_and_refresh_keep_the_chosen_dump_and_x_verifies_it(tmp_path, monkeypatch):
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0.2)
    settings = make_settings(tmp_path)
    h = History(settings)
    for i in range(6):
        h.add(T0 + timedelta(days=i), verify=i % 2 == 0)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BackupsScreen) and all_rows_shown(app.screen))
        screen = app.screen
        table = screen.query_one("#inventory", DataTable)
        table.focus()
        await pilot.press("down", "down")
        await pilot.pause(0.1)
        chosen = str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        assert chosen == "fovea-20261104T020000Z.sql.gz"

        def on_chosen() -> bool:
            key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
            return key == chosen and chosen in text(screen.query_one("#detail", Static)).splitlines()[0]

        for key in ("o", "i", "o", "i"):  # sort by status, reverse, by age, reverse
            await pilot.press(key)
            await pilot.pause(0.1)
            assert on_chosen(), (key, table.cursor_row, screen._sort)
        # a backup lands (the poll reloads): rows move, the cursor does not leave the dump
        History(settings).add(NOW - timedelta(hours=1))
        await wait_for(pilot, lambda: table.row_count == 7)
        await settle(pilot)
        assert table.row_count == 7 and on_chosen()
        await pilot.press("x")
        await wait_for(pilot, lambda: any(j.kind == "verify" for j in app.jobs.jobs.values()))
        assert [j.title for j in app.jobs.jobs.values()] == [f"Verify {chosen}"]


# ------------------------------------------------------------------ outcomes carry their result


@asynctest
async def test_verifying_a_corrupt_dump_says_failed_and_why(tmp_path, monkeypatch):
    monkeypatch.setattr(backups_screen, "POLL_SECONDS", 0)
    settings = make_settings(tmp_path)
    h = History(settings)
    path = h.add(T0, verify=False)
    path.write_bytes(path.read_bytes()[:-20])  # the gzip stream cut short after the manifest was written
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BackupsScreen) and all_rows_shown(app.screen))
        await pilot.press("x")
        await wait_for(pilot, lambda: any(not j.running for j in app.jobs.jobs.values()), 30)
        job = next(iter(app.jobs.jobs.values()))
        assert job.state == "failed" and job.error.startswith("corrupt: "), job.error
        assert "failed verification" not in job.error  # the reason itself, e.g. a truncated gzip stream
        titles = [n.title for n in app._notifications]
        assert f"Verify {path.name}: FAILED" in titles
        assert not any(t.endswith(": done") for t in titles)
        # the dashboard's Jobs panel says the same, in the error's colour
        await pilot.press("d")
        await pilot.pause(0.3)
        bar = app.screen.query_one(f"#job-{job.id}")
        assert "FAILED" in text(bar.query_one(".job-title")) and bar.has_class("-failed")
        assert "corrupt: " in text(bar.query_one(".job-current"))


@asynctest
async def test_c_with_nothing_running_says_so(tmp_path):
    app = make_app(make_settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        await pilot.press("c")
        await pilot.pause(0.1)
        messages = [n.message for n in app._notifications]
    assert messages == ["No job is running: nothing to cancel."]


# ------------------------------------------------------------------ discoverability


@asynctest
async def test_help_lists_the_screens_own_keys(tmp_path):
    app = make_app(make_settings(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, BackupsScreen))
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = text(app.screen.query_one(Static))
        assert "This screen: Backups" in shown
        for key, words in (("o", "Sort column"), ("i", "Reverse"), ("x", "Verify selected"), ("ctrl+r", "Reload")):
            assert any(line.split()[:1] == [key] and words in line for line in shown.splitlines()), key
        await pilot.press("escape", "v")
        await pilot.pause(0.2)
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = text(app.screen.query_one(Static))
        assert "This screen: Volume" in shown and "Pull…" in shown and "Sync, full listing" in shown


@asynctest
async def test_palette_speaks_an_operators_words(tmp_path):
    settings = make_settings(tmp_path)
    settings.source = tmp_path / "fovea-tui.toml"
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        commands = {title: help_text for title, help_text, _ in app.command_list()}
        for wanted in ("Back up now", "Sync videos now", "Verify the selected dump", "Prune old backups…",
                       "Pull the videos back…", "Run a restore drill", "Restore a dump"):
            assert wanted in commands, wanted
        # no restore on record: nothing to resume or roll back, so the palette does not offer it
        assert "Resume the interrupted restore" not in commands and "Roll back the restore" not in commands
        app.restore = RestoreSection(job="restore-x", status="interrupted", can_resume=True, can_rollback=True)
        offered = {title for title, _h, _cb in app.command_list()}
        assert {"Resume the interrupted restore", "Roll back the restore"} <= offered
        assert commands["Prune old backups…"].startswith("[p] ")
        assert not any("run_" in h or "pipeline" in h or "dump." in h for h in commands.values())
        assert "No config file" not in commands["Setup: find the install"]
        # running one goes to its screen and runs it there
        run = next(cb for title, _h, cb in app.command_list() if title == "Prune old backups…")
        run()
        await wait_for(pilot, lambda: isinstance(app.screen, (ConfirmDialog, RetentionScreen)))
        assert app.current_mode == "retention"
        await settle(pilot)
        if isinstance(app.screen, RetentionScreen):
            app.screen.query_one("BucketGrid")  # the screen loaded what it shows


@asynctest
async def test_setup_from_the_palette_names_the_loaded_config(tmp_path):
    from fovea_tui.tui.screens.setup import SetupScreen

    settings = make_settings(tmp_path)
    settings.source = tmp_path / "fovea-tui.toml"
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(SetupScreen())
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen) and app.screen.query("#setup-intro"))
        intro = text(app.screen.query_one("#setup-intro"))
        assert "No config file" not in intro and str(settings.source) in intro


# ------------------------------------------------------------------ a restore is never left behind unseen


def _restore_state(settings, *, status: str, confirmed: bool, awaiting: bool = False) -> str:
    from test_tui_restore import state, write_state

    data = state(settings, upto="confirm" if awaiting else "restore", status=status, running="running",
                 **({"awaiting": "confirm"} if awaiting else {}))
    data["params"]["confirmed"] = confirmed
    write_state(settings, data)
    return data["id"]


@asynctest
async def test_quit_during_a_restore_asks_then_names_the_job_and_how_to_follow_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(jobs, "is_alive", lambda directory, job_id: True)
    settings = make_settings(tmp_path)
    job_id = _restore_state(settings, status="running", confirmed=True)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "carries on after fovea-tui closes" in text(app.screen.query_one(".question"))
        await pilot.press("enter")  # Cancel: still here
        await pilot.pause(0.2)
        assert app.is_running and not isinstance(app.screen, ConfirmDialog)
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await pilot.pause(0.2)
    printed = " ".join(capsys.readouterr().err.split())  # what the terminal shows once the app is gone
    assert f"fovea-tui restore --follow {job_id}" in printed and "still running" in printed
    assert jobs.read_control(jobs.jobs_dir(settings), job_id, "cancel") is None  # a confirmed restore runs on


@asynctest
async def test_quit_while_a_restore_waits_cancels_it_and_keeps_the_safety_dump(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(jobs, "is_alive", lambda directory, job_id: True)
    settings = make_settings(tmp_path)
    job_id = _restore_state(settings, status="waiting", confirmed=False, awaiting=True)
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        # the dashboard's Jobs panel shows the waiting job
        await wait_for(pilot, lambda: "waiting for your confirmation" in text(app.screen.query_one("#restore-job")))
        assert not app.screen.query_one("#no-jobs").display
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "quitting cancels it" in text(app.screen.query_one(".question"))
        await pilot.press("y")
        await pilot.pause(0.2)
    printed = " ".join(capsys.readouterr().err.split())  # what the terminal shows once the app is gone
    assert "cancelled before its confirmation" in printed and "pre-restore.sql.gz is kept" in printed
    assert f"--follow {job_id}" in printed
    assert jobs.read_control(jobs.jobs_dir(settings), job_id, "cancel") == ""


# ------------------------------------------------------------------ every change is audited


def test_syncs_and_pulls_are_audited(tmp_path):
    (tmp_path / "copy").mkdir()
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"a" * 100)
    settings = Settings(backups=BackupSettings(dir=str(tmp_path / "backups")),
                        volume=VolumeSettings(path=str(videos), target=str(tmp_path / "copy")))
    run_sync(settings, dry_run=True)
    assert audit.read(settings) == []  # a dry run changes nothing
    run_sync(settings)
    run_sync(settings, pull=True, to=tmp_path / "restored")
    entries = audit.read(settings)
    assert [(e["action"], e["outcome"]) for e in entries] == [("sync", "ok"), ("pull", "ok")]
    assert entries[0]["details"]["uploaded"] == 1 and entries[1]["details"]["downloaded"] == 1


@asynctest
async def test_a_settings_save_is_audited_with_key_names_only(tmp_path):
    from textual.widgets import Input

    settings = make_settings(tmp_path)
    settings.source = tmp_path / "fovea-tui.toml"
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await pilot.pause(0.3)
        app.screen.query_one("#f-retention--keep_daily", Input).value = "30"
        app.screen.query_one("#f-database--url", Input).value = "postgresql://fovea:hunter2-secret@127.0.0.1/fovea"
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: Path(settings.source).exists())
        await pilot.pause(0.1)
    entries = audit.read(app.settings, action="settings")
    assert len(entries) == 1
    assert {"retention.keep_daily", "database.url"} <= set(entries[0]["details"]["changed"])
    assert "hunter2" not in audit.audit_path(app.settings).read_text()


@asynctest
async def test_leaving_settings_with_unsaved_edits_asks_first(tmp_path):
    from textual.widgets import Input

    from fovea_tui.tui.screens.settings import SettingsScreen

    settings = make_settings(tmp_path)
    settings.source = tmp_path / "fovea-tui.toml"
    app = make_app(settings)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        await pilot.pause(0.2)
        await pilot.press("d")  # nothing edited: no question
        await wait_for(pilot, lambda: app.current_mode == "dashboard")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        app.screen.query_one("#f-retention--keep_daily", Input).value = "30"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "not saved" in text(app.screen.query_one(".question"))
        await pilot.press("enter")  # default: keep editing
        await wait_for(pilot, lambda: isinstance(app.screen, SettingsScreen))
        assert app.screen.query_one("#f-retention--keep_daily", Input).value == "30"
        await pilot.press("b")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: app.current_mode == "backups")
    assert app.settings.retention.keep_daily == 14 and not Path(settings.source).exists()
