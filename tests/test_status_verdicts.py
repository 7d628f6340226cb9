"""`status`, `status --json` and the dashboard say the same thing, decided once in the engine:
verdicts against a real PostgreSQL (direct mode) that is healthy, empty, unreachable or far
below its newest dump, the exit codes of `status`, and a real restore runner shown on every
screen while it waits, after it is killed, and until it is rolled back."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from support.services import free_port
from support.tui import SIZE, asynctest, make_app, wait_for
from test_backup_helpers import direct_config, settings_and_config, write_env

from fovea_tui.cli.main import main
from fovea_tui.engine import restore as restore_engine
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.ops.status import collect_status
from fovea_tui.sandbox import demo
from fovea_tui.tui.model import CARD_SECTIONS
from fovea_tui.tui.widgets.confirm import ConfirmDialog


@pytest.fixture
def install(fresh_direct_db, tmp_path, monkeypatch, schedule_dirs):
    """A direct-mode install without Docker: the real database, a volume, an env file."""
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    monkeypatch.setenv("DOCKER_HOST", demo.NO_DOCKER)
    env_file, _ = write_env(tmp_path)
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"v" * 100)
    data = direct_config(tmp_path, fresh_direct_db.url, env_file, volume={"path": str(videos)})
    settings, cfg = settings_and_config(tmp_path, data)
    return fresh_direct_db, settings, cfg


def status_json(capsys, cfg) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(["--config", str(cfg), "status", "--json"])
    return code, json.loads(capsys.readouterr().out)


async def dashboard_verdicts(settings) -> tuple[dict[str, str], str, bool]:
    """(card verdicts, the database card's text, is the restore banner shown) of the real app."""
    app = make_app(settings, status_source=lambda s, now: collect_status(s, now))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.status is not None, 60)
        await pilot.pause()
        cards = {key: app.screen.query_one(f"#card-{key}").verdict for key in CARD_SECTIONS}
        text = str(app.screen.query_one("#card-database").render())
        banner = app.screen.query_one("#restore-banner").display
        return cards, text, banner


def assert_agree(doc: dict, cards: dict[str, str], banner: bool) -> None:
    for key in CARD_SECTIONS:
        assert cards[key] == doc[key]["verdict"], (key, cards[key], doc[key])
    assert banner == (doc["restore"]["verdict"] in ("active", "failing"))


@asynctest
async def test_a_healthy_install_then_a_wiped_one(install, capsys):
    db, settings, cfg = install
    run_backup(settings, offsite=False)
    code, doc = status_json(capsys, cfg)
    # Warnings only (no drill, no schedule): the database is FINE and status exits 0.
    assert code == 0, doc["alerts"]
    assert doc["database"]["verdict"] == "fine"
    assert doc["database"]["expected_rows"] == doc["database"]["rows"] > 0
    assert not any(a["level"] == "critical" for a in doc["alerts"])
    cards, _text, banner = await dashboard_verdicts(settings)
    assert_agree(doc, cards, banner)
    capsys.readouterr()
    assert main(["--config", str(cfg), "status"]) == 0
    text = capsys.readouterr().out
    # a warning's section never reads FINE: the drill and the schedule are MISSING
    lines = {line.split("]", 1)[1].split()[0]: line for line in text.splitlines() if line.startswith("[")}
    assert lines["database"].startswith("[FINE")
    assert lines["drill"].startswith("[MISSING") and lines["schedule"].startswith("[MISSING")

    # Most rows gone (a restore that went wrong, a wiped table): FAILING, CRITICAL, exit 1.
    db.psql("TRUNCATE annotations, claims, claim_relations, videos, personas CASCADE")
    code, doc = status_json(capsys, cfg)
    assert code == 1
    database = doc["database"]
    assert database["verdict"] == "failing" and database["ok"] is True
    assert database["rows"] < database["expected_rows"] / 2
    assert "far fewer than" in database["reason"] and database["expected_from"] in database["reason"]
    assert any(a["level"] == "critical" and a["subject"] == "database" for a in doc["alerts"])
    cards, text, banner = await dashboard_verdicts(settings)
    assert_agree(doc, cards, banner)
    assert "far fewer than" in text


