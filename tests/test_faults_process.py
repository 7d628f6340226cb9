"""Process, database and Docker faults: pg_dump killed mid-stream, the Postgres container
stopped mid-backup, the Docker socket missing or refused, a compose service missing, a
container that never becomes healthy, fovea-tui SIGKILLed at every step of backup and prune,
two instances at once. Then the next run: nothing half-written is taken for a backup, the
locks of dead processes are free, what remains is whole.

Covered elsewhere (not repeated here): the pg_dump backend terminated mid-table, a full
disk, a SIGKILLed backup mid-stream and the backup lock (test_backup.py); the postgres
service stopped before a backup (test_backup_docker_offsite.py); a restore runner SIGKILLed
mid-step then resumed, a SQL error rolled back, a second restore refused (test_restore.py);
a prune whose store vanished half-way (test_prune.py); locks of killed processes
(test_locks.py).
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.backup_history import History, make_settings
from test_backup_helpers import REPO, direct_config, run_cli, settings_and_config, visible_and_temp, write_env

from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.inventory import load_inventory
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.backups.verify import verify_dump
from fovea_tui.engine.infra.stack import Stack
from fovea_tui.errors import ConfigError, OperationFailed

T0 = datetime(2026, 1, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def mid_db(direct_pg):
    """A seeded database with one table big enough that pg_dump is mid-stream for a moment."""
    name = direct_pg.create_database(direct_pg.unique_name("fovea_mid"))
    direct_pg.psql("CREATE TABLE filler AS SELECT i, md5(i::text) AS t FROM generate_series(1, 200000) i;"
                   "ALTER TABLE filler OWNER TO fovea;", name)
    yield direct_pg.url_for(name)
    direct_pg.drop_database(name)


def _direct(tmp_path, url, **sections):
    env_file, _ = write_env(tmp_path)
    return settings_and_config(tmp_path, direct_config(tmp_path, url, env_file, **sections))


def _children(name: str) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{entry.name}/comm") as fh:
                    comm = fh.read().strip()
            except OSError:
                continue
            if int(fields[1]) == os.getpid() and comm == name:
                pids.append(int(entry.name))
    return pids


def _only_whole_dumps(directory: Path) -> None:
    """Whatever is named like a dump verifies; nothing else looks like one."""
    for path, _ in mf.list_dumps(directory):
        assert verify_dump(path).status == "verified", path


# ---------------------------------------------------------------- the database side


def test_pg_dump_killed_mid_stream_leaves_nothing(mid_db, tmp_path, monkeypatch):
    settings, _ = _direct(tmp_path, mid_db)
    killed = []

    def progress(event):
        if event.phase == "dump" and not killed:
            for pid in _children("pg_dump"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with pytest.raises(OperationFailed) as info:
        run_backup(settings, progress=progress)
    assert killed
    assert "pg_dump" in str(info.value) and ("exit -9" in str(info.value) or "cut short" in str(info.value))
    assert visible_and_temp(settings.backups_dir) == []


@pytest.mark.docker
def test_postgres_container_stopped_mid_backup(stack, tmp_path):
    stack.psql("CREATE TABLE filler AS SELECT i, md5(i::text) AS t FROM generate_series(1, 300000) i")
    settings = stack.settings(tmp_path)
    stopped = []

    def progress(event):
        if event.phase == "dump" and not stopped:
            stopped.append(True)
            stack.container("postgres").stop(timeout=5)

    with pytest.raises(OperationFailed) as info:
        run_backup(settings, progress=progress, offsite=False)
    assert stopped and "pg_dump" in str(info.value)
    assert [n for n in visible_and_temp(settings.backups_dir)] == []
    stack.ensure_running()
    stack.psql("DROP TABLE filler")
    result = run_backup(settings, offsite=False)  # the next run works
    assert verify_dump(result.path).status == "verified"


@pytest.mark.docker
def test_a_compose_service_that_is_missing(stack, tmp_path):
    settings = stack.settings(tmp_path, database={"service": "db-that-is-not-there"})
    with pytest.raises(ConfigError) as info:
        run_backup(settings, offsite=False)
    assert info.value.key == "database.service" and "db-that-is-not-there" in str(info.value)
    cfg = tmp_path / "c.toml"
    import tomli_w

    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    r = run_cli("--config", str(cfg), "backup", "--json")
    assert r.returncode == 2 and "has no service 'db-that-is-not-there'" in r.stderr
    settings = stack.settings(tmp_path, install={"compose_project": "no-such-project"})
    with pytest.raises(ConfigError, match="no containers of compose project 'no-such-project'"):
        run_backup(settings, offsite=False)


@pytest.mark.docker
def test_a_container_that_never_becomes_healthy_times_out_clearly(docker_client, test_stack):
    from support.teststack import BASE_IMAGE, ensure_base_image

    ensure_base_image(docker_client)
    project = f"fovea-unhealthy-{os.getpid()}"
    mounts = [{"Target": d, "Source": d, "Type": "bind", "ReadOnly": True} for d in ("/usr", "/lib", "/bin")
              if os.path.exists(d)]
    from docker.types import Mount

    c = docker_client.containers.create(
        BASE_IMAGE, command=["/bin/sleep", "300"], name=project + "-backend-1", network_mode="host",
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "backend"},
        mounts=[Mount(m["Target"], m["Source"], type="bind", read_only=True) for m in mounts] +
        ([Mount("/lib64", "/lib64", type="bind", read_only=True)] if os.path.exists("/lib64") else []),
        healthcheck={"test": ["CMD", "/bin/false"], "interval": 200_000_000, "retries": 1000})
    try:
        t0 = time.monotonic()
        with pytest.raises(OperationFailed) as info:
            Stack(docker_client, project).start(["backend"], timeout=2)
        assert time.monotonic() - t0 < 15
        assert "service backend did not become healthy within 2 s" in str(info.value)
        assert "docker logs " + project + "-backend-1" in str(info.value)
    finally:
        c.remove(force=True)


@pytest.mark.parametrize("host", ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
def test_docker_socket_missing_or_refused(host, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[backups]\ndir = "{tmp_path / "b"}"\n[install]\nenv_file = "{tmp_path / "none"}"\n')
    r = run_cli("--config", str(cfg), "backup", "--json", env={"DOCKER_HOST": host}, timeout=60)
    assert r.returncode == 1 and "no Docker engine answers on this host" in r.stderr
    assert json.loads(r.stdout)["kind"] == "DockerUnavailable"
    assert visible_and_temp(tmp_path / "b") == []
    r = run_cli("--config", str(cfg), "status", "--json", env={"DOCKER_HOST": host}, timeout=60)
    assert r.returncode == 1 and "Docker" in json.loads(r.stdout)["database"]["error"]


# ---------------------------------------------------------------- SIGKILL at every step

_KILLER = textwrap.dedent("""
    import os, signal, sys
    target, nth, action = sys.argv[1], int(sys.argv[2]), os.environ.get("FAULT_ACTION", "kill")
    calls = [0]
    module, _, attr = target.rpartition(".")
    import importlib
    owner = importlib.import_module(module)
    original = getattr(owner, attr)
    def wrapped(*a, **kw):
        calls[0] += 1
        if calls[0] == nth and action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if calls[0] == nth and action.startswith("sleep:"):
            import time
            time.sleep(float(action[6:]))
        return original(*a, **kw)
    setattr(owner, attr, wrapped)
    from fovea_tui.cli.main import main
    sys.exit(main(sys.argv[3:]))
