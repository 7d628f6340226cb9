"""Issue 14, items 2-4, as an operator breaking it would: prune reads what it keeps instead
of trusting the verification cache, a whole dump whose manifest was edited is "mismatch"
(never deleted as corrupt), and a prune journal left by `kill -9` is finished, not replayed
against a new policy. Every run is the real CLI in a subprocess."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from support.backup_history import History, dump_bytes, make_settings

from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.inventory import load_inventory, status_summary

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 10, 1, 2, 0, tzinfo=UTC)


def cli(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, stdin=subprocess.DEVNULL)


def setup(tmp_path: Path, days: int = 7, **kw) -> tuple:
    settings = make_settings(tmp_path)
    config = tmp_path / "fovea-tui.toml"
    config.write_text(f'[backups]\ndir = "{settings.backups_dir}"\n[retention]\ntimezone = "UTC"\n')
    paths = History(settings).daily(T0, days, **kw)
    return settings, config, paths


def flip_byte_keep_mtime(path: Path) -> None:
    """A cache that lies: one byte flipped in the middle, size and mtime as they were."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def is_whole(path: Path) -> bool:
    try:
        return b"PostgreSQL database dump complete" in gzip.decompress(path.read_bytes())
    except (OSError, EOFError):
        return False


def remaining(settings) -> list[str]:
    return sorted(p.name for p in settings.backups_dir.glob("fovea-*.sql.gz"))