@asynctest
async def test_a_database_with_no_tables_is_failing(install, capsys):
    db, settings, cfg = install
    run_backup(settings, offsite=False)
    db.psql("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    code, doc = status_json(capsys, cfg)
    assert code == 1
    assert doc["database"]["verdict"] == "failing" and doc["database"]["tables"] == 0
    assert "no tables" in doc["database"]["reason"]
    cards, text, banner = await dashboard_verdicts(settings)
    assert_agree(doc, cards, banner)
    assert "FAILING" not in text  # the label is the border's; the body says why
    assert "no tables" in text


@asynctest
async def test_an_unreachable_database_is_failing(install, capsys, tmp_path):
    db, settings, cfg = install
    settings.database.url = f"postgresql://fovea:pw-unreach-77@127.0.0.1:{free_port()}/fovea"
    data = direct_config(tmp_path, settings.database.url, Path(settings.install.env_file),
                         volume={"path": settings.volume.path})
    settings, cfg = settings_and_config(tmp_path, data)
    code, doc = status_json(capsys, cfg)
    assert code == 1
    assert doc["database"]["verdict"] == "failing" and doc["database"]["ok"] is False
    assert doc["database"]["reason"].startswith("unreachable:")
    assert "pw-unreach-77" not in json.dumps(doc)
    cards, text, banner = await dashboard_verdicts(settings)
    assert_agree(doc, cards, banner)
    assert "unreachable" in text


def test_the_last_backup_is_never_a_pre_restore_safety_dump(install, capsys):
    _db, settings, cfg = install
    regular = run_backup(settings, offsite=False)
    safety = run_backup(settings, offsite=False, kind="pre-restore")
    assert safety.name.endswith("-pre-restore.sql.gz")
    _code, doc = status_json(capsys, cfg)
    assert doc["backups"]["last"]["name"] == regular.name
    assert doc["backups"]["count"] == 2 and doc["backups"]["pre_restore"] == 1


def _runner_pid(settings, job_id: str) -> int:
    return int(jobs.load_job(settings, job_id)["pid"])


@asynctest
async def test_a_restore_shows_on_every_screen_until_it_is_rolled_back(install, capsys):
    _db, settings, cfg = install
    dump = run_backup(settings, offsite=False)
    job_id = restore_engine.start_restore(settings, dump.name, confirmed=False)
    try:
        deadline = time.monotonic() + 120
        while jobs.load_job(settings, job_id)["status"] != "waiting":
            assert time.monotonic() < deadline, jobs.load_job(settings, job_id)
            time.sleep(0.2)
        # status: a restore waiting for its confirmation is a CRITICAL alert with the command to follow it
        code, doc = status_json(capsys, cfg)
        assert code == 1
        assert doc["restore"]["verdict"] == "active" and doc["restore"]["status"] == "waiting"
        assert doc["restore"]["next"] == [f"fovea-tui restore --follow {job_id}"]
        assert any(a["subject"] == "restore" and a["level"] == "critical" for a in doc["alerts"])

        app = make_app(settings, status_source=lambda s, now: collect_status(s, now), poll_interval=3600)
        async with app.run_test(size=SIZE) as pilot:
            banner = lambda: app.screen.query_one("#restore-banner")  # noqa: E731
            await wait_for(pilot, lambda: app.status is not None and banner().display, 60)
            assert "waits for the operator to confirm" in str(banner().render())
            assert app.check_action("restore_rollback", ()) is False  # a running restore is not rolled back
            await pilot.press("a")
            await wait_for(pilot, lambda: app.current_mode == "activity")
            assert banner().display and dump.name in str(banner().render())

            # The runner dies (kill -9): the banner turns to FAILING, with the keys to resume or roll back.
            os.kill(_runner_pid(settings, job_id), signal.SIGKILL)
            await wait_for(pilot, lambda: banner().has_class("-failing"), 30)
            text = str(banner().render())
            assert "interrupted" in text and "U resume" in text and "Z roll back" in text
            assert app.check_action("restore_rollback", ()) is True

            await pilot.press("Z")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
            await pilot.press("y")
            await wait_for(pilot, lambda: jobs.effective_status(jobs.load_job(settings, job_id)) == "rolled_back",
                           120)
            await wait_for(pilot, lambda: not banner().display, 30)
        code, doc = status_json(capsys, cfg)
        assert doc["restore"]["status"] == "rolled_back" and doc["restore"]["verdict"] == "fine"
        assert not any(a["subject"] == "restore" for a in doc["alerts"])
    finally:
        data = jobs.load_job(settings, job_id)
        if data["alive"] and data.get("pid"):
            os.kill(int(data["pid"]), signal.SIGKILL)


def test_a_hostile_restore_state_file_is_not_trusted(tmp_path, monkeypatch, capsys):
    """A hand-edited or torn state file (wrong types, steps without names) gives a restore
    section that says what it can, never a traceback, and still raises the alert."""
    monkeypatch.setenv("DOCKER_HOST", demo.NO_DOCKER)
    env_file, _ = write_env(tmp_path)
    data = direct_config(tmp_path, f"postgresql://fovea:pw@127.0.0.1:{free_port()}/fovea", env_file)
    settings, cfg = settings_and_config(tmp_path, data)
    job_id = jobs.create_job(settings, "restore", {"dump": "x.sql.gz"})
    path = jobs.state_path(jobs.jobs_dir(settings), job_id)
    state = json.loads(path.read_text())
    state.update(status="running", steps=["restore", {"name": 3}, {"name": "stop", "title": "Stop", "status": "ok"}],
                 facts=["not", "a", "dict"], params="nope", pid="12; rm -rf /", phase=None)
    path.write_text(json.dumps(state))
    code, doc = status_json(capsys, cfg)
    restore = doc["restore"]
    assert code == 1 and restore["status"] == "interrupted" and restore["verdict"] == "failing"
    assert restore["can_rollback"] and restore["next"][-1] == f"fovea-tui restore --rollback {job_id}"
    assert any(a["subject"] == "restore" and a["level"] == "critical" for a in doc["alerts"])
    capsys.readouterr()
    assert main(["--config", str(cfg), "status"]) == 1
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and f"fovea-tui restore --rollback {job_id}" in out
