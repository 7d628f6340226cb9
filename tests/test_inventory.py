"""The inventory: local, directory off-site and S3 off-site (moto, several pages), names,
statuses, siblings; and `fovea-tui list`."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import pytest
from support.backup_history import History, dump_bytes, make_settings, mirror

from fovea_tui.cli.main import main
from fovea_tui.engine.backups import inventory as inv_mod
from fovea_tui.engine.backups.inventory import load_inventory, parse_dump_name, verify_entries
from fovea_tui.engine.infra.stores import DirectoryStore, open_store

T0 = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)


def test_names_regular_safety_legacy_and_impossible():
    p = parse_dump_name("fovea-20261101T020000Z.sql.gz")
    assert (p.kind, p.time, p.precision) == ("regular", T0, "second")
    assert parse_dump_name("fovea-20261101T020000Z-pre-restore.sql.gz").kind == "safety"
    legacy = parse_dump_name("fovea-2026-06-01.sql.gz")
    assert legacy.kind == "legacy" and legacy.precision == "day"
    assert legacy.time == datetime(2026, 6, 1, 12, tzinfo=UTC)
    assert parse_dump_name("fovea-20261341T020000Z.sql.gz") is None
    assert parse_dump_name("fovea-2026-02-30.sql.gz") is None
    assert parse_dump_name("fovea-latest.sql.gz") is None


def test_local_statuses_siblings_and_strays(tmp_path):
    settings = make_settings(tmp_path)
    h = History(settings)
    h.add(T0)                                                     # verified
    h.add(T0 + timedelta(days=1), verify=False)                   # manifest, not yet checked
    h.add("fovea-2026-10-30.sql.gz", manifest=False)              # legacy, verified by reading it
    h.add("fovea-2026-10-29.sql.gz", manifest=False, verify=False)  # legacy, unverified
    h.add(T0 + timedelta(days=2), data=b"")                       # 0 bytes
    cut = h.add(T0 + timedelta(days=3), data=dump_bytes(complete=False))  # cut short: verify says corrupt
    grown = h.add(T0 + timedelta(days=4), verify=False)
    grown.write_bytes(grown.read_bytes() + b"junk")               # size differs from its manifest
    h.add(T0 + timedelta(days=5), safety=True, warnings=["dump is 60% smaller than the median"])
    (settings.backups_dir / "fovea-20261341T020000Z.sql.gz").write_bytes(dump_bytes())
    (settings.backups_dir / "fovea-backup-old.sql.gz").write_bytes(dump_bytes())
    (settings.backups_dir / "fovea-20260101T000000Z.sql.gz.manifest.json").write_text("{}")
    (settings.backups_dir / "notes.txt").write_text("not a dump")

    inv = load_inventory(settings)
    by = {e.name: e for e in inv}
    assert [e.name for e in inv] == sorted(by, key=lambda n: by[n].time, reverse=True)
    status = {n: e.status for n, e in by.items()}
    assert status == {
        "fovea-20261106T020000Z-pre-restore.sql.gz": "verified",
        "fovea-20261105T020000Z.sql.gz": "corrupt",
        "fovea-20261104T020000Z.sql.gz": "corrupt",
        "fovea-20261103T020000Z.sql.gz": "corrupt",
        "fovea-20261102T020000Z.sql.gz": "unverified",
        "fovea-20261101T020000Z.sql.gz": "verified",
        "fovea-2026-10-30.sql.gz": "verified",
        "fovea-2026-10-29.sql.gz": "unverified",
    }
    assert "manifest says" in by["fovea-20261105T020000Z.sql.gz"].status_detail
    assert by["fovea-20261103T020000Z.sql.gz"].status_detail == "0 bytes"
    assert cut.name in by
    v = by["fovea-20261101T020000Z.sql.gz"]
    assert v.locations == ["local"] and v.siblings() == {"manifest": ["local"], "env": ["local"]}
    assert v.tables["annotations"] == 140 and v.rows == sum(v.tables.values())
    assert v.migrations == ["20250101000000_init", "20250301000000_claims"] and len(v.sha256) == 64
    assert by["fovea-20261106T020000Z-pre-restore.sql.gz"].safety
    assert "dump is 60% smaller than the median" in by["fovea-20261106T020000Z-pre-restore.sql.gz"].warnings
    assert any("legacy" in w for w in by["fovea-2026-10-29.sql.gz"].warnings)
    assert {s.name for s in inv.unrecognised} == {"fovea-20261341T020000Z.sql.gz", "fovea-backup-old.sql.gz"}
    assert [s.name for s in inv.orphans] == ["fovea-20260101T000000Z.sql.gz.manifest.json"]
    assert inv.counts() == {"verified": 3, "unverified": 2, "corrupt": 3, "mismatch": 0}
    assert inv.newest_verified().name == "fovea-20261101T020000Z.sql.gz"  # safety dumps do not count
    assert inv.find(str(settings.backups_dir / v.name)) is v and inv.find("s3://b/p/" + v.name) is v
    assert inv.find("fovea-nope.sql.gz") is None

    cands = {c.name: c for c in inv.candidates()}
    assert cands["fovea-20261106T020000Z-pre-restore.sql.gz"].safety
    assert cands["fovea-20261103T020000Z.sql.gz"].status == "corrupt"

    # list --verify settles the unverified ones by reading them
    fresh = verify_entries(settings, inv)
    assert fresh.find("fovea-20261102T020000Z.sql.gz").status == "verified"
    assert fresh.find("fovea-2026-10-29.sql.gz").status == "verified"


def test_directory_offsite_merge(tmp_path):
    off = tmp_path / "offsite"
    off.mkdir()
    settings = make_settings(tmp_path, offsite=str(off))
    h = History(settings)
    a, b, c = h.daily(T0, 3)
    store = DirectoryStore(off)
    mirror(settings, store)
    # c only local: delete its off-site files; d only off-site
    for p in off.glob(c.name[:-7] + "*"):
        p.unlink()
    d_local = h.add(T0 + timedelta(days=3))
    store.put_file(d_local, d_local.name)
    store.put_file(d_local.with_name(d_local.name + ".manifest.json"), d_local.name + ".manifest.json")
    for p in settings.backups_dir.glob(d_local.name[:-7] + "*"):
        p.unlink()
    # a damaged off-site copy of b
    (off / b.name).write_bytes(b.read_bytes()[:-5])
    os.mkdir(off / "videos")
    (off / "videos" / "fovea-20260101T000000Z.sql.gz").write_bytes(b"nested: not a dump of this store")

    inv = load_inventory(settings)
    by = {e.name: e for e in inv}
    assert set(by) == {a.name, b.name, c.name, d_local.name}
    assert by[a.name].locations == ["local", "offsite"] and by[a.name].offsite.status == "verified"
    assert by[a.name].siblings() == {"manifest": ["local", "offsite"], "env": ["local", "offsite"]}
    assert by[c.name].locations == ["local"]
    d = by[d_local.name]
    assert d.locations == ["offsite"] and d.status == "unverified" and d.manifest is None
    assert inv.load_manifest(d).tables["users"] == 3  # fetched on demand only
    assert by[b.name].status == "verified" and by[b.name].offsite.status == "corrupt"
    assert any("off-site copy is damaged" in w for w in by[b.name].warnings)


def test_s3_offsite_paginated(tmp_path, s3, s3_bucket, monkeypatch):
    url = f"s3://{s3_bucket}/nightly/"
    settings = make_settings(tmp_path, offsite=url, endpoint_url=s3.endpoint_url)
    h = History(settings)
    paths = h.daily(T0, 7)
    store = open_store(url, settings.s3)
    mirror(settings, store)  # 21 objects
    s3.client().put_object(Bucket=s3_bucket, Key="nightly/videos/fovea-20260101T000000Z.sql.gz", Body=b"x")
    s3.client().put_object(Bucket=s3_bucket, Key="nightly/fovea-2026-13-01.sql.gz", Body=b"x")
    for p in settings.backups_dir.glob(paths[0].name[:-7] + "*"):
        p.unlink()  # the oldest only off-site

    calls = []
    real = store.client.list_objects_v2

    def counting(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(store.client, "list_objects_v2", counting)
    monkeypatch.setattr(inv_mod, "S3_PAGE_SIZE", 4)
    inv = load_inventory(settings, store=store)
    assert len(calls) >= 6 and all(c.get("MaxKeys") == 4 for c in calls)
    assert len(inv) == 7 and inv.offsite_listed and not inv.errors
    assert all(e.locations == ["local", "offsite"] for e in inv.entries[:6])
    assert inv.entries[-1].locations == ["offsite"]
    assert [s.name for s in inv.unrecognised] == ["fovea-2026-13-01.sql.gz"]
    assert inv.newest_verified().name == paths[-1].name


def test_unreachable_offsite_is_an_error_not_a_crash(tmp_path, s3_server):
    settings = make_settings(tmp_path, offsite="s3://nobucket-here/x/", endpoint_url="http://127.0.0.1:9")
    History(settings).add(T0)
    inv = load_inventory(settings)
    assert len(inv) == 1 and inv.errors and not inv.offsite_listed


def test_list_cli_json(tmp_path, capsys):
    settings = make_settings(tmp_path)
    h = History(settings)
    h.add(T0)
    h.add("fovea-2026-10-30.sql.gz", manifest=False, verify=False)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[backups]\ndir = "{settings.backups_dir}"\n')
    assert main(["--config", str(cfg), "list", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["backups"]
    assert set(first) >= {"name", "time", "size", "locations", "status"}
    assert first["name"] == "fovea-20261101T020000Z.sql.gz" and first["time"] == "2026-11-01T02:00:00Z"
    assert first["locations"] == ["local"] and first["status"] == "verified"
    assert second["status"] == "unverified" and second["time_precision"] == "day"
    assert main(["--config", str(cfg), "list", "--verify", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [b["status"] for b in out["backups"]] == ["verified", "verified"]
    assert main(["--config", str(cfg), "list"]) == 0
    assert "2 dumps: 2 verified" in capsys.readouterr().out


@pytest.mark.timeout(120)
def test_thousands_of_dumps_list_fast(tmp_path):
    import time

    settings = make_settings(tmp_path)
    History(settings).hourly_bare(T0, 3000)
    t = time.monotonic()
    inv = load_inventory(settings)
    elapsed = time.monotonic() - t
    assert len(inv) == 3000
    assert elapsed < 5, elapsed


def test_status_summary_counts_and_corrupt_alert(tmp_path):
    from fovea_tui.engine.backups.inventory import status_summary

    settings = make_settings(tmp_path)
    h = History(settings)
    h.add(T0)
    h.add(T0 + timedelta(days=1), data=b"")
    h.add(T0 + timedelta(days=2), data=dump_bytes(complete=False))
    section = {"last": {"name": "fovea-20261103T020000Z.sql.gz", "status": "corrupt"},
               "alerts": [{"level": "critical", "subject": "backups", "message": "the last backup is corrupt"}]}
    out = status_summary(settings, section)
    assert out["counts"] == {"verified": 1, "unverified": 0, "corrupt": 2, "mismatch": 0}
    assert out["newest_verified"] == "fovea-20261101T020000Z.sql.gz"
    messages = [a["message"] for a in out["alerts"]]
    assert len(messages) == 2 and "1 corrupt dump in" in messages[1]
    assert "fovea-20261102T020000Z.sql.gz" in messages[1] and "20261103" not in messages[1]

    empty = make_settings(tmp_path / "other")
    History(empty).add(T0, manifest=False, verify=False)
    assert any("no verified dump" in a["message"] for a in status_summary(empty)["alerts"])


def test_a_malformed_offsite_url_is_bad_config_naming_the_key(tmp_path, capsys):
    from fovea_tui.cli.main import main
    from fovea_tui.config import render_toml, settings_from_dict

    cfg = tmp_path / "c.toml"
    cfg.write_text(render_toml(settings_from_dict(
        {"backups": {"dir": str(tmp_path), "offsite": "ftp://host/dumps/"}})))
    assert main(["--config", str(cfg), "list"]) == 2
    assert "config key backups.offsite" in capsys.readouterr().err
