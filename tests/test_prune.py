"""prune: the dry run is the real run; siblings go together, local and off-site; refusals;
the newest verified dump survives; a half-failed run is finished by the next; the lock."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from support.backup_history import History, dump_bytes, make_settings, mirror

from fovea_tui.cli.main import main
from fovea_tui.engine.backups.inventory import load_inventory
from fovea_tui.engine.backups.prune import build_plan, prune
from fovea_tui.engine.backups.prune_journal import journal_path, read_journal
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.infra.stores import DirectoryStore, S3Store

T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


def write_config(tmp_path, settings, **retention):
    lines = [f'[backups]\ndir = "{settings.backups_dir}"\noffsite = "{settings.backups.offsite}"\n',
             "[retention]\n" + f'timezone = "{settings.retention.timezone}"\n']
    for k, v in retention.items():
        lines.append(f"{k} = {v}\n")
    if settings.s3.endpoint_url:
        lines.append(f'[s3]\nendpoint_url = "{settings.s3.endpoint_url}"\nregion = "us-east-1"\n')
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text("".join(lines))
    return str(cfg)


def files_of(directory, name):
    stem = name[: -len(".sql.gz")]
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(stem))


def run_json(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_dry_run_equals_real_run_and_siblings_go_everywhere(tmp_path, capsys):
    off = tmp_path / "offsite"
    off.mkdir()
    settings = make_settings(tmp_path, offsite=str(off))
    h = History(settings)
    h.daily(T0, 30)
    h.add(T0 + timedelta(days=3, hours=5), safety=True)
    mirror(settings, DirectoryStore(off))
    cfg = write_config(tmp_path, settings, keep_daily=7, keep_weekly=3)

    code, dry = run_json(capsys, "--config", cfg, "prune", "--dry-run", "--json")
    assert code == 0 and dry["dry_run"] and dry["refused"] is None
    assert set(dry) >= {"keep", "forget"} and all({"name", "time", "reasons"} <= set(k) for k in dry["keep"])
    kept = {k["name"] for k in dry["keep"]}
    forgotten = {f["name"] for f in dry["forget"]}
    # 10-24..10-30 daily; weeks 44 and 43 are filled by dailies, week 42 adds 10-18; the safety dump
    assert len(kept) == 7 + 1 + 1 and "fovea-20261018T020000Z.sql.gz" in kept
    assert "fovea-20261004T070000Z-pre-restore.sql.gz" in kept
    before = sorted(p.name for p in settings.backups_dir.iterdir())
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == before  # the dry run deleted nothing

    code, real = run_json(capsys, "--config", cfg, "prune", "--json")
    assert code == 0 and real["ok"] and not real["dry_run"]
    assert real["deleted"] == dry["deletions"]  # exactly what the preview said, in order
    assert len(real["deleted"]) == len(forgotten) * 6  # dump, env, manifest x local, off-site
    for name in forgotten:
        assert files_of(settings.backups_dir, name) == [] and files_of(off, name) == []
    for name in kept:
        assert len(files_of(settings.backups_dir, name)) == 3 and len(files_of(off, name)) == 3
    # per dump and location: the dump first, the manifest last
    first = [d for d in real["deleted"] if d["dump"] == sorted(forgotten)[0]]
    assert [d["location"] for d in first] == ["offsite"] * 3 + ["local"] * 3
    assert first[0]["key"].endswith(".sql.gz") and first[2]["key"].endswith(".manifest.json")
    assert not journal_path(settings).exists()
    entry = audit.read(settings, action="prune")[-1]
    assert entry["outcome"] == "ok" and len(entry["details"]["deleted"]) == len(real["deleted"])

    code, again = run_json(capsys, "--config", cfg, "prune", "--dry-run", "--json")
    assert code == 0 and again["deletions"] == [] and {f["name"] for f in again["forget"]} == set()


def test_flags_override_config(tmp_path, capsys):
    settings = make_settings(tmp_path)
    History(settings).daily(T0, 10)
    cfg = write_config(tmp_path, settings, keep_daily=14, keep_weekly=8)
    code, dry = run_json(capsys, "--config", cfg, "prune", "--dry-run", "--json", "--keep-daily", "3",
                         "--keep-weekly", "0")
    assert code == 0 and len(dry["keep"]) == 3 and len(dry["forget"]) == 7
    for bad in ("-1", "x"):
        with pytest.raises(SystemExit) as exc:
            main(["--config", cfg, "prune", "--keep-daily", bad])
        assert exc.value.code == 2
    assert "--keep-daily" in capsys.readouterr().err


def test_refuses_when_no_verified_dump_would_remain(tmp_path, capsys):
    settings = make_settings(tmp_path)
    h = History(settings)
    for i in range(5):
        h.add(T0 + timedelta(days=i), manifest=False, verify=False)
    h.add(T0 + timedelta(days=5), data=b"")  # corrupt: would be forgotten
    cfg = write_config(tmp_path, settings, keep_daily=2, keep_weekly=0)
    before = sorted(p.name for p in settings.backups_dir.iterdir())
    code, out = run_json(capsys, "--config", cfg, "prune", "--json")
    assert code == 3 and out["refused"] and out["deletions"] == [] and out["forget"]
    code, dry = run_json(capsys, "--config", cfg, "prune", "--dry-run", "--json")
    assert code == 3 and dry["deletions"] == []
    assert sorted(p.name for p in settings.backups_dir.iterdir()) == before
    assert audit.read(settings, action="prune")[-1]["outcome"] == "refused"

    code, out = run_json(capsys, "--config", cfg, "prune", "--json", "--keep-daily", "0")
    assert code == 3 and "empty" in out["refused"]


def test_newest_verified_is_kept_and_corrupt_never_fills_a_bucket(tmp_path):
    settings = make_settings(tmp_path, keep_daily=0, keep_weekly=0, keep_last=2)
    h = History(settings)
    old = h.add(T0)                                    # the only verified dump
    for day in (1, 2, 3):  # whole, but their manifests unreadable: unverified even when prune reads them
        path = h.add(T0 + timedelta(days=day), manifest=False, verify=False)
        (path.parent / (path.name + ".manifest.json")).write_text("{not json")
    bad = h.add(T0 + timedelta(days=4), data=dump_bytes(complete=False))  # newest, corrupt
    result = prune(settings)
    kept = {d.candidate.name: d for d in result.prune_plan.plan.keep}
    assert old.name in kept and "newest verified dump" in kept[old.name].reasons
    assert bad.name not in kept and not bad.exists()
    assert len(kept) == 3 and result.ok
    assert load_inventory(settings).newest_verified().name == old.name


def test_corrupt_local_copy_keeps_a_sound_offsite_copy(tmp_path):
    off = tmp_path / "offsite"
    off.mkdir()
    settings = make_settings(tmp_path, offsite=str(off), keep_daily=3, keep_weekly=0)
    h = History(settings)
    paths = h.daily(T0, 3)
    mirror(settings, DirectoryStore(off))
    victim = paths[1]
    victim.write_bytes(victim.read_bytes()[:-10])  # local copy damaged after the upload
    result = prune(settings)
    assert [c["key"] for c in result.prune_plan.kept_copies] == [victim.name]
    assert not victim.exists() and (off / victim.name).exists() and (off / (victim.name + ".manifest.json")).exists()
    entry = load_inventory(settings).find(victim.name)
    assert entry.locations == ["offsite"] and entry.status == "unverified"


def test_half_failed_deletion_is_reported_and_finished_next_time(tmp_path, s3, s3_bucket, capsys):
    import boto3
    from botocore.config import Config

    url = f"s3://{s3_bucket}/db/"
    settings = make_settings(tmp_path, offsite=url, endpoint_url=s3.endpoint_url, keep_daily=2, keep_weekly=0)
    h = History(settings)
    paths = h.daily(T0, 4)
    store = S3Store(url, settings.s3)
    store.client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1",
                                config=Config(retries={"max_attempts": 1}, connect_timeout=2))
    mirror(settings, store)
    forgotten = [p.name for p in paths[:2]]

    deleted_offsite = []

    def progress(event):
        if event.current and event.message.startswith("deleting offsite"):
            deleted_offsite.append(event.current)
            if len(deleted_offsite) == 2:
                s3.stop()  # the store goes away after the first off-site file is deleted

    result = prune(settings, progress=progress, store=store)
    assert not result.ok and result.failed
    newer, older = forgotten[1], forgotten[0]  # forgotten newest first
    # the newer dump's off-site copy went, then the store vanished: its env copy failed and its
    # manifest was not attempted (a failure stops that dump there); the older one failed at once
    assert [d.key for d, _ in result.failed] == [newer.removesuffix(".sql.gz") + ".env", older]
    assert [d.key for d in result.deleted if d.location == "offsite"] == [newer]
    # local copies went; the journal holds what failed, off-site manifests are still there
    for name in forgotten:
        assert files_of(settings.backups_dir, name) == []
    pending = read_journal(settings)
    assert pending and {p["location"] for p in pending} == {"offsite"}
    assert audit.read(settings, action="prune")[-1]["outcome"] == "failed"

    s3.start()
    inv = load_inventory(settings, store=store)
    assert any(e.pending_deletion for e in inv)
    pp = build_plan(settings, inventory=inv)
    assert pp.pending and all(d.location == "offsite" for d in pp.pending)
    second = prune(settings, store=store)
    assert second.ok and [d.to_json() for d in second.deleted] == [d.to_json() for d in pp.all_deletions()]
    assert not journal_path(settings).exists()
    keys = {o["Key"] for o in s3.client().list_objects_v2(Bucket=s3_bucket).get("Contents", [])}
    for name in forgotten:
        assert not any(k.startswith("db/" + name.removesuffix(".sql.gz")) for k in keys)
    assert len(keys) == 6  # the two kept dumps, with their siblings


def test_lock_held_refuses(tmp_path, capsys):
    settings = make_settings(tmp_path, keep_daily=1, keep_weekly=0)
    History(settings).daily(T0, 3)
    cfg = write_config(tmp_path, settings, keep_daily=1, keep_weekly=0)
    held, release = threading.Event(), threading.Event()

    def holder():
        with acquire(settings, "backups", purpose="backup"):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        held.wait(5)
        code = main(["--config", cfg, "prune", "--json"])
        out = json.loads(capsys.readouterr().out)
        assert code == 3 and out["kind"] == "LockHeld" and "backup" in out["error"]
        assert len(list(settings.backups_dir.glob("*.sql.gz"))) == 3
        assert main(["--config", cfg, "prune", "--dry-run", "--json"]) == 0  # a preview needs no lock
        capsys.readouterr()
    finally:
        release.set()
        t.join()
    assert main(["--config", cfg, "prune", "--json"]) == 0
    assert len(list(settings.backups_dir.glob("*.sql.gz"))) == 1


def test_plan_changed_since_preview_deletes_nothing(tmp_path):
    from fovea_tui.errors import SafetyRefusal

    settings = make_settings(tmp_path, keep_daily=2, keep_weekly=0)
    h = History(settings)
    h.daily(T0, 3)
    preview = build_plan(settings).all_deletions()
    h.add(T0 + timedelta(days=3))  # a new backup lands between preview and confirmation
    with pytest.raises(SafetyRefusal):
        prune(settings, expected=preview)
    assert len(list(settings.backups_dir.glob("*.sql.gz"))) == 4
