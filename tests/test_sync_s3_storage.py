"""Installs whose videos live in S3 (VIDEO_STORAGE_TYPE=s3 or hybrid): `sync` copies the app's
bucket to volume.target (server-side on one endpoint, streamed across two), `sync --pull`
puts it back, and the restore's video check reads the bucket. Against moto's S3 server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC
from pathlib import Path

import boto3
from support.services import S3Server

from fovea_tui.config import save_settings, settings_from_dict
from fovea_tui.engine.infra import stores
from fovea_tui.engine.volume.storage import VideoRow, missing_from, video_storage
from fovea_tui.engine.volume.sync import run_sync

REPO = Path(__file__).resolve().parent.parent
APP_KEY_ID = "app-key-id-7f3a"
APP_SECRET = "app-secret-Zq9-do-not-print"


def client(server):
    return boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1")


def write_env(path: Path, *, kind: str, bucket: str, endpoint: str) -> Path:
    path.write_text("\n".join([
        f"VIDEO_STORAGE_TYPE={kind}", f"S3_BUCKET={bucket}", "S3_REGION=us-east-1", f"S3_ENDPOINT={endpoint}",
        f"AWS_ACCESS_KEY_ID={APP_KEY_ID}", f"AWS_SECRET_ACCESS_KEY={APP_SECRET}", "STORAGE_PATH=/videos",
        "DATABASE_URL=postgresql://fovea:pw-long-enough@127.0.0.1:5432/fovea",
    ]) + "\n")
    os.chmod(path, 0o600)
    return path


def fill(server, bucket: str, count: int, prefix: str = "") -> dict[str, bytes]:
    c = client(server)
    objects = {f"{prefix}video-{i:03d}.mp4": os.urandom(1000 + i * 37) for i in range(count)}
    objects[f"{prefix}thumbnails/video-000.jpg"] = b"thumb"
    for key, data in objects.items():
        c.put_object(Bucket=bucket, Key=key, Body=data)
    return objects


def held(server, bucket: str, prefix: str = "") -> dict[str, bytes]:
    c = client(server)
    out = {}
    for page in c.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"].startswith(prefix + ".fovea"):
                continue  # sync's listing marker
            out[obj["Key"][len(prefix):]] = c.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def make(tmp_path, server, *, app_bucket: str, target: str, kind: str = "s3", target_server=None, **volume):
    env = write_env(tmp_path / ".env", kind=kind, bucket=app_bucket, endpoint=server.endpoint_url)
    return settings_from_dict({
        "install": {"env_file": str(env)},
        "backups": {"dir": str(tmp_path / "backups")},
        "volume": {"path": str(tmp_path / "videos"), "target": target, **volume},
        "s3": {"endpoint_url": (target_server or server).endpoint_url, "region": "us-east-1"},
    })


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=180, cwd=REPO, env=dict(os.environ), stdin=subprocess.DEVNULL)


def test_bucket_to_bucket_on_one_server_is_server_side(s3, tmp_path, monkeypatch):
    app, target = s3.make_bucket(), s3.make_bucket()
    objects = fill(s3, app, 12)
    big = os.urandom(3 * 1024 * 1024 + 17)  # above the (lowered) multipart threshold: UploadPartCopy
    client(s3).put_object(Bucket=app, Key="big/video-big.mp4", Body=big)
    objects["big/video-big.mp4"] = big
    monkeypatch.setattr(stores, "MULTIPART_THRESHOLD", 1024 * 1024)
    monkeypatch.setattr(stores, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    settings = make(tmp_path, s3, app_bucket=app, target=f"s3://{target}/videos/")

    result = run_sync(settings)
    assert result.ok, result.as_dict()
    assert result.uploaded == len(objects) and result.source == f"s3://{app}/"
    assert result.copies == "server-side copies (CopyObject)"
    assert held(s3, target, "videos/") == objects

    again = run_sync(settings)
    assert again.ok and again.uploaded == 0 and again.skipped == len(objects)
    assert again.listing["mode"] == "snapshot"


def test_bucket_to_another_server_is_streamed_and_secrets_stay_hidden(s3, tmp_path):
    other = S3Server().start()
    try:
        app = s3.make_bucket()
        target = "target-" + os.urandom(4).hex()
        client(other).create_bucket(Bucket=target)
        objects = fill(s3, app, 8)
        settings = make(tmp_path, s3, app_bucket=app, target=f"s3://{target}/", target_server=other)
        config = save_settings(settings, tmp_path / "fovea-tui.toml")
        proc = run_cli(config, "sync", "--json")
        assert proc.returncode == 0, proc.stderr
        data = json.loads(proc.stdout)
        assert data["uploaded"] == len(objects) and data["copies"].startswith("streamed")
        assert held(other, target) == objects
        assert APP_SECRET not in proc.stdout + proc.stderr and APP_KEY_ID not in proc.stdout + proc.stderr
        summary = (settings.state_dir / "sync-last.json").read_text()
        assert APP_SECRET not in summary and APP_KEY_ID not in summary
    finally:
        other.stop()


def test_pull_puts_the_bucket_back_or_into_a_directory(s3, tmp_path):
    app, target = s3.make_bucket(), s3.make_bucket()
    objects = fill(s3, app, 6)
    settings = make(tmp_path, s3, app_bucket=app, target=f"s3://{target}/copy/")
    assert run_sync(settings).ok
    c = client(s3)
    lost = sorted(objects)[:3]
    for key in lost:
        c.delete_object(Bucket=app, Key=key)

    result = run_sync(settings, pull=True)
    assert result.ok, result.as_dict()
    assert result.downloaded == 3 and result.skipped == len(objects) - 3 and result.target == f"s3://{app}/"
    assert held(s3, app) == objects

    out = tmp_path / "restored"
    result = run_sync(settings, pull=True, to=out)
    assert result.ok and result.downloaded == len(objects)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == objects


def test_delete_guard_with_an_empty_app_bucket(s3, tmp_path):
    app, target = s3.make_bucket(), s3.make_bucket()
    settings = make(tmp_path, s3, app_bucket=app, target=f"s3://{target}/", delete=True)
    fill(s3, target, 5)
    result = run_sync(settings)
    assert result.refused and f"s3://{app}/ is empty" in result.refused and result.exit_code == 3
    assert len(held(s3, target)) == 6  # nothing deleted


def test_hybrid_copies_volume_and_bucket(s3, tmp_path):
    app, target = s3.make_bucket(), s3.make_bucket()
    objects = fill(s3, app, 4, prefix="s3only/")
    videos = tmp_path / "videos"
    videos.mkdir()
    local = {f"local-{i}.mp4": os.urandom(500 + i) for i in range(3)}
    for name, data in local.items():
        (videos / name).write_bytes(data)
    settings = make(tmp_path, s3, app_bucket=app, target=f"s3://{target}/", kind="hybrid")
    result = run_sync(settings)
    assert result.ok, result.as_dict()
    assert held(s3, target) == {**objects, **local}
    assert result.source == f"{videos} and s3://{app}/"


def test_video_check_reads_the_bucket(s3, tmp_path):
    app = s3.make_bucket()
    fill(s3, app, 3)
    settings = make(tmp_path, s3, app_bucket=app, target="")
    storage = video_storage(settings)
    rows = [VideoRow("a", "video-000.mp4", "video-000.mp4", None), VideoRow("b", "gone.mp4", "gone.mp4", None),
            VideoRow("c", "video-002.mp4", "sub/video-002.mp4", None)]
    assert [r.id for r in missing_from(storage, rows)] == ["b"]


def test_bad_storage_type_names_the_key(s3, tmp_path):
    settings = make(tmp_path, s3, app_bucket="x", target="s3://t/")
    Path(settings.install.env_file).write_text("VIDEO_STORAGE_TYPE=ftp\n")
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    proc = run_cli(config, "sync")
    assert proc.returncode == 2 and "VIDEO_STORAGE_TYPE" in proc.stderr and "Traceback" not in proc.stderr


def test_status_lists_the_bucket(s3, tmp_path):
    from datetime import datetime

    from fovea_tui.engine.ops.status import collect_status
    from fovea_tui.tui.model import cards

    app, target = s3.make_bucket(), s3.make_bucket()
    objects = fill(s3, app, 5)
    settings = make(tmp_path, s3, app_bucket=app, target=f"s3://{target}/")
    volume = collect_status(settings).as_dict()["volume"]  # what `status --json` prints
    assert volume["ok"], volume
    assert volume["storage"] == "s3" and volume["path"] == f"s3://{app}/"
    assert volume["files"] == len(objects) and volume["bytes"] == sum(len(v) for v in objects.values())
    card = next(c for c in cards(collect_status(settings), datetime.now(UTC)) if c.key == "volume")
    assert f"{len(objects)} files in s3://{app}/" in " ".join(card.lines)
