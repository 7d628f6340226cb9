"""Directory targets (`backups.offsite`, `volume.target`) are made the same way: 0700 on first
use whatever the umask; a read-only parent or a used target that has gone (an unmounted disk)
is one clear message naming the key. Setup's location checks say the same before saving."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fovea_tui.cli.main import main
from fovea_tui.config import BackupSettings, Settings, VolumeSettings, render_toml
from fovea_tui.engine.infra.targets import check_location, check_locations, suggest_backups_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _sync_config(tmp_path: Path, target: Path) -> str:
    videos = tmp_path / "videos"
    (videos / "thumbs").mkdir(parents=True)
    (videos / "a.mp4").write_bytes(b"a" * 5000)
    (videos / "thumbs" / "a.jpg").write_bytes(b"j" * 300)
    settings = Settings(backups=BackupSettings(dir=str(tmp_path / "backups")),
                        volume=VolumeSettings(path=str(videos), target=str(target)))
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text(render_toml(settings))
    return str(cfg)


def _sync(cfg: str, capsys, *extra: str) -> tuple[int, dict, str]:
    code = main(["--config", cfg, "sync", "--json", *extra])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def _with_umask(mask: int, fn):
    old = os.umask(mask)
    try:
        return fn()
    finally:
        os.umask(old)


# ------------------------------------------------------------------ volume.target


def test_a_missing_volume_target_is_created_0700_under_umask_000(tmp_path, capsys):
    target = tmp_path / "usb" / "fovea" / "videos"
    cfg = _sync_config(tmp_path, target)
    code, doc, err = _with_umask(0, lambda: _sync(cfg, capsys))
    assert code == 0, err
    assert (target / "a.mp4").read_bytes() == b"a" * 5000
    assert (target / "thumbs" / "a.jpg").read_bytes() == b"j" * 300
    for made in (tmp_path / "usb", tmp_path / "usb" / "fovea", target, target / "thumbs"):
        assert _mode(made) == 0o700, made


def test_a_dry_run_creates_nothing_and_says_the_sync_will(tmp_path, capsys):
    target = tmp_path / "mirror"
    cfg = _sync_config(tmp_path, target)
    code, doc, err = _sync(cfg, capsys, "--dry-run")
    assert code == 0, err
    assert not target.exists()
    assert doc["to_transfer"] == 2
    assert any("does not exist yet: the sync creates it (0700)" in w for w in doc["warnings"])


def test_a_used_target_that_is_gone_is_refused_not_made_again(tmp_path, capsys):
    """The disk was unmounted: an empty directory on the root disk must not take its place."""
    target = tmp_path / "mirror"
    cfg = _sync_config(tmp_path, target)
    assert _sync(cfg, capsys)[0] == 0
    for path in sorted(target.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    target.rmdir()
    code, _doc, err = _sync(cfg, capsys)
    assert code == 1
    assert "volume.target directory" in err and "was used before and is gone now: is its disk mounted?" in err
    assert "Traceback" not in err
    assert not target.exists()
    code, _doc, err = _sync(cfg, capsys, "--dry-run")  # a dry run says the same
    assert code == 1 and "is gone now" in err


def test_a_target_under_a_read_only_parent_names_the_key_and_what_to_do(tmp_path, capsys, read_only_dir):
    target = read_only_dir / "videos"
    cfg = _sync_config(tmp_path, target)
    code, _doc, err = _sync(cfg, capsys)
    assert code == 1
    assert f"cannot create the directory {target}: Read-only file system" in err
    assert "volume.target must be writable by this user" in err
    assert "Traceback" not in err


# ------------------------------------------------------------------ backups.offsite, the same way


def test_a_missing_offsite_directory_is_created_0700_under_umask_000(fresh_direct_db, tmp_path, capsys):
    from test_nightly import make_settings

    offsite = tmp_path / "disk" / "fovea-offsite"
    _settings, cfg = make_settings(tmp_path, fresh_direct_db.url, offsite=str(offsite), target=None)
    code = _with_umask(0, lambda: main(["--config", cfg, "backup", "--json"]))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["offsite"]["status"] == "ok"
    assert _mode(tmp_path / "disk") == 0o700 and _mode(offsite) == 0o700
    assert any(p.name.endswith(".sql.gz") for p in offsite.iterdir())


def test_an_offsite_directory_under_a_read_only_parent_fails_the_copy_and_keeps_the_backup(
        fresh_direct_db, tmp_path, capsys, read_only_dir):
    from test_nightly import make_settings

    _settings, cfg = make_settings(tmp_path, fresh_direct_db.url, offsite=str(read_only_dir / "offsite"), target=None)
    code = main(["--config", cfg, "backup", "--json"])
    _out, err = capsys.readouterr()
    assert code == 1
    assert "Read-only file system" in err and "backups.offsite must be writable by this user" in err
    assert "is complete and kept" in err


# ------------------------------------------------------------------ setup's checks, before saving


def test_checks_of_directories(tmp_path, read_only_dir):
    (tmp_path / "a-file").write_text("x")
    ok = check_location("backups.dir", str(tmp_path / "new" / "backups"))
    assert ok.ok and "created (0700) at the first run" in ok.verdict
    assert sorted(tmp_path.iterdir()) == [tmp_path / "a-file", tmp_path / "ro"]  # the probe left nothing
    assert check_location("backups.dir", str(tmp_path)).verdict == "exists and is writable"
    refused = check_location("volume.target", str(read_only_dir / "videos"))
    assert not refused.ok and refused.verdict == f"cannot be created in {read_only_dir}: Read-only file system"
    refused = check_location("backups.dir", str(read_only_dir / "existing"))
    assert not refused.ok and "cannot write in" in refused.verdict and "Read-only file system" in refused.verdict
    refused = check_location("backups.offsite", str(tmp_path / "a-file" / "sub"))
    assert not refused.ok and "is not a directory" in refused.verdict
    assert not check_location("backups.dir", "backups").ok  # relative
    assert not check_location("backups.dir", "").ok
    assert check_location("volume.target", "").ok  # empty: no sync, said so
    assert not check_location("backups.dir", "s3://bucket/x/").ok  # local backups are local


@pytest.mark.parametrize(("url", "ok"), [
    ("s3://fovea-backups/prod/", True), ("s3://fovea-backups", True), ("s3://a.b-c/x/y/", True),
    ("s3://", False), ("s3:///prefix/", False), ("s3://Upper/", False), ("s3://ab/", False),
    ("s3://bucket_with_underscore/", False), ("s3://b..c/", False), ("s3://bucket/a//b/", False),
    ("ftp://host/dir", False),
])
def test_s3_urls_are_checked_for_shape_only(url, ok):
    check = check_location("backups.offsite", url)
    assert check.ok is ok, check.verdict
    if ok:
        assert "shape checked" in check.verdict


def test_a_target_inside_the_volume_is_refused(tmp_path):
    settings = Settings(backups=BackupSettings(dir=str(tmp_path / "b")),
                        volume=VolumeSettings(path=str(tmp_path / "videos"), target=str(tmp_path / "videos" / "copy")))
    checks = {c.key: c for c in check_locations(settings)}
    assert not checks["volume.target"].ok and "overlaps volume.path" in checks["volume.target"].verdict
    assert checks["backups.dir"].ok and checks["backups.offsite"].ok


def test_the_suggested_backups_dir_is_named_after_the_project():
    assert suggest_backups_dir("fovea-prod") == "/var/backups/fovea-prod"
    assert suggest_backups_dir("../x y") == "/var/backups/-x-y"