def test_prune_reads_the_newest_before_trusting_the_cache(tmp_path):
    settings, config, paths = setup(tmp_path)
    newest = paths[-1]
    flip_byte_keep_mtime(newest)
    assert load_inventory(settings).find(newest.name).status == "verified"  # the cache still says so

    proc = cli(config, "prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    kept = remaining(settings)
    # the corrupt newest went as corrupt; the newest *good* dump is kept, and it is whole
    assert kept == [paths[-2].name], kept
    assert is_whole(settings.backups_dir / kept[0])
    read = {r["name"]: r for r in result["read"]}
    assert read[newest.name]["status"] == "corrupt" and read[newest.name]["listed_as"] == "verified"
    assert read[paths[-2].name]["status"] == "verified"
    assert len(read) == 2 and result["read_bytes"] == sum(r["size"] for r in read.values()) > 0
    forgotten = {d["name"]: d["reasons"] for d in result["forget"]}
    assert forgotten[newest.name] == ["corrupt: never fills a bucket"]


def test_a_dump_rewritten_after_verification_fills_no_bucket(tmp_path):
    """No manifest, verified; then rewritten cut short (new size: the cache has no verdict)."""
    settings, config, paths = setup(tmp_path, days=3, manifest=False)
    newest = paths[-1]
    newest.write_bytes(dump_bytes(complete=False)[:-40])
    proc = cli(config, "prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert remaining(settings) == [paths[-2].name]
    result = json.loads(proc.stdout)
    assert {r["name"]: r["status"] for r in result["read"]}[newest.name] == "corrupt"


def test_dry_run_tells_the_same_as_the_real_run(tmp_path):
    settings, config, paths = setup(tmp_path)
    flip_byte_keep_mtime(paths[-1])
    args = ("prune", "--keep-last", "2", "--keep-daily", "0", "--keep-weekly", "0", "--json")
    dry = json.loads(cli(config, *args, "--dry-run").stdout)
    real = json.loads(cli(config, *args).stdout)
    assert [d["key"] for d in dry["deletions"]] == [d["key"] for d in real["deleted"]]
    assert sorted(remaining(settings)) == sorted([paths[-2].name, paths[-3].name])


def edit_manifest(path: Path, **changes) -> None:
    mpath = mf.manifest_path(path)
    data = json.loads(mpath.read_text())
    data.update(changes)
    mpath.write_text(json.dumps(data))


def test_a_whole_dump_whose_manifest_was_edited_is_mismatch_and_kept(tmp_path):
    settings, config, paths = setup(tmp_path)
    by_sha, by_size = paths[1], paths[2]
    edit_manifest(by_sha, sha256=hashlib.sha256(b"something else").hexdigest())
    edit_manifest(by_size, size=by_size.stat().st_size + 1000)

    proc = cli(config, "verify", by_sha.name, by_size.name, "--json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdicts = {d["name"]: d for d in json.loads(proc.stdout)["dumps"]}
    assert {n: d["status"] for n, d in verdicts.items()} == {by_sha.name: "mismatch", by_size.name: "mismatch"}
    assert "sha256 differs" in " ".join(verdicts[by_sha.name]["reasons"])

    listing = json.loads(cli(config, "list", "--json").stdout)
    statuses = {b["name"]: b["status"] for b in listing["backups"]}
    assert statuses[by_sha.name] == statuses[by_size.name] == "mismatch"
    assert listing["counts"]["mismatch"] == 2
    alerts = status_summary(settings)["alerts"]
    assert any("not what their manifest says" in a["message"] and by_sha.name in a["message"] for a in alerts)

    proc = cli(config, "prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    kept = remaining(settings)
    assert kept == sorted([by_sha.name, by_size.name, paths[-1].name]), kept
    assert mf.manifest_path(by_sha).exists() and mf.manifest_path(by_size).exists()


def test_a_manifest_edited_and_never_verified_is_read_before_prune_deletes_it(tmp_path):
    """The cheap listing takes a size that disagrees with the manifest for a cut dump
    (corrupt, "not read yet"); prune reads it before deleting and finds it whole."""
    settings, config, paths = setup(tmp_path, days=3, verify=False)
    for p in paths[1:]:
        cli(config, "verify", p.name)
    edit_manifest(paths[0], size=paths[0].stat().st_size - 10)
    listed = load_inventory(settings).find(paths[0].name)
    assert listed.status == "corrupt" and "not read yet" in listed.status_detail
    proc = cli(config, "prune", "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    assert paths[0].name in remaining(settings)
    assert load_inventory(settings).find(paths[0].name).status == "mismatch"


def test_a_prune_killed_mid_deletion_is_finished_not_replayed(tmp_path, s3, s3_bucket):
    """`kill -9` while prune deletes the first dump of its plan (the off-site store is slow to
    delete its env copy); the next prune, with a policy that keeps everything, finishes that
    dump's remaining files and deletes nothing else."""
    import signal
    import time

    from support.backup_history import mirror
    from support.faultproxy import FaultProxy

    from fovea_tui.engine.backups.prune_journal import journal_path
    from fovea_tui.engine.infra.stores import open_store

    proxy = FaultProxy(s3.endpoint_url).start()
    try:
        settings = make_settings(tmp_path, offsite=f"s3://{s3_bucket}/db/", endpoint_url=proxy.endpoint_url)
        config = tmp_path / "fovea-tui.toml"
        config.write_text(f'[backups]\ndir = "{settings.backups_dir}"\noffsite = "{settings.backups.offsite}"\n'
                          f'[retention]\ntimezone = "UTC"\n[s3]\nendpoint_url = "{proxy.endpoint_url}"\n'
                          'region = "us-east-1"\n')
        paths = History(settings).daily(T0, 7)
        store = open_store(settings.backups.offsite, settings.s3)
        mirror(settings, store)
        slow = proxy.add("DELETE", ".env", delay=60)
        proc = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(config), "prune",
                                 "--keep-last", "1", "--keep-daily", "0", "--keep-weekly", "0"],
                                cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while slow.hits == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert slow.hits == 1, proc.communicate()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proxy.clear()
        journaled = {i["dump"] for i in json.loads(journal_path(settings).read_text())["items"]}
        offsite_now = {o.key for o in store.iter_objects("fovea-")}
        gone = [p.name for p in paths if p.name not in offsite_now]
        assert len(gone) == 1, gone  # the dump in flight: its off-site copy deleted, its env copy not
        in_flight = gone[0]
        stem = in_flight[: -len(".sql.gz")]

        proc = cli(config, "prune", "--keep-last", "100", "--json")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert {d["dump"] for d in result["deleted"]} == {in_flight}
        assert not any(p.name.startswith(stem) for p in settings.backups_dir.iterdir())
        keys = [o.key for o in store.iter_objects("fovea-")]
        assert not any(k.startswith(stem) for k in keys)
        for p in (p for p in paths if p.name != in_flight):  # every other dump, local and off-site, with its siblings
            assert p.exists() and mf.manifest_path(p).exists()
            assert {p.name, p.name + ".manifest.json", p.name[: -len(".sql.gz")] + ".env"} <= set(keys)
        assert not journal_path(settings).exists()
        assert journaled == {in_flight}  # the journal held the dump in flight, not the rest of the plan
    finally:
        proxy.stop()


def test_a_whole_plan_journaled_by_an_older_version_is_not_replayed(tmp_path):
    """A journal as the previous version wrote it (every file of a killed prune's plan), the
    first dump half deleted: only that dump is finished under the new policy."""
    from fovea_tui.engine.backups.prune_journal import journal_path

    settings, config, paths = setup(tmp_path, days=5)
    items = []
    for p in paths[:3]:
        stem = p.name[: -len(".sql.gz")]
        items += [{"dump": p.name, "location": "local", "key": k}
                  for k in (p.name, stem + ".env", p.name + ".manifest.json")]
    journal_path(settings).write_text(json.dumps({"written_at": "2026-11-01T00:00:00+00:00", "items": items}))
    paths[0].unlink()  # the dump in flight: its dump file went, its env copy and manifest not yet

    proc = cli(config, "prune", "--keep-last", "100", "--json")
    assert proc.returncode == 0, proc.stderr
    stem = paths[0].name[: -len(".sql.gz")]
    assert not any(p.name.startswith(stem) for p in settings.backups_dir.iterdir())
    assert remaining(settings) == sorted(p.name for p in paths[1:])
    assert not journal_path(settings).exists()
