"""The Volume screen (Pilot and a snapshot): the dry-run plan, sync now, cancel, pull.

Every sync here is a real `run_sync` into a real directory target; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.tui import asynctest, make_app, settle, wait_for
from textual.widgets import DataTable, Static

from fovea_tui.config import BackupSettings, Settings, VolumeSettings
from fovea_tui.engine.volume import sync as engine
from fovea_tui.tui.screens import volume as volume_screen
from fovea_tui.tui.screens.volume import VolumeScreen
from fovea_tui.tui.widgets.confirm import ConfirmDialog

SIZE = (120, 36)
SNAP_NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def volume_settings(root: Path, *, delete: bool = False) -> Settings:
    (root / "copy").mkdir(parents=True, exist_ok=True)  # a directory target must exist
    return Settings(backups=BackupSettings(dir=str(root / "backups")),
                    volume=VolumeSettings(path=str(root / "videos"), target=str(root / "copy"), delete=delete,
                                          max_delete_percent=100))


def write_files(root: Path, files: dict[str, int]) -> None:
    for name, size in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((name.encode() * (size // max(1, len(name)) + 1))[:size])


def copied(settings: Settings) -> list[str]:
    root = Path(settings.volume.target)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


async def open_volume(app, pilot) -> VolumeScreen:
    await pilot.press("v")
    await wait_for(pilot, lambda: isinstance(app.screen, VolumeScreen))
    await settle(pilot)
    return app.screen


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


@asynctest
async def test_preview_lists_the_dry_run_against_a_directory_target(tmp_path):
    settings = volume_settings(tmp_path, delete=True)
    videos = Path(settings.volume.path)
    write_files(videos, {"a.mp4": 3000, "b.mp4": 2000, "c.mp4": 1000, "thumbs/a.jpg": 100})
    engine.run_sync(settings)  # a real first sync
    write_files(videos, {"new.mp4": 4096, "c.mp4": 1500})  # one new file, one changed under the same name
    (videos / "b.mp4").unlink()                             # and one gone from the volume
    before = copied(settings)
    app = make_app(settings, now=datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_volume(app, pilot)
        table = screen.query_one("#plan", DataTable)
        assert sorted(str(k.value) for k in table.rows) == ["changed:c.mp4", "delete:b.mp4", "upload:new.mp4"]
        assert str(table.get_row("upload:new.mp4")[2]) == "4.0 KiB"
        caption = text_of(screen, "#plan-caption")
        assert "1 to upload (4.0 KiB)" in caption and "2 already there" in caption
        assert "1 changed under the same name" in caption and "1 to delete" in caption
        summary = text_of(screen, "#summary")
        assert "last synced" in summary and "4 uploaded" in summary and "1 new file pending" in summary
        assert str(tmp_path / "copy") in text_of(screen, "#where")
        assert "c.mp4 changed locally" in text_of(screen, "#errors")
    assert copied(settings) == before  # a preview never writes


@asynctest
async def test_sync_now_runs_a_real_sync_and_the_summary_updates(tmp_path):
    settings = volume_settings(tmp_path)
    write_files(Path(settings.volume.path), {f"v{i:02d}.mp4": 2048 + i for i in range(12)})
    app = make_app(settings, now=datetime.now(UTC) + timedelta(minutes=10))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_volume(app, pilot)
        assert "never synced" in text_of(screen, "#summary")
        assert "12 new files pending" in text_of(screen, "#summary")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.job is not None and screen.job.state == "finished")
        await settle(pilot)
        assert copied(settings) == [f"v{i:02d}.mp4" for i in range(12)]
        summary = text_of(screen, "#summary")
        assert "minutes ago" in summary and "12 uploaded" in summary and "no errors" in summary
        assert "nothing pending" in summary
        assert screen.query_one("#plan", DataTable).row_count == 0
        assert "100%" in str(screen.query_one(f"#sync-job-{screen.job.id}").query_one("ProgressBar").render()) \
            or screen.job.event.done == screen.job.event.total
        # the app-wide V starts the same kind of job: a second one while none runs is fine
        await pilot.press("V")
        await wait_for(pilot, lambda: screen.job is not None and screen.job.id == 2 and not screen.job.running)
        assert screen.job.state == "finished" and screen.job.result.skipped == 12


@asynctest
async def test_cancel_stops_a_sync_mid_way(tmp_path, monkeypatch):
    settings = volume_settings(tmp_path)
    count = 40
    write_files(Path(settings.volume.path), {f"big{i:02d}.mp4": 256 * 1024 for i in range(count)})
    real = volume_screen.sync_job

    def throttled(settings, *, progress=None, cancel=None, **kw):
        def slow(event):
            progress(event)
            if event.phase == "upload":
                time.sleep(0.1)  # one worker, and each progress report costs 0.1 s
        return real(settings, progress=slow, cancel=cancel, workers=1, **kw)

    monkeypatch.setattr(volume_screen, "sync_job", throttled)
    app = make_app(settings, now=datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_volume(app, pilot)
        await pilot.press("S")
        await wait_for(pilot, lambda: screen.job is not None and screen.job.event is not None
                       and screen.job.event.phase == "upload" and screen.job.event.done > 0)
        assert "c cancels" in text_of(screen, "#job-caption")
        await pilot.press("c")
        await wait_for(pilot, lambda: screen.job.state == "cancelled", timeout=15)
        await wait_for(pilot, lambda: "cancelled from the terminal UI" in text_of(screen, "#errors"))
        await wait_for(pilot, lambda: "interrupted" in text_of(screen, "#summary"))
        assert "last run" in text_of(screen, "#summary") and "last complete sync never" in text_of(screen, "#summary")
        assert "files left pending by that run" not in text_of(screen, "#summary")  # the plan says it
    done = copied(settings)
    assert 0 < len(done) < count
    last = engine.read_summary(settings)
    assert last["cancelled"] is True and last["pending"] == count - len(done)


@asynctest
async def test_pull_asks_first_then_brings_files_back(tmp_path):
    settings = volume_settings(tmp_path)
    videos = Path(settings.volume.path)
    write_files(videos, {"a.mp4": 1000, "b.mp4": 2000})
    engine.run_sync(settings)
    (videos / "a.mp4").unlink()
    app = make_app(settings, now=datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_volume(app, pilot)
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        assert "LIVE volume" in app.screen.question
        await pilot.press("n")
        await pilot.pause(0.3)
        assert screen.job is None and not (videos / "a.mp4").exists()
        await pilot.press("P")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog))
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.job is not None and screen.job.state == "finished")
        assert screen.job.result.downloaded == 1
        await wait_for(pilot, lambda: "last pull" in text_of(screen, "#summary"))
    assert (videos / "a.mp4").read_bytes() == (b"a.mp4" * 201)[:1000]


def snapshot_settings() -> Settings:
    """A fixed place (the snapshot shows its paths): a synced volume, 3 new files, 1 changed."""
    root = Path(tempfile.gettempdir()) / "fovea-tui-volume-snapshot"
    shutil.rmtree(root, ignore_errors=True)
    settings = volume_settings(root)
    videos = Path(settings.volume.path)
    write_files(videos, {f"{i:02d}c0ffee{i:02d}.mp4": 40_000 + 1000 * i for i in range(20)})
    engine.run_sync(settings)
    path = settings.state_dir / engine.SUMMARY_FILE
    last = json.loads(path.read_text())
    when = (SNAP_NOW - timedelta(hours=3)).isoformat()
    last.update(time=when, started_at=when, last_ok=when, duration_s=1.4)
    path.write_text(json.dumps(last))
    write_files(videos, {"new-0001.mp4": 120_000, "new-0002.webm": 80_000, "thumbnails/new-0001.jpg": 9_000,
                         "05c0ffee05.mp4": 46_000})
    return settings


def test_volume_120x36(snap_compare):
    settings = snapshot_settings()

    async def run_before(pilot):
        await open_volume(pilot.app, pilot)
        await pilot.pause(0.2)

    app = make_app(settings, now=SNAP_NOW, cursor_blink=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@asynctest
async def test_an_s3_copy_shows_how_it_was_read_and_F_lists_in_full(tmp_path, s3, s3_bucket):
    from fovea_tui.config import S3Settings

    settings = Settings(backups=BackupSettings(dir=str(tmp_path / "backups")),
                        volume=VolumeSettings(path=str(tmp_path / "videos"), target=f"s3://{s3_bucket}/videos/"),
                        s3=S3Settings(endpoint_url=s3.endpoint_url, region="us-east-1"))
    write_files(Path(settings.volume.path), {f"v{i:02d}.mp4": 1024 + i for i in range(6)})
    engine.run_sync(settings)  # a real first sync: it lists, then remembers what the copy holds
    app = make_app(settings, now=datetime.now(UTC))
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_volume(app, pilot)
        summary = text_of(screen, "#summary")
        assert "the copy's contents come from the last sync's snapshot" in summary, summary
        assert "F syncs with a full listing" in summary
        await pilot.press("F")
        await wait_for(pilot, lambda: screen.job is not None and not screen.job.running)
        assert screen.job.state == "finished", screen.job.error
        assert screen.job.result.listing == {**screen.job.result.listing, "mode": "full",
                                             "reason": "a full listing was asked for"}
        assert screen.job.result.skipped == 6 and screen.job.result.uploaded == 0
    assert engine.read_summary(settings)["listing"]["mode"] == "full"
