"""Volume sync against moto's S3 server and a directory target: never a mock of S3."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fovea_tui.cli.main import main
from fovea_tui.config import BackupSettings, S3Settings, Settings, VolumeSettings
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.volume import plan as plan_mod
from fovea_tui.engine.volume import transfer as transfer_mod
from fovea_tui.engine.volume.listing import MARKER_NAME, snapshot_path
from fovea_tui.engine.volume.plan import merge_sorted, safe_destination, walk_sorted
from fovea_tui.engine.volume.sync import run_sync, volume_sync_summary
from fovea_tui.errors import Cancelled, LockHeld, SafetyRefusal

pytestmark = pytest.mark.s3

PREFIX = "fovea/videos/"

# Names chosen to trip an ordering bug: "a.txt" < "a/x" < "a-b" is wrong ("-" < "." < "/"),
# S3 order is "a-b", "a.txt", "a/x"; plus spaces, unicode and a nested thumbnails tree.
FILES = {
    "a-b": b"dash" * 10,
    "a.txt": b"dot" * 7,
    "a/x": b"nested" * 3,
    "video 1.mp4": os.urandom(3000),
    "vidéo-ü.mp4": os.urandom(1500),
    "0b3f9c.webm": os.urandom(4096),
    "thumbnails/0b3f9c.jpg": os.urandom(700),
    "thumbnails/deep/k/1.jpg": b"k1",
    "clip.info.json": b'{"title": "x"}',
    "empty": b"",
}


def make_volume(root: Path, files: dict[str, bytes] = FILES) -> Path:
    for key, data in files.items():
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def settings_for(tmp_path: Path, target: str, *, endpoint: str = "", delete: bool = False,
                 max_delete_percent: int = 10, volume: Path | None = None) -> Settings:
    return Settings(
        backups=BackupSettings(dir=str(tmp_path / "backups")),
        volume=VolumeSettings(path=str(volume or tmp_path / "videos"), target=target, delete=delete,
                              max_delete_percent=max_delete_percent),
        s3=S3Settings(endpoint_url=endpoint, region="us-east-1"),
    )


def write_config(tmp_path: Path, settings: Settings) -> Path:
    from fovea_tui.config import render_toml

    path = tmp_path / "fovea-tui.toml"
    path.write_text(render_toml(settings))
    return path


def bucket_objects(s3, bucket: str, prefix: str = PREFIX) -> dict[str, bytes]:
    """The videos under the prefix, as a person listing the bucket sees them, minus sync's
    own listing marker (its tests below look at it directly)."""
    client = s3.client()
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            if obj["Key"] == prefix + MARKER_NAME:
                continue
            out[obj["Key"][len(prefix):]] = client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
    return out


def ctrl_c_after(cancel: CancelToken, uploaded: int):
    """A progress callback that cancels the run, as Ctrl-C does, once `uploaded` bytes went up."""
    def on_event(event):
        if event.phase == "upload" and event.done >= uploaded:
            cancel.cancel("interrupted by signal SIGINT")
    return on_event


@pytest.fixture
def s3_target(s3, s3_bucket, tmp_path):
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    make_volume(Path(settings.volume.path))
    return settings


# ------------------------------------------------------------------ the sorted streams


def test_walk_is_in_s3_key_order_even_when_spilled(tmp_path, monkeypatch):
    root = make_volume(tmp_path / "v")
    for i in range(50):
        (root / f"n{i:03d}").write_bytes(b"x")
    monkeypatch.setattr(plan_mod, "SORT_CHUNK", 7)  # force runs spilled to temp files
    keys = [f.key for f in walk_sorted(root)]
    assert keys == sorted(keys, key=lambda k: k.encode("utf-8"))
    assert set(keys) == set(FILES) | {f"n{i:03d}" for i in range(50)}


def test_merge_pairs_by_key():
    class K:
        def __init__(self, key):
            self.key = key
    pairs = [(a and a.key, b and b.key) for a, b in merge_sorted(map(K, "acd"), map(K, "bcz"))]
    assert pairs == [("a", None), (None, "b"), ("c", "c"), ("d", None), (None, "z")]


def test_safe_destination_rejects_escapes(tmp_path):
    root = tmp_path / "dest"
    root.mkdir()
    (root / "ok").mkdir()
    os.symlink(tmp_path, root / "link")
    assert safe_destination(root, "ok/file") == root / "ok" / "file"
    for key in ["../x", "/etc/passwd", "a/../../b", "a/./b", "a//b", "", "link/x", "a\\..\\b", "x\x00y"]:
        assert safe_destination(root, key) is None, key


# ------------------------------------------------------------------ S3: push


def test_first_sync_then_noop_then_new_files(s3, s3_bucket, s3_target):
    settings = s3_target
    root = Path(settings.volume.path)
    result = run_sync(settings)
    assert result.exit_code == 0, result.errors
    assert (result.uploaded, result.skipped, result.deleted) == (len(FILES), 0, 0)
    assert result.bytes == sum(len(v) for v in FILES.values())
    assert bucket_objects(s3, s3_bucket) == FILES
    head = s3.client().head_object(Bucket=s3_bucket, Key=PREFIX + "video 1.mp4")
    assert head["Metadata"]["sha256"] == hashlib.sha256(FILES["video 1.mp4"]).hexdigest()

    # Same size, different bytes: skipped without being read (blobs are immutable).
    (root / "a.txt").write_bytes(b"DOT" * 7)
    again = run_sync(settings)
    assert (again.uploaded, again.skipped, again.bytes) == (0, len(FILES), 0)
    assert bucket_objects(s3, s3_bucket)["a.txt"] == FILES["a.txt"]

    (root / "new1.mp4").write_bytes(b"n1" * 100)
    (root / "thumbnails" / "new1.jpg").write_bytes(b"t")
    third = run_sync(settings)
    assert (third.uploaded, third.skipped) == (2, len(FILES))
    assert bucket_objects(s3, s3_bucket)["thumbnails/new1.jpg"] == b"t"

    summary = json.loads((settings.state_dir / "sync-last.json").read_text())
    assert summary["uploaded"] == 2 and summary["pending"] == 0 and summary["errors"] == []


def test_changed_file_is_warned_not_replaced_unless_asked(s3, s3_bucket, s3_target):
    settings = s3_target
    root = Path(settings.volume.path)
    run_sync(settings)
    (root / "video 1.mp4").write_bytes(b"re-encoded, shorter")
    result = run_sync(settings)
    assert result.exit_code == 0
    assert result.uploaded == 0 and result.changed == ["video 1.mp4"]
    assert any("video 1.mp4" in w and "--replace-changed" in w for w in result.warnings)
    assert bucket_objects(s3, s3_bucket)["video 1.mp4"] == FILES["video 1.mp4"]

    replaced = run_sync(settings, replace_changed=True)
    assert replaced.uploaded == 1 and replaced.replaced == 1
    assert bucket_objects(s3, s3_bucket)["video 1.mp4"] == b"re-encoded, shorter"


def test_progress_is_monotonic_and_ends_at_the_total(s3, s3_bucket, tmp_path):
    files = {f"v{i:03d}.mp4": os.urandom(1000 + i * 37) for i in range(60)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    make_volume(Path(settings.volume.path), files)
    events = []
    lock = threading.Lock()

    def record(event):
        with lock:
            events.append(event)

    result = run_sync(settings, progress=record)
    assert result.uploaded == 60
    upload = [e for e in events if e.phase == "upload"]
    assert upload and all(e.unit == "bytes" for e in upload)
    done = [e.done for e in upload]
    assert done == sorted(done)
    total = sum(len(v) for v in files.values())
    assert {e.total for e in upload} == {total}
    assert upload[-1].done == total
    assert upload[-1].message.startswith("60/60 files")
    assert [e for e in events if e.phase == "scan"][-1].done == 60


# ------------------------------------------------------------------ the delete guard


def test_delete_mirrors_within_the_limit_and_dry_run_lists(s3, s3_bucket, tmp_path):
    files = {f"v{i:02d}": b"x" * (i + 1) for i in range(20)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url,
                            delete=True, max_delete_percent=10)
    root = make_volume(Path(settings.volume.path), files)
    run_sync(settings)
    (root / "v03").unlink()
    (root / "v07").unlink()
    dry = run_sync(settings, dry_run=True)
    assert dry.deletions == ["v03", "v07"] and dry.refused is None and dry.deleted == 0
    assert len(bucket_objects(s3, s3_bucket)) == 20
    real = run_sync(settings)
    assert real.deleted == 2 and real.exit_code == 0
    assert sorted(bucket_objects(s3, s3_bucket)) == sorted(set(files) - {"v03", "v07"})


def test_delete_guard_too_many(s3, s3_bucket, tmp_path):
    files = {f"v{i:02d}": b"x" for i in range(20)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url,
                            delete=True, max_delete_percent=10)
    root = make_volume(Path(settings.volume.path), files)
    run_sync(settings)
    for i in range(3):  # 3 of 20 = 15% > 10%
        (root / f"v{i:02d}").unlink()
    (root / "brand-new").write_bytes(b"n")
    result = run_sync(settings)
    assert result.exit_code == 3 and result.deleted == 0 and "max_delete_percent" in result.refused
    assert result.uploaded == 1  # new files still go off-site; only the deletions are refused
    assert len(bucket_objects(s3, s3_bucket)) == 21


def test_delete_guard_empty_and_missing_volume_via_cli(s3, s3_bucket, tmp_path, capsys):
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url,
                            delete=True, max_delete_percent=100)
    root = make_volume(Path(settings.volume.path))
    assert run_sync(settings).uploaded == len(FILES)
    config = write_config(tmp_path, settings)

    # An unmounted volume: the mount point is there, empty.
    for path in sorted(root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    capsys.readouterr()
    assert main(["--config", str(config), "sync", "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["deleted"] == 0 and "empty" in out["refused"] and out["exit_code"] == 3
    assert len(bucket_objects(s3, s3_bucket)) == len(FILES)

    # No mount point at all.
    root.rmdir()
    assert main(["--config", str(config), "sync", "--json"]) == 3
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["kind"] == "SafetyRefusal"
    with pytest.raises(SafetyRefusal):
        run_sync(settings)
    assert len(bucket_objects(s3, s3_bucket)) == len(FILES)


# ------------------------------------------------------------------ interruption and resume


def test_outage_mid_sync_then_clean_resume(s3, s3_bucket, tmp_path):
    files = {f"v{i:03d}.mp4": os.urandom(2000 + i) for i in range(150)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    make_volume(Path(settings.volume.path), files)
    stopped = threading.Event()

    def pull_the_plug(event):
        if event.phase == "upload" and event.done > 40_000 and not stopped.is_set():
            stopped.set()
            threading.Thread(target=s3.stop).start()

    result = run_sync(settings, progress=pull_the_plug)
    assert stopped.is_set()
    assert result.exit_code == 1 and result.error_count and result.pending > 0
    assert result.uploaded + result.pending == 150
    summary = volume_sync_summary(settings)
    assert summary["pending"] == result.pending
    assert any(a["level"] == "warning" and "errors" in a["message"] for a in summary["alerts"])

    s3.start()
    visible = bucket_objects(s3, s3_bucket)
    assert 0 < len(visible) < 150
    for key, data in visible.items():  # nothing partial is visible
        assert data == files[key]

    resumed = run_sync(settings)
    assert resumed.exit_code == 0, resumed.errors
    assert resumed.uploaded == 150 - len(visible) and resumed.skipped == len(visible)
    assert bucket_objects(s3, s3_bucket) == files
    assert volume_sync_summary(settings)["alerts"] == []


def test_incomplete_multipart_uploads_are_aborted_at_start(s3, s3_bucket, s3_target):
    client = s3.client()
    client.create_multipart_upload(Bucket=s3_bucket, Key=PREFIX + "half-uploaded.mp4")
    assert client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    result = run_sync(s3_target)
    assert result.cleaned_up == 1
    assert not client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert "half-uploaded.mp4" not in bucket_objects(s3, s3_bucket)


def test_multipart_upload_verified(s3, s3_bucket, tmp_path, monkeypatch):
    from fovea_tui.engine.infra import stores

    monkeypatch.setattr(stores, "MULTIPART_THRESHOLD", 6 * 1024 * 1024)
    monkeypatch.setattr(stores, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    monkeypatch.setattr(transfer_mod, "PROGRESS_INTERVAL", 0.0)
    big = os.urandom(13 * 1024 * 1024)
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    make_volume(Path(settings.volume.path), {"big.mp4": big, "small": b"s"})
    events = []
    result = run_sync(settings, progress=events.append)
    assert result.exit_code == 0, result.errors
    head = s3.client().head_object(Bucket=s3_bucket, Key=PREFIX + "big.mp4")
    assert head["ContentLength"] == len(big)
    assert head["Metadata"]["sha256"] == hashlib.sha256(big).hexdigest()
    upload = [e.done for e in events if e.phase == "upload"]
    assert upload == sorted(upload) and upload[-1] == len(big) + 1
    assert len(upload) > 3  # byte progress inside the big file, not just per file


def test_cancel_records_pending_and_leaves_nothing_partial(s3, s3_bucket, tmp_path):
    files = {f"v{i:03d}": os.urandom(3000) for i in range(120)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    make_volume(Path(settings.volume.path), files)
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        run_sync(settings, progress=ctrl_c_after(cancel, 30_000), cancel=cancel)
    summary = json.loads((settings.state_dir / "sync-last.json").read_text())
    assert summary["cancelled"] is True and summary["pending"] > 0
    visible = bucket_objects(s3, s3_bucket)
    assert all(files[k] == v for k, v in visible.items())
    assert run_sync(settings).uploaded == 120 - len(visible)


def test_a_second_sync_is_refused_by_the_lock(s3_target):
    from fovea_tui.engine.infra.locks import acquire

    held, release = threading.Event(), threading.Event()

    def holder():
        with acquire(s3_target, "volume", purpose="sync"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        with pytest.raises(LockHeld):
            run_sync(s3_target)
    finally:
        release.set()
        t.join()


# ------------------------------------------------------------------ pull


def test_pull_restores_and_refuses_hostile_keys(s3, s3_bucket, s3_target, tmp_path):
    run_sync(s3_target)
    client = s3.client()
    hostile = [PREFIX + "../escaped", PREFIX + "/etc/passwd-ish", PREFIX + "a/../../../up", PREFIX + "./dot"]
    for key in hostile:
        client.put_object(Bucket=s3_bucket, Key=key, Body=b"pwned")
    dest = tmp_path / "restore" / "videos"
    result = run_sync(s3_target, pull=True, to=dest)
    assert result.downloaded == len(FILES), result.errors
    assert result.error_count == len(hostile) and result.exit_code == 1
    for key, data in FILES.items():
        assert (dest / key).read_bytes() == data
    assert not list(tmp_path.rglob("escaped")) and not list(tmp_path.rglob("up"))
    assert not list(tmp_path.rglob("passwd-ish")) and not list(dest.rglob("dot"))
    assert not [p for p in dest.rglob("*") if p.name.startswith(".fovea-tmp-")]

    again = run_sync(s3_target, pull=True, to=dest)
    assert again.downloaded == 0 and again.skipped == len(FILES)


def test_pull_absolute_key_at_bucket_root(s3, s3_bucket, tmp_path):
    client = s3.client()
    client.put_object(Bucket=s3_bucket, Key="/tmp/abs-key-test", Body=b"pwned")
    client.put_object(Bucket=s3_bucket, Key="fine.mp4", Body=b"ok")
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/", endpoint=s3.endpoint_url)
    dest = tmp_path / "dest"
    result = run_sync(settings, pull=True, to=dest)
    assert result.downloaded == 1 and (dest / "fine.mp4").read_bytes() == b"ok"
    assert any("/tmp/abs-key-test" in e for e in result.errors)
    assert not Path("/tmp/abs-key-test").exists()


def test_pull_does_not_follow_a_symlink_out_of_the_destination(s3, s3_bucket, s3_target, tmp_path):
    run_sync(s3_target)
    dest = tmp_path / "dest"
    outside = tmp_path / "outside"
    outside.mkdir()
    dest.mkdir()
    os.symlink(outside, dest / "thumbnails")
    result = run_sync(s3_target, pull=True, to=dest)
    assert not list(outside.iterdir())
    assert any("thumbnails/" in e for e in result.errors)


def test_pull_changed_local_file_kept_unless_asked(s3, s3_bucket, s3_target, tmp_path):
    run_sync(s3_target)
    dest = tmp_path / "dest"
    run_sync(s3_target, pull=True, to=dest)
    (dest / "a.txt").write_bytes(b"local edit")
    kept = run_sync(s3_target, pull=True, to=dest)
    assert kept.changed == ["a.txt"] and (dest / "a.txt").read_bytes() == b"local edit"
    run_sync(s3_target, pull=True, to=dest, replace_changed=True)
    assert (dest / "a.txt").read_bytes() == FILES["a.txt"]


# ------------------------------------------------------------------ directory target


def test_directory_target_push_resync_pull(tmp_path):
    target = tmp_path / "offsite"
    target.mkdir()
    settings = settings_for(tmp_path, str(target))
    make_volume(Path(settings.volume.path))
    first = run_sync(settings)
    assert first.uploaded == len(FILES) and first.exit_code == 0
    for key, data in FILES.items():
        assert (target / key).read_bytes() == data
    (target / ".fovea-tmp-stale.1").write_bytes(b"partial")
    again = run_sync(settings)
    assert (again.uploaded, again.skipped) == (0, len(FILES))
    assert again.cleaned_up == 1
    back = run_sync(settings, pull=True, to=tmp_path / "back")
    assert back.downloaded == len(FILES)
    assert {str(p.relative_to(tmp_path / "back")) for p in (tmp_path / "back").rglob("*") if p.is_file()} == set(FILES)


def test_directory_target_delete_guard(tmp_path):
    target = tmp_path / "offsite"
    target.mkdir()
    settings = settings_for(tmp_path, str(target), delete=True, max_delete_percent=50)
    root = make_volume(Path(settings.volume.path))
    run_sync(settings)
    for key in FILES:
        (root / key).unlink()
    result = run_sync(settings)
    assert result.exit_code == 3 and result.deleted == 0
    assert all((target / key).exists() for key in FILES)


def test_target_inside_volume_is_a_config_error(tmp_path, capsys):
    settings = settings_for(tmp_path, str(tmp_path / "videos" / "backup"))
    make_volume(Path(settings.volume.path))
    assert main(["--config", str(write_config(tmp_path, settings)), "sync"]) == 2


# ------------------------------------------------------------------ CLI and status


def test_cli_json_shape_and_dry_run(s3, s3_bucket, s3_target, tmp_path, capsys):
    config = write_config(tmp_path, s3_target)
    assert main(["--config", str(config), "sync", "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True and dry["uploaded"] == 0
    assert sorted(p["key"] for p in dry["planned"]) == sorted(FILES)
    assert bucket_objects(s3, s3_bucket) == {}

    assert main(["--config", str(config), "sync", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("uploaded", "skipped", "deleted", "bytes", "errors", "warnings", "changed", "dry_run", "pending"):
        assert key in out
    assert out["uploaded"] == len(FILES) and out["errors"] == []

    assert main(["--config", str(config), "sync"]) == 0
    assert "skipped 10" in capsys.readouterr().out
    assert main(["--config", str(config), "sync", "--to", str(tmp_path / "x")]) == 2


def test_status_sync_section(tmp_path, s3, s3_bucket):
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    never = volume_sync_summary(settings)
    assert never["last"] is None
    assert any("never synced" in a["message"] for a in never["alerts"])
    assert volume_sync_summary(settings_for(tmp_path, ""))["alerts"] == []
    make_volume(Path(settings.volume.path))
    run_sync(settings)
    done = volume_sync_summary(settings)
    assert done["last"] and done["age_s"] < 60 and done["pending"] == 0 and done["alerts"] == []
    assert done["summary"].startswith("last synced")


def test_ranged_listing_matches_a_plain_listing(s3, s3_bucket, tmp_path, monkeypatch):
    """Small ranges and pages: remote-only keys before, between (many, spanning pages) and
    after the local ones must all be seen exactly once, in order."""
    monkeypatch.setattr(plan_mod, "SPLIT_EVERY", 3)
    local = {f"k{i:03d}": b"L" for i in range(0, 40, 2)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url,
                            delete=True, max_delete_percent=100)
    make_volume(Path(settings.volume.path), local)
    client = s3.client()
    remote_only = ["a-first", "k005", "k017x", "zz-last"] + [f"k020-{j:02d}" for j in range(45)]
    for key in remote_only + ["k000", "k010"]:
        client.put_object(Bucket=s3_bucket, Key=PREFIX + key, Body=b"R")
    dry = run_sync(settings, dry_run=True)
    assert dry.remote_objects == len(remote_only) + 2
    assert sorted(dry.deletions) == sorted(remote_only)
    assert sorted(p["key"] for p in dry.planned) == sorted(set(local) - {"k000", "k010"})
    assert dry.skipped == 2
    real = run_sync(settings)
    assert real.exit_code == 0 and real.deleted == len(remote_only)
    assert sorted(bucket_objects(s3, s3_bucket)) == sorted(local)


def test_unreachable_store_is_recorded_for_status(s3, s3_bucket, s3_target):
    from fovea_tui.errors import FoveaError

    assert run_sync(s3_target).exit_code == 0
    s3.stop()
    try:
        with pytest.raises(FoveaError):
            run_sync(s3_target)
    finally:
        s3.start()
    summary = volume_sync_summary(s3_target)
    assert summary["error_count"] == 1 and summary["last"] != summary["last_run"]
    assert "failed" in summary["summary"]
    assert any("1 error" in a["message"] for a in summary["alerts"])  # "1 error", not "1 errors"


# ------------------------------------------------------------------ the listing snapshot


def marker_in(s3, bucket: str) -> dict | None:
    from botocore.exceptions import ClientError

    try:
        return json.loads(s3.client().get_object(Bucket=bucket, Key=PREFIX + MARKER_NAME)["Body"].read())
    except ClientError:
        return None


def snapshot_header(settings: Settings) -> dict:
    with snapshot_path(settings).open(encoding="utf-8") as fh:
        return json.loads(fh.readline())


def test_a_resync_trusts_the_snapshot_and_keeps_it_current(s3, s3_bucket, s3_target):
    settings = s3_target
    root = Path(settings.volume.path)
    first = run_sync(settings)
    assert first.listing["mode"] == "full" and "no snapshot" in first.listing["reason"]
    assert snapshot_path(settings).stat().st_mode & 0o777 == 0o600
    header = snapshot_header(settings)
    assert header["objects"] == len(FILES) and header["listed_at"] == first.listing["last_full_listing"]
    assert marker_in(s3, s3_bucket)["generation"] == header["generation"]

    # An object added behind fovea-tui's back is the proof that this run did not list.
    s3.client().put_object(Bucket=s3_bucket, Key=PREFIX + "added-by-hand", Body=b"h")
    again = run_sync(settings)
    assert again.listing["mode"] == "snapshot", again.listing
    assert (again.uploaded, again.skipped, again.remote_objects) == (0, len(FILES), len(FILES))
    assert snapshot_header(settings)["generation"] == header["generation"]  # nothing changed, nothing rewritten

    (root / "new.mp4").write_bytes(b"n" * 10)
    third = run_sync(settings)
    assert third.listing["mode"] == "snapshot" and third.uploaded == 1
    moved = snapshot_header(settings)
    assert moved["objects"] == len(FILES) + 1 and moved["generation"] != header["generation"]
    assert moved["listed_at"] == header["listed_at"]  # still aged from the last full listing
    assert marker_in(s3, s3_bucket)["generation"] == moved["generation"]
    assert run_sync(settings).skipped == len(FILES) + 1

    full = run_sync(settings, full_listing=True)
    assert full.listing["mode"] == "full" and full.remote_objects == len(FILES) + 2
    assert snapshot_header(settings)["objects"] == len(FILES) + 2
    assert snapshot_header(settings)["listed_at"] > header["listed_at"]


def test_the_snapshot_is_not_trusted_when_the_target_changed(s3, s3_bucket, s3_target):
    settings = s3_target
    client = s3.client()
    assert run_sync(settings).exit_code == 0

    # Every video deleted behind fovea-tui's back (a lifecycle rule, a person): the sample sees it.
    for key in FILES:
        client.delete_object(Bucket=s3_bucket, Key=PREFIX + key)
    wiped = run_sync(settings)
    assert wiped.listing["mode"] == "full" and "gone from the target" in wiped.listing["reason"]
    assert wiped.uploaded == len(FILES) and bucket_objects(s3, s3_bucket) == FILES

    # Another host synced to the same prefix: its marker names another generation.
    client.put_object(Bucket=s3_bucket, Key=PREFIX + MARKER_NAME, Body=json.dumps({"generation": "other"}))
    other = run_sync(settings)
    assert other.listing["mode"] == "full" and "another host" in other.listing["reason"]

    # The marker is gone: the prefix was emptied or rewritten by another tool.
    client.delete_object(Bucket=s3_bucket, Key=PREFIX + MARKER_NAME)
    unmarked = run_sync(settings)
    assert unmarked.listing["mode"] == "full" and MARKER_NAME in unmarked.listing["reason"]

    # The last full listing is older than volume.full_listing_hours.
    path = snapshot_path(settings)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    header["listed_at"] = (datetime.now(UTC) - timedelta(hours=25)).isoformat()
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]), encoding="utf-8")
    aged = run_sync(settings)
    assert aged.listing["mode"] == "full" and "full_listing_hours = 24" in aged.listing["reason"]
    assert run_sync(settings).listing["mode"] == "snapshot"

    # ... or dated in the future: the clock moved back, so its age cannot be told.
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    header = json.loads(lines[0])
    header["listed_at"] = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    path.write_text(json.dumps(header) + "\n" + "".join(lines[1:]), encoding="utf-8")
    skewed = run_sync(settings)
    assert skewed.listing["mode"] == "full" and "clock moved back" in skewed.listing["reason"]

    # full_listing_hours = 0: every run lists, and nothing is remembered.
    settings.volume.full_listing_hours = 0
    client.delete_object(Bucket=s3_bucket, Key=PREFIX + MARKER_NAME)
    path.unlink()
    for _ in range(2):
        assert run_sync(settings).listing["mode"] == "full"
    assert marker_in(s3, s3_bucket) is None and not path.exists()


def test_an_interrupted_run_leaves_the_next_one_to_list(s3, s3_bucket, tmp_path):
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url)
    root = make_volume(Path(settings.volume.path), {"seed": b"s"})
    assert run_sync(settings).listing["mode"] == "full"
    assert snapshot_path(settings).exists()
    files = {f"v{i:03d}": os.urandom(3000) for i in range(120)}
    make_volume(root, files)
    cancel = CancelToken()
    with pytest.raises(Cancelled):
        run_sync(settings, progress=ctrl_c_after(cancel, 30_000), cancel=cancel)
    assert not snapshot_path(settings).exists()
    visible = bucket_objects(s3, s3_bucket)
    resumed = run_sync(settings)
    assert resumed.listing["mode"] == "full"
    assert resumed.uploaded == 121 - len(visible) and resumed.exit_code == 0
    assert run_sync(settings).listing["mode"] == "snapshot"


def test_mirrored_deletions_from_the_snapshot(s3, s3_bucket, tmp_path):
    files = {f"v{i:02d}": b"x" * (i + 1) for i in range(20)}
    settings = settings_for(tmp_path, f"s3://{s3_bucket}/{PREFIX}", endpoint=s3.endpoint_url,
                            delete=True, max_delete_percent=10)
    root = make_volume(Path(settings.volume.path), files)
    run_sync(settings)
    (root / "v05").unlink()
    gone = run_sync(settings)
    assert gone.listing["mode"] == "snapshot" and gone.deleted == 1 and gone.deletions == ["v05"]
    assert sorted(bucket_objects(s3, s3_bucket)) == sorted(set(files) - {"v05"})
    after = run_sync(settings)
    assert after.listing["mode"] == "snapshot" and after.remote_objects == 19 and after.to_delete == 0

    # The guard refuses: nothing deleted, so the snapshot still tells the truth and the next
    # run, reading it, refuses the same way.
    for i in range(3):
        (root / f"v1{i}").unlink()
    refused = run_sync(settings)
    assert refused.exit_code == 3 and refused.deleted == 0 and len(bucket_objects(s3, s3_bucket)) == 19
    again = run_sync(settings)
    assert again.listing["mode"] == "snapshot" and again.exit_code == 3 and again.to_delete == 3


def test_the_marker_is_never_copied_either_way(s3, s3_bucket, s3_target, tmp_path):
    settings = s3_target
    root = Path(settings.volume.path)
    dry = run_sync(settings, dry_run=True)
    assert dry.listing["mode"] == "full" and not snapshot_path(settings).exists()
    assert marker_in(s3, s3_bucket) is None
    (root / MARKER_NAME).write_text('{"generation": "from a raw copy"}')  # e.g. left by `aws s3 sync` down
    result = run_sync(settings)
    assert result.uploaded == len(FILES) and MARKER_NAME not in [p for p in bucket_objects(s3, s3_bucket)]
    assert marker_in(s3, s3_bucket)["generation"] != "from a raw copy"
    dest = tmp_path / "pulled"
    pulled = run_sync(settings, pull=True, to=dest)
    assert pulled.downloaded == len(FILES) and not (dest / MARKER_NAME).exists()
    assert pulled.listing is None


def test_cli_full_listing_flag(s3, s3_bucket, s3_target, tmp_path, capsys):
    config = write_config(tmp_path, s3_target)
    assert main(["--config", str(config), "sync", "--json"]) == 0
    capsys.readouterr()
    assert main(["--config", str(config), "sync"]) == 0
    assert "read from the snapshot of the last sync" in capsys.readouterr().out
    assert main(["--config", str(config), "sync", "--full-listing", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["listing"]["mode"] == "full" and out["listing"]["reason"] == "a full listing was asked for"
    assert main(["--config", str(config), "sync", "--pull", "--full-listing"]) == 2
    assert "--full-listing" in capsys.readouterr().err


def test_status_and_the_dashboard_count_files_written_since_the_last_sync(tmp_path, capsys):
    import time

    from fovea_tui.engine.ops.status import collect_status
    from fovea_tui.tui.model import cards

    target = tmp_path / "offsite"
    target.mkdir()
    settings = settings_for(tmp_path, str(target))
    root = make_volume(Path(settings.volume.path))
    assert collect_status(settings).volume.new_files is None  # never synced
    assert run_sync(settings).uploaded == len(FILES)
    assert collect_status(settings).volume.new_files == 0
    time.sleep(0.05)  # file times come from a coarse clock
    (root / "fresh-1.mp4").write_bytes(b"f" * 1000)
    (root / "thumbnails" / "fresh-1.jpg").write_bytes(b"t" * 24)
    report = collect_status(settings)
    vol = report.as_dict()["volume"]
    assert (vol["new_files"], vol["new_bytes"]) == (2, 1024) and vol["files"] == len(FILES) + 2
    card = next(c for c in cards(report, datetime.now(UTC)) if c.key == "volume")
    assert "2 new files pending (1.0 KiB)" in card.lines

    assert main(["--config", str(write_config(tmp_path, settings)), "status"]) == 1  # no backup: CRITICAL
    assert "2 new since the last sync (1.0 KiB)" in capsys.readouterr().out
    run_sync(settings)
    assert collect_status(settings).volume.new_files == 0
