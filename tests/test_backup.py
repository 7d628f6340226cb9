"""`fovea-tui backup` in direct mode against a real PostgreSQL 16 + pgvector cluster.

What an operator checks: a dump named as the contract says that `gunzip -c | psql` restores
to the same rows the manifest claims; an env copy at 0600; no secrets anywhere; and after
any failure, nothing that looks like a backup.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.services import unavailable
from test_backup_helpers import (
    DUMP_RE,
    direct_config,
    dump_files,
    restore_by_hand,
    run_cli,
    settings_and_config,
    table_counts,
    visible_and_temp,
    write_env,
)

from fovea_tui.cli.main import main
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.backups.verify_cache import cached_status
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.ops.status import collect_status
from fovea_tui.engine.progress import CancelToken
from fovea_tui.errors import Cancelled, LockHeld, OperationFailed, SafetyRefusal

BIG_ROWS = 700_000  # ~90 MB of COPY data: pg_dump is mid-table for a while


@pytest.fixture
def direct(fresh_direct_db, tmp_path):
    env_file, env_values = write_env(tmp_path)
    data = direct_config(tmp_path, fresh_direct_db.url, env_file)
    settings, cfg = settings_and_config(tmp_path, data)
    return fresh_direct_db, settings, cfg, env_values


@pytest.fixture(scope="module")
def big_db(direct_pg):
    """A seeded database plus one big table, shared by the failure tests of this module."""
    name = direct_pg.create_database(direct_pg.unique_name("fovea_big"))
    direct_pg.psql(
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5((i * 7)::text) || md5((i * 13)::text) AS t "
        f"FROM generate_series(1, {BIG_ROWS}) AS i; ALTER TABLE big OWNER TO fovea;", name)
    yield name
    direct_pg.drop_database(name)


def _big_settings(direct_pg, big_db, tmp_path, backups_dir=None):
    env_file, env_values = write_env(tmp_path)
    data = direct_config(tmp_path, direct_pg.url_for(big_db), env_file)
    if backups_dir is not None:
        data["backups"]["dir"] = str(backups_dir)
    settings, cfg = settings_and_config(tmp_path, data)
    return settings, cfg, env_values


# ---------------------------------------------------------------- the happy path


def test_backup_restores_by_hand_to_the_rows_of_the_manifest(direct, tmp_path, capsys):
    db, settings, cfg, _ = direct
    code = main(["--config", str(cfg), "backup", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    result = json.loads(out)
    dump = Path(result["path"])
    assert DUMP_RE.match(dump.name) and dump.parent == settings.backups_dir
    assert dump.stat().st_size == result["size"]
    assert result["offsite"] is None
    assert set(result) >= {"path", "size", "sha256", "tables", "duration_s", "offsite"}

    # The manifest: every key of the contract, numbers that match the dump and the database.
    manifest = json.loads(mf.manifest_path(dump).read_text())
    for key in ("created_at", "database", "server_version", "pg_dump_version", "size", "sha256", "tables",
                "prisma_migrations", "env_file", "duration_s", "tool_version", "kind", "warnings", "mode"):
        assert key in manifest, key
    assert manifest["size"] == result["size"] and manifest["sha256"] == result["sha256"]
    assert manifest["mode"] == "direct" and manifest["kind"] == "regular" and manifest["warnings"] == []
    assert manifest["server_version"].startswith("16")
    assert "pg_dump" in manifest["pg_dump_version"]
    live = table_counts(db.psql, db.name)
    assert manifest["tables"] == live
    assert manifest["prisma_migrations"] == [
        m for m in db.psql("SELECT migration_name FROM _prisma_migrations ORDER BY finished_at, migration_name").split()]
    assert len(manifest["prisma_migrations"]) > 0

    # The env copy beside it: 0600, byte for byte, named in the manifest with its sha256.
    env_copy = mf.env_copy_path(dump)
    assert stat.S_IMODE(env_copy.stat().st_mode) == 0o600
    assert env_copy.read_bytes() == Path(settings.install.env_file).read_bytes()
    assert manifest["env_file"] == {"name": env_copy.name, "sha256": mf.file_sha256(env_copy)}

    # The runbook's restore, by hand, into a new empty database.
    target = db.cluster.unique_name("restored")
    db.cluster.create_database(target, seeded=False)
    try:
        env = db.cluster.env()
        env["PGDATABASE"] = target
        r = restore_by_hand(dump, db.bin_dir, env)
        assert r.returncode == 0, r.stderr
        assert table_counts(db.psql, target) == manifest["tables"]
    finally:
        db.cluster.drop_database(target)

    # The backup engine checked what it wrote: the verification cache says so already.
    assert cached_status(settings, dump) == "verified"
    assert verify_dump(dump).status == "verified"
    # And the audit log has the run.
    entries = audit.read(settings, action="backup")
    assert entries[-1]["outcome"] == "ok" and entries[-1]["details"]["name"] == dump.name


def test_text_output_and_second_backup_in_the_same_second(direct, capsys):
    db, settings, cfg, _ = direct
    assert main(["--config", str(cfg), "backup"]) == 0
    assert main(["--config", str(cfg), "backup"]) == 0
    out = capsys.readouterr().out
    assert out.count("backup ") == 2 and "env copy" in out
    dumps = [n for n in dump_files(settings.backups_dir) if n.endswith(".sql.gz")]
    assert len(dumps) == 2 and all(DUMP_RE.match(n) for n in dumps)


def test_pre_restore_kind_and_engine_api(direct):
    db, settings, _, _ = direct
    now = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    result = run_backup(settings, progress=lambda e: None, cancel=CancelToken(), now=now, kind="pre-restore")
    assert result.name == "fovea-20260304T050607Z-pre-restore.sql.gz"
    assert mf.read_for(result.path).kind == "pre-restore"
    assert result.env_copy.name == "fovea-20260304T050607Z-pre-restore.env"
    assert result.path.exists() and result.manifest_path.exists()


def test_no_secret_reaches_output_json_manifest_or_logs(direct, tmp_path):
    db, settings, cfg, env_values = direct
    secrets_ = [v for v in env_values.values() if len(v) >= 6] + [db.password]
    runs = [run_cli("--config", str(cfg), "backup", "--json"), run_cli("--config", str(cfg), "backup")]
    # A failing run too: the server refuses the password (its error text must stay clean).
    bad = direct_config(tmp_path, db.url.replace("%40", "%40x", 1), Path(settings.install.env_file))
    bad["backups"]["dir"] = str(tmp_path / "bad-backups")
    (tmp_path / "bad").mkdir()
    _, bad_cfg = settings_and_config(tmp_path / "bad", bad)
    runs.append(run_cli("--config", str(bad_cfg), "backup", "--json"))
    assert [r.returncode for r in runs] == [0, 0, 1], [r.stderr for r in runs]
    assert json.loads(runs[2].stdout)["ok"] is False
    texts = [r.stdout + r.stderr for r in runs]
    for path in settings.backups_dir.iterdir():
        if path.is_file() and not path.name.endswith((".env", ".sql.gz")):
            texts.append(path.read_text())
    for path in settings.state_dir.iterdir():
        texts.append(path.read_text())
    for text in texts:
        for value in secrets_:
            assert value not in text
    env_copies = [p for p in settings.backups_dir.iterdir() if p.name.endswith(".env")]
    assert len(env_copies) == 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in env_copies)
    assert stat.S_IMODE(settings.backups_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(settings.state_dir.stat().st_mode) == 0o700


# ---------------------------------------------------------------- plausibility and status


def test_a_table_emptied_since_the_last_backup_is_kept_but_flagged(direct, capsys):
    db, settings, cfg, _ = direct
    first = run_backup(settings)
    assert first.warnings == []
    db.psql("TRUNCATE claims, claim_relations, annotations CASCADE")
    assert main(["--config", str(cfg), "backup", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert Path(result["path"]).exists()
    text = " ".join(result["warnings"])
    assert "annotations is empty" in text and "claims is empty" in text
    assert "median size" in text  # most of the data went: the dump shrank well below half
    assert mf.read_for(Path(result["path"])).warnings == result["warnings"]

    report = collect_status(settings).as_dict()
    card = report["backups"]
    assert card["count"] == 2 and card["last"]["name"] == Path(result["path"]).name
    assert card["summary"].startswith("last backup ")
    messages = [a["message"] for a in report["alerts"] if a["subject"] == "backups"]
    assert any("annotations is empty" in m for m in messages)


def test_status_alerts_for_an_old_backup_and_a_missing_env_copy(direct):
    db, settings, _, _ = direct
    report = collect_status(settings).as_dict()
    assert any(a["subject"] == "backups" and a["level"] == "critical" for a in report["alerts"])
    result = run_backup(settings)
    result.env_copy.unlink()
    later = datetime.now(UTC) + timedelta(hours=30)
    report = collect_status(settings, now=later).as_dict()
    messages = {a["message"]: a["level"] for a in report["alerts"] if a["subject"] == "backups"}
    assert any(m.startswith("no backup in 30 h") and lvl == "critical" for m, lvl in messages.items())
    assert messages.get("env file not copied with the last backup") == "warning"


def test_missing_env_file_still_backs_up_and_says_so(fresh_direct_db, tmp_path):
    """The dump is kept, but a backup without the configured env file is incomplete (issue 14)."""
    from fovea_tui.engine.backups.pipeline import BackupIncomplete

    data = direct_config(tmp_path, fresh_direct_db.url, tmp_path / "nowhere" / ".env")
    settings, _ = settings_and_config(tmp_path, data)
    with pytest.raises(BackupIncomplete) as info:
        run_backup(settings)
    result = info.value.result
    assert info.value.exit_code == 1 and "does not exist" in info.value.message
    assert result.env_copy is None and not result.ok
    assert any("env file not copied" in w for w in result.warnings)
    assert mf.read_for(result.path).env_file is None


# ---------------------------------------------------------------- failures leave nothing


def test_pg_dump_backend_terminated_mid_table_leaves_no_dump(direct_pg, big_db, tmp_path):
    settings, cfg, _ = _big_settings(direct_pg, big_db, tmp_path)
    terminated: list[str] = []

    def progress(event):
        # Progress is throttled by time, so the first event can come tens of MiB in: act on
        # the first one. The sleep blocks this thread, the bounded queue fills and pg_dump
        # blocks mid-COPY; only a backend still sending `big` is terminated (one that has
        # sent it all is idle with the same query text, and pg_dump would fail on the next).
        if event.phase != "dump" or terminated:
            return
        time.sleep(0.5)
        out = direct_pg.psql(
            "SELECT query FROM pg_stat_activity WHERE application_name = 'fovea-tui' "
            "AND state = 'active' AND query LIKE 'COPY public.big %' "
            "AND pg_terminate_backend(pid)", db="postgres")
        if out.strip():
            terminated.append(out.strip())

    with pytest.raises(OperationFailed) as info:
        run_backup(settings, progress=progress)
    assert terminated and terminated[0].startswith("COPY public.big"), terminated
    message = str(info.value)
    assert message.startswith("pg_dump on ") and 'table "big" failed' in message
    assert "server closed the connection" in message or "terminating connection" in message
    assert info.value.exit_code == 1
    assert visible_and_temp(settings.backups_dir) == []
    entries = audit.read(settings, action="backup")
    assert entries[-1]["outcome"] == "failed"


def test_killed_run_leaves_only_a_temp_file_that_the_next_run_removes(direct_pg, big_db, tmp_path):
    settings, cfg, _ = _big_settings(direct_pg, big_db, tmp_path)
    proc = subprocess.Popen([os.sys.executable, "-m", "fovea_tui", "--config", str(cfg), "backup"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parent.parent)
    deadline = time.monotonic() + 60
    partial = []
    while time.monotonic() < deadline and not partial:
        if settings.backups_dir.exists():
            partial = [p for p in settings.backups_dir.iterdir() if p.name.endswith(".partial")
                       and p.stat().st_size > 0]
        time.sleep(0.01)
    assert partial, "the backup never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    names = visible_and_temp(settings.backups_dir)
    assert dump_files(settings.backups_dir) == []  # nothing named like a dump, manifest or env copy
    assert names and all(n.startswith(".fovea-") and n.endswith(".partial") for n in names)

    # The lock died with the process; the next run cleans up and succeeds.
    r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["tables"]["big"] == BIG_ROWS
    left = visible_and_temp(settings.backups_dir)
    assert not [n for n in left if n.endswith(".partial")]
    assert len([n for n in left if n.endswith(".sql.gz")]) == 1


@pytest.fixture
def tiny_fs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        unavailable(f"cannot mount a small tmpfs here: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_leaves_no_dump_and_exits_1(direct_pg, big_db, tmp_path, tiny_fs):
    settings, cfg, _ = _big_settings(direct_pg, big_db, tmp_path, backups_dir=tiny_fs / "backups")
    r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "no space left" in r.stderr
    assert json.loads(r.stdout)["ok"] is False
    assert visible_and_temp(settings.backups_dir) == []
    # The space is given back, so the next (smaller) run can work.
    assert os.statvfs(tiny_fs).f_bfree * os.statvfs(tiny_fs).f_frsize > 2 << 20


def test_cancel_leaves_nothing(direct):
    db, settings, _, _ = direct
    cancel = CancelToken()

    def progress(event):
        if event.phase == "dump":
            cancel.cancel("operator pressed Cancel")

    with pytest.raises(Cancelled):
        run_backup(settings, progress=progress, cancel=cancel)
    assert visible_and_temp(settings.backups_dir) == []


# ---------------------------------------------------------------- guards


def test_a_second_backup_is_refused_while_the_lock_is_held(direct):
    db, settings, cfg, _ = direct
    with acquire(settings, "backups", purpose="prune"):
        r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 3, r.stderr
    assert "prune" in r.stderr and f"pid {os.getpid()}" in r.stderr
    assert json.loads(r.stdout)["kind"] == "LockHeld"
    assert dump_files(settings.backups_dir) == []
    # In this process another thread (a second TUI worker) is refused as well.
    errors = []
    with acquire(settings, "backups", purpose="backup"):
        t = threading.Thread(target=lambda: _catch(errors, lambda: run_backup(settings)))
        t.start()
        t.join()
    assert errors and isinstance(errors[0], LockHeld)


def _catch(errors, fn):
    try:
        fn()
    except Exception as exc:  # noqa: BLE001
        errors.append(exc)


def test_world_writable_backups_dir_is_refused(direct):
    db, settings, cfg, _ = direct
    settings.backups_dir.mkdir(mode=0o755)
    os.chmod(settings.backups_dir, 0o777)
    with pytest.raises(SafetyRefusal):
        run_backup(settings)
    assert main(["--config", str(cfg), "backup"]) == 3
    os.chmod(settings.backups_dir, 0o1777)  # sticky, like /tmp: allowed
    assert run_backup(settings).path.exists()
