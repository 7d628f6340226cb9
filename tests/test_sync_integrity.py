"""Issue 14, items 5 and 11, with real processes: a file that grows while `sync` uploads it
leaves no short object off-site, and under `umask 000` every file and directory fovea-tui
writes for itself is private while pulled videos look like the volume's own files."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fovea_tui.config import BackupSettings, S3Settings, Settings, VolumeSettings, render_toml

REPO = Path(__file__).resolve().parent.parent
PREFIX = "fovea/videos/"

pytestmark = pytest.mark.s3


def cli(config: Path, *args: str, umask: int | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; with `umask`, that process sets it first (as a shell would)."""
    code = "import os, sys, runpy; os.umask(int(sys.argv.pop(1), 8)); sys.argv[0] = 'fovea-tui'; " \
           "runpy.run_module('fovea_tui', run_name='__main__')"
    prefix = [sys.executable, "-c", code, oct(umask)[2:]] if umask is not None else [sys.executable, "-m", "fovea_tui"]
    return subprocess.run([*prefix, "--config", str(config), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)


def install(tmp_path: Path, target: str, endpoint: str = "") -> tuple[Settings, Path]:
    settings = Settings(backups=BackupSettings(dir=str(tmp_path / "backups")),
                        volume=VolumeSettings(path=str(tmp_path / "videos"), target=target),
                        s3=S3Settings(endpoint_url=endpoint, region="us-east-1"))
    Path(settings.volume.path).mkdir()
    config = tmp_path / "fovea-tui.toml"
    config.write_text(render_toml(settings))
    return settings, config


def test_a_file_growing_during_the_upload_leaves_no_short_object(tmp_path, s3, s3_bucket):
    settings, config = install(tmp_path, f"s3://{s3_bucket}/{PREFIX}", s3.endpoint_url)
    video = Path(settings.volume.path) / "recording.mp4"
    video.write_bytes(os.urandom(24 << 20))
    stop = threading.Event()

    def keep_writing() -> None:  # a recording still being written while the nightly sync runs
        with video.open("ab") as fh:
            while not stop.is_set():
                fh.write(os.urandom(64 << 10))
                fh.flush()
                time.sleep(0.002)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        first = cli(config, "sync", "--json")
    finally:
        stop.set()
        writer.join()
    assert first.returncode == 1, first.stdout + first.stderr
    assert "did not verify" in first.stdout + first.stderr
    client = s3.client()
    listed = client.list_objects_v2(Bucket=s3_bucket, Prefix=PREFIX + "recording").get("Contents", [])
    assert listed == [], "a short object stayed off-site"

    second = cli(config, "sync", "--json")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "changed locally" not in second.stdout + second.stderr
    body = client.get_object(Bucket=s3_bucket, Key=PREFIX + "recording.mp4")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(video.read_bytes()).digest()


def modes_under(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): oct(stat.S_IMODE(p.lstat().st_mode)) for p in sorted(root.rglob("*"))}


def test_umask_000_keeps_what_fovea_tui_writes_private(tmp_path):
    """A directory off-site store, a push, a pull into a new directory: every file fovea-tui
    writes for itself is 0600 and every directory 0700, whatever the umask."""
    offsite = tmp_path / "offsite-root" / "videos"
    settings, config = install(tmp_path, str(offsite))
    volume = Path(settings.volume.path)
    (volume / "a" / "b").mkdir(parents=True)
    (volume / "a" / "b" / "clip.mp4").write_bytes(b"x" * 5000)
    (volume / "top.mp4").write_bytes(b"y" * 100)
    offsite.parent.mkdir()
    offsite.mkdir()

    push = cli(config, "sync", "--json", umask=0)
    assert push.returncode == 0, push.stdout + push.stderr
    pulled = tmp_path / "pulled" / "here"
    pull = cli(config, "sync", "--pull", "--to", str(pulled), "--json", umask=0)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    assert (pulled / "a" / "b" / "clip.mp4").read_bytes() == b"x" * 5000

    for root in (offsite, settings.state_dir, pulled.parent):
        for name, mode in modes_under(root).items():
            path = root / name
            if path.is_dir():
                assert mode == "0o700", (root, name, mode)
    for root in (offsite, settings.state_dir):
        for name, mode in modes_under(root).items():
            if (root / name).is_file():
                assert mode == "0o600", (root, name, mode)
    assert stat.S_IMODE(pulled.stat().st_mode) == 0o700
    assert stat.S_IMODE(pulled.parent.stat().st_mode) == 0o700
    summaries = list(settings.state_dir.glob("sync-last*.json"))
    assert summaries and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in summaries)


def test_pulled_videos_take_the_mode_and_owner_of_the_volumes_files(tmp_path):
    """Pulled back into the live volume (the backend reads it), a video is not root-only: it
    gets the mode and owner of the files already there."""
    offsite = tmp_path / "offsite"
    settings, config = install(tmp_path, str(offsite))
    volume = Path(settings.volume.path)
    (volume / "sub").mkdir()
    (volume / "sub" / "gone.mp4").write_bytes(b"g" * 3000)
    (volume / "kept.mp4").write_bytes(b"k" * 10)
    offsite.mkdir()
    assert cli(config, "sync").returncode == 0
    (volume / "sub" / "gone.mp4").unlink()
    os.chmod(volume / "kept.mp4", 0o644)
    os.chown(volume / "kept.mp4", 1234, 2345)

    pull = cli(config, "sync", "--pull", "--json", umask=0o077)
    assert pull.returncode == 0, pull.stdout + pull.stderr
    back = volume / "sub" / "gone.mp4"
    assert back.read_bytes() == b"g" * 3000
    st = back.stat()
    assert stat.S_IMODE(st.st_mode) == 0o644 and (st.st_uid, st.st_gid) == (1234, 2345)