""")


def _run_killed(target: str, nth: int, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _KILLER, target, str(nth), *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


# Each point is a file-system step of a backup: (function, which call).
BACKUP_STEPS = [
    ("fovea_tui.engine.backups.pipeline.stream_to_file", 1),     # pg_dump started, nothing written yet
    ("os.fsync", 1),                                 # the dump's bytes written, not yet synced
    ("os.rename", 1),                                # complete temp dump, not yet renamed
    ("os.rename", 2),                                # dump in place, env copy not yet
    ("fovea_tui.engine.backups.manifest.write", 1),          # dump and env copy, no manifest yet
    ("os.replace", 2),                               # manifest temp written, not yet renamed
    ("fovea_tui.engine.backups.verify_cache.remember_verified", 1),  # all written, cache not updated
]


@pytest.mark.parametrize("target,nth", BACKUP_STEPS, ids=[f"{t.rsplit('.', 1)[1]}#{n}" for t, n in BACKUP_STEPS])
def test_backup_sigkilled_at_every_step_then_the_next_run(fresh_direct_db, tmp_path, target, nth):
    settings, cfg = _direct(tmp_path, fresh_direct_db.url)
    r = _run_killed(target, nth, "--config", str(cfg), "backup", "--no-offsite")
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    _only_whole_dumps(settings.backups_dir)  # a dump's name only on a complete, fsynced dump
    inv = load_inventory(settings, include_offsite=False)
    assert all(e.status != "verified" or e.manifest is not None for e in inv)
    # The lock died with the process; the next run cleans temp files and succeeds.
    r = run_cli("--config", str(cfg), "backup", "--json", "--no-offsite")
    assert r.returncode == 0, r.stderr
    left = visible_and_temp(settings.backups_dir)
    assert not [n for n in left if n.startswith(".")], left
    _only_whole_dumps(settings.backups_dir)
    assert json.loads(run_cli("--config", str(cfg), "list", "--json", "--no-offsite").stdout)["counts"]["corrupt"] == 0


@pytest.mark.parametrize("nth", [1, 2, 3, 4, 5, 6])
def test_prune_sigkilled_at_every_deletion_then_the_next_run(tmp_path, nth):
    import tomli_w

    settings = make_settings(tmp_path, keep_daily=2, keep_weekly=0)
    History(settings).daily(T0, 4)  # two forgotten dumps: 2 x (dump, env copy, manifest) deletions
    cfg = tmp_path / "c.toml"
    cfg.write_text(tomli_w.dumps(settings.to_toml_dict()))
    plan = json.loads(run_cli("--config", str(cfg), "prune", "--dry-run", "--json").stdout)
    kept = {k["name"] for k in plan["keep"]}
    r = _run_killed("os.unlink", nth, "--config", str(cfg), "prune", "--json")
    assert r.returncode == -signal.SIGKILL, r.stderr
    # No dump lost its manifest while still there; kept dumps are untouched.
    for path, parsed in mf.list_dumps(settings.backups_dir):
        if parsed.name in kept:
            assert mf.manifest_path(path).exists() and mf.env_copy_path(path).exists()
    _only_whole_dumps(settings.backups_dir)
    r = run_cli("--config", str(cfg), "prune", "--json")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in settings.backups_dir.iterdir() if p.is_file())
    assert sorted(n for n in names if n.endswith(".sql.gz")) == sorted(kept)
    assert len(names) == 3 * len(kept)  # each with its manifest and env copy, no orphans


# ---------------------------------------------------------------- two instances at once


def test_cron_and_a_person_at_once(mid_db, tmp_path):
    settings, cfg = _direct(tmp_path, mid_db)
    # The cron run holds the lock for a while: it pauses 8 s as its dump starts.
    first = subprocess.Popen([sys.executable, "-c", _KILLER, "fovea_tui.engine.backups.pipeline.stream_to_file", "1",
                              "--config", str(cfg), "backup", "--json"], env={**os.environ, "FAULT_ACTION": "sleep:8"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lock = settings.state_dir / "backups.lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (lock.exists() and lock.stat().st_size > 0):
        time.sleep(0.01)
    # The person's restore names a dump that exists (outside backups.dir, so the count
    # below is unchanged): what refuses it must be the lock, not the name.
    elsewhere = tmp_path / "elsewhere" / "fovea-20260101T000000Z.sql.gz"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(gzip.compress(b"-- PostgreSQL database dump\n-- PostgreSQL database dump complete\n"))
    seconds = [run_cli("--config", str(cfg), *args) for args in (
        ["backup", "--json"], ["prune", "--json"], ["restore", "--yes", "--json", str(elsewhere)])]
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    for r in seconds:
        assert r.returncode == 3, r.stdout + r.stderr
        assert f"pid {first.pid}" in r.stdout + r.stderr and "backup" in r.stdout + r.stderr
    assert len(mf.list_dumps(settings.backups_dir)) == 1
    _only_whole_dumps(settings.backups_dir)
