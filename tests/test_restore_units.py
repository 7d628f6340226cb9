"""Restore pieces that need no Docker: choosing (and fetching) a dump, the confirmation gate,
job state files, the report shape, the CLI's usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.backup_history import History, make_settings

from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.infra.stores import safe_relative_key
from fovea_tui.engine.restore.context import RestoreContext
from fovea_tui.engine.restore.preflight import read_dump_head, tables_touched
from fovea_tui.engine.restore.steps import ChooseDump, Confirm
from fovea_tui.engine.volume.storage import VolumeFiles, pathlib_key, video_key
from fovea_tui.errors import Cancelled, SafetyRefusal

REPO = Path(__file__).resolve().parent.parent


def handle_for(settings, **params):
    job_id = jobs.create_job(settings, "restore", {"dump": "x", "database": "fovea", **params})
    directory = jobs.jobs_dir(settings)
    data = jobs.read_state(directory, job_id)
    return jobs.JobHandle(directory, job_id, data, settings)


def test_choose_fetches_from_offsite_verified(tmp_path):
    offsite = tmp_path / "offsite"
    History(make_settings(tmp_path, backups_dir=offsite)).add("fovea-20261101T020000Z.sql.gz", verify=False)
    settings = make_settings(tmp_path, offsite=str(offsite))
    handle = handle_for(settings, dump="fovea-20261101T020000Z.sql.gz")
    ctx = RestoreContext(handle)
    try:
        detail = ChooseDump().run(ctx)
    finally:
        handle.close()
    local = settings.backups_dir / "fovea-20261101T020000Z.sql.gz"
    assert "fetched from off-site" in detail
    assert local.read_bytes() == (offsite / local.name).read_bytes()
    assert ctx.facts["manifest"]["sha256"] and ctx.facts["dump_path"] == str(local)
    assert (settings.backups_dir / (local.name + ".manifest.json")).is_file()


def test_choose_refuses_unknown_dump(tmp_path):
    settings = make_settings(tmp_path)
    handle = handle_for(settings, dump="fovea-20990101T000000Z.sql.gz")
    try:
        with pytest.raises(SafetyRefusal):
            ChooseDump().run(RestoreContext(handle))
    finally:
        handle.close()


def test_confirm_needs_the_exact_name(tmp_path):
    settings = make_settings(tmp_path)
    handle = handle_for(settings)
    ctx = RestoreContext(handle)
    ctx.__dict__["db"] = type("DB", (), {"name": "fovea"})()
    try:
        jobs.write_control(settings, handle.id, "confirm", "fovea2")
        with pytest.raises(Cancelled, match="did not match"):
            Confirm().run(ctx)
        jobs.write_control(settings, handle.id, "confirm", "fovea")
        assert "typed 'fovea'" in Confirm().run(ctx)
        (jobs.jobs_dir(settings) / f"{handle.id}.confirm").unlink()
        ctx.params["confirm_timeout_s"] = 0.3
        with pytest.raises(Cancelled, match="nobody confirmed"):
            Confirm().run(ctx)
    finally:
        handle.close()


def test_job_state_interrupted_and_report_shape(tmp_path):
    settings = make_settings(tmp_path)
    job_id = engine.start_restore(settings, "fovea-20261101T020000Z.sql.gz", detach=False)
    data = jobs.load_job(settings, job_id)
    assert data["alive"] is False and jobs.effective_status(data) == "pending"
    data["status"] = "running"
    data["steps"][4]["status"] = "running"
    assert jobs.effective_status(data) == "interrupted"
    assert "--resume" in engine.describe_status(data) and "--rollback" in engine.describe_status(data)
    result = engine.report(data)
    assert set(result) >= {"ok", "dump", "steps", "verification"}
    assert result["ok"] is False and result["dump"] == "fovea-20261101T020000Z.sql.gz"
    assert {s["status"] for s in result["steps"]} <= {"ok", "failed", "skipped"}
    assert result["steps"][4]["status"] == "failed" and result["steps"][4]["detail"] == "interrupted"
    assert [j["id"] for j in jobs.list_jobs(settings, "restore")] == [job_id]


def test_dump_head_and_migration_tables(tmp_path):
    import gzip

    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    path.write_bytes(gzip.compress(b"-- Dumped from database version 16.4\n"
                                   b"CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n"
                                   b"CREATE EXTENSION IF NOT EXISTS plpgsql;\n"))
    head = read_dump_head(path)
    assert head.extensions == ["vector"] and head.server_major == 16
    sql = 'ALTER TABLE "videos" ADD COLUMN "checksum" TEXT;\nUPDATE "videos" SET x = 1;\nCREATE INDEX "i" ON "claims"("a");'
    assert tables_touched(sql) == ["claims", "videos"]


def test_video_paths_map_to_keys():
    assert video_key("/videos/a/b.mp4", "b.mp4", "/videos") == "a/b.mp4"
    assert video_key("a/b.mp4", "b.mp4", "/videos") == "a/b.mp4"
    assert video_key("/elsewhere/b.mp4", "b.mp4", "/videos") == "b.mp4"
    assert video_key("", "b.mp4", "/videos") == "b.mp4"
    assert video_key("/videos//a/./b.mp4", "b.mp4", "/videos/") == "a/b.mp4"
    assert video_key("/videos/../etc/passwd", "x", "/videos") == "../etc/passwd"  # kept: refused where used


_PARTS = st.sampled_from(["videos", "a", "b.mp4", "", ".", "..", "c:", "x\\y", "é", "sp ace"])


@given(row=st.lists(_PARTS, max_size=5), absolute=st.booleans(), filename=st.sampled_from(["", "f.mp4", "b.mp4"]),
       storage=st.sampled_from(["/videos", "/videos/", "/videos/a", "/", "", "/data//videos"]))
def test_video_key_is_what_pathlib_gives(row, absolute, filename, storage):
    row_path = ("/" if absolute else "") + "/".join(row)
    assert video_key(row_path, filename, storage) == pathlib_key(row_path, filename, storage)


def test_volume_files_answer_as_a_stat_per_file_would(tmp_path):
    """VolumeFiles lists each directory once instead of a stat per row; its answers must be
    those of `safe_relative_key(key) and (volume / key).is_file()`, hostile keys included."""
    volume = tmp_path / "videos"
    (volume / "a" / "deep").mkdir(parents=True)
    for name in ("top.mp4", "a/in-a.mp4", "a/deep/d.mp4", "a/deep/..x", "sp ace.mp4"):
        (volume / name).write_bytes(b"v")
    (volume / "dir.mp4").mkdir()                                   # a directory is no video file
    (volume / "link.mp4").symlink_to(volume / "top.mp4")           # a link to a file counts, as is_file says
    (volume / "dangling.mp4").symlink_to(volume / "gone.mp4")
    (tmp_path / "outside.mp4").write_bytes(b"o")
    (volume / "a" / "up").symlink_to(tmp_path)                     # a linked directory is followed, as a stat would
    keys = ["top.mp4", "a/in-a.mp4", "a/deep/d.mp4", "a/deep/..x", "sp ace.mp4", "dir.mp4", "link.mp4",
            "dangling.mp4", "missing.mp4", "a/missing.mp4", "nodir/x.mp4", "../outside.mp4", "a/../top.mp4",
            "/etc/passwd", "a//in-a.mp4", "./top.mp4", "a/./in-a.mp4", "a/", "a\\in-a.mp4", "top.mp4\x00",
            "c:/top.mp4", "a/up/outside.mp4", ""]
    files = VolumeFiles(volume)
    for key in keys:
        expected = bool(key) and safe_relative_key(key) is not None and (volume / key).is_file()
        assert files.holds(key) is expected, key


def _cli(args, tmp_path):
    config = tmp_path / "fovea-tui.toml"
    config.write_text(f'[backups]\ndir = "{tmp_path / "backups"}"\n')
    return subprocess.run([sys.executable, "-m", "fovea_tui", "--config", str(config), *args], capture_output=True,
                          text=True, cwd=REPO, stdin=subprocess.DEVNULL, timeout=60)


def test_cli_without_tty_and_without_yes_is_usage_error(tmp_path):
    proc = _cli(["restore", "fovea-20261101T020000Z.sql.gz", "--json"], tmp_path)
    assert proc.returncode == 2
    assert "--yes" in proc.stderr
    assert json.loads(proc.stdout)["ok"] is False
    assert not jobs.jobs_dir(make_settings(tmp_path)).exists()  # nothing started


def test_cli_resume_of_unknown_job_and_conflicting_args(tmp_path):
    assert _cli(["restore", "--resume", "restore-nope", "--yes"], tmp_path).returncode == 1
    assert _cli(["restore", "x", "--follow", "y"], tmp_path).returncode == 2
    assert _cli(["restore"], tmp_path).returncode == 2


def test_a_dump_name_that_is_nowhere_is_bad_usage(tmp_path, capsys):
    from fovea_tui.cli.main import main
    from fovea_tui.config import render_toml, settings_from_dict

    settings = settings_from_dict({"backups": {"dir": str(tmp_path / "b"), "offsite": str(tmp_path / "off")},
                                   "install": {"env_file": str(tmp_path / ".env")}})
    (tmp_path / "b").mkdir()
    (tmp_path / "off").mkdir()
    cfg = tmp_path / "c.toml"
    cfg.write_text(render_toml(settings))
    assert main(["--config", str(cfg), "restore", "fovea-19990101T000000Z.sql.gz", "--yes"]) == 2
    err = capsys.readouterr().err
    assert "no dump 'fovea-19990101T000000Z.sql.gz'" in err and "fovea-tui list" in err
    assert not (tmp_path / "b" / ".fovea-tui" / "jobs").exists() or not any((tmp_path / "b" / ".fovea-tui" / "jobs").iterdir())


def _interrupted(prepare: str, restore: str) -> dict:
    """A rename-aside restore whose runner died: the name recorded, prepare and restore as given."""
    return {"status": "interrupted", "facts": {"safety_mode": "rename", "renamed_to": "fovea_pre_restore_x",
                                               "database_dropped": True, "dump": "d.sql.gz"},
            "steps": [{"name": "prepare", "status": prepare}, {"name": "restore", "status": restore}]}


def test_an_interrupted_restore_names_where_the_old_database_is_without_hedging_what_is_known():
    from fovea_tui.engine.restore.runner import state_words

    renamed = state_words(_interrupted("ok", "running"))
    assert renamed == "The database as it was is kept as fovea_pre_restore_x; the rollback renames it back."
    # killed in prepare: the name is recorded before the rename, which may not have happened
    maybe = state_words(_interrupted("running", "pending"))
    assert "fovea_pre_restore_x (or still under its own name if the runner stopped before renaming it)" in maybe


def test_the_rollback_question_says_what_this_job_would_undo():
    """The words a face asks before a rollback come from what the job recorded: a rename is
    renamed back, never 'the safety dump', and a copy that is gone is never promised back."""
    data = {**_interrupted("ok", "running"), "params": {"database": "fovea"}}
    renamed = engine.rollback_plan(data)
    assert renamed == ("Drop the restored database fovea and rename fovea_pre_restore_x (the database as it was) "
                       "back to fovea.")
    data["facts"]["aside_lost"] = True
    lost = engine.rollback_plan(data)
    assert "no longer on the server" in lost and "rename fovea_pre_restore_x" not in lost
    dumped = {"facts": {"safety_mode": "dump", "database_dropped": True, "safety_dump": "/b/fovea-1-pre-restore.sql.gz",
                        "was_running": ["backend", "frontend"]},
              "params": {"database": "fovea"}, "steps": [{"name": "start", "status": "pending"}]}
    assert engine.rollback_plan(dumped) == ("Restore the safety dump fovea-1-pre-restore.sql.gz into database fovea, "
                                            "then start backend, frontend again.")
    untouched = {"facts": {"safety_mode": "rename", "database_dropped": False}, "params": {"database": "fovea"}}
    assert engine.rollback_plan(untouched) == "Database fovea is as it was: nothing to put back."


def test_a_failed_rollback_that_already_put_the_database_back_asks_for_no_drop():
    """A rollback that renamed the database back and then could not start a service: what is
    left is the services. Asking for `DROP DATABASE fovea` then would drop the database as it
    was (seen in a full run where postgres was stopped again after the rename back)."""
    from fovea_tui.engine.restore.runner import rollback_advice, state_words

    data = {**_interrupted("ok", "failed"), "params": {"database": "fovea"}}
    data["facts"]["was_running"] = ["backend", "frontend"]
    before = rollback_advice(data, "restore-1")
    assert before == ("Once the server answers, retry with `fovea-tui restore --rollback restore-1`, or by hand: "
                      'DROP DATABASE "fovea"; ALTER DATABASE "fovea_pre_restore_x" RENAME TO "fovea".')
    data["facts"]["safety_restored"] = True
    after = rollback_advice(data, "restore-1")
    assert after == ("Once the server answers, retry with `fovea-tui restore --rollback restore-1`: the database "
                     "needs nothing more; it starts backend, frontend again.")
    # the failed start got the backend going before postgres went down again: only the frontend is left
    data["facts"]["started_again"] = ["backend"]
    assert rollback_advice(data, "restore-1").endswith("it starts frontend again.")
    assert state_words(data).endswith("Stopped by the restore and not yet started again: frontend.")
    dumped = {"facts": {"safety_mode": "dump", "database_dropped": True, "safety_dump": "/b/s.sql.gz"},
              "params": {"database": "fovea"}}
    assert "restore it by hand (gunzip -c it into psql)" in rollback_advice(dumped, "restore-1")
    dumped["facts"]["safety_restored"] = True
    assert "by hand" not in rollback_advice(dumped, "restore-1")


def test_the_confirmation_says_what_the_restore_does_to_this_install():
    """Both faces ask in the engine's words: a database the server does not have is created,
    not replaced; without a managed stack nothing is said to be stopped."""
    def job(room: dict, stack: bool, **facts) -> dict:
        return {"params": {"database": "fovea"},
                "facts": {"dump": "d.sql.gz", "preflight": [{"name": "room", "data": room},
                                                             {"name": "engine", "data": {"stack": stack}}], **facts}}

    replaced = engine.confirm_question(job({"rename": True, "oid": 1}, True, safety_mode="rename"))
    assert replaced.startswith("The restore replaces database 'fovea' with d.sql.gz. Every service but the database "
                               "is stopped meanwhile"), replaced
    assert "renamed aside, not dropped" in replaced
    created = engine.confirm_question(job({"rename": False, "exists": False}, False, safety_dump=None))
    assert created == "The restore creates database 'fovea' (the server has none now) from d.sql.gz.", created
    dumped = engine.confirm_question(job({"rename": False}, True, safety_mode="dump",
                                         safety_dump="/b/fovea-1-pre-restore.sql.gz"))
    assert "Safety dump taken: fovea-1-pre-restore.sql.gz" in dumped and "renamed aside" not in dumped


def test_preflight_refuses_a_dump_written_while_it_read_it(tmp_path):
    """Pre-flight's verdict is about bytes that stay: a dump rewritten while it is read (its
    mtime put back) is refused, and the identity the restore step holds the load to is not
    recorded."""
    import gzip
    import os
    from types import SimpleNamespace

    from fovea_tui.engine.progress import CancelToken
    from fovea_tui.engine.restore.preflight import check_dump

    dump = tmp_path / "fovea-20261130T000000Z.sql.gz"
    rows = "".join(f"{i}\tvideo {i}\n" for i in range(200_000))
    sql = ("--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE public.t (id integer, name text);\n\n"
           f"COPY public.t (id, name) FROM stdin;\n{rows}\\.\n\n\n--\n-- PostgreSQL database dump complete\n--\n\n")
    dump.write_bytes(gzip.compress(sql.encode(), compresslevel=1))
    st = dump.stat()
    rewritten = []

    def progress(done, total, unit="bytes") -> None:
        if not rewritten:  # the first read landed: the file is written under the reader
            rewritten.append(done)
            with open(dump, "r+b") as fh:
                fh.write(fh.read(1))
            os.utime(dump, ns=(st.st_atime_ns, st.st_mtime_ns))

    ctx = SimpleNamespace(dump_path=dump, cancel=CancelToken(), progress=progress, facts={}, params={},
                          settings=make_settings(tmp_path))
    check = check_dump(ctx)
    assert rewritten and not check.ok and check.refuse, check
    assert "changed while pre-flight read it" in check.detail and "dump_identity" not in ctx.facts


def test_helper_threads_leave_ctrl_c_to_the_main_thread():
    """A Ctrl-C at the CLI's question must interrupt its read of the terminal: the runner's
    reaper (alive for the whole restore) and the read-ahead's block SIGINT and SIGTERM, so the
    kernel gives them to the main thread. Before, about one Ctrl-C in eight went unheard."""
    import signal
    import threading

    from fovea_tui.engine.infra.jobs import in_background

    def blocked(tid: int) -> int:
        with open(f"/proc/self/task/{tid}/status") as fh:
            return int(next(line for line in fh if line.startswith("SigBlk:")).split()[1], 16)

    before = set(threading.enumerate())
    release = threading.Event()
    in_background(release.wait)
    helper, = set(threading.enumerate()) - before
    try:
        mask = blocked(helper.native_id)
        assert mask & (1 << (signal.SIGINT - 1)) and mask & (1 << (signal.SIGTERM - 1)), hex(mask)
        main = blocked(threading.main_thread().native_id)
        assert not main & (1 << (signal.SIGINT - 1)), hex(main)  # the caller's own mask is as it was
    finally:
        release.set()


def test_a_runner_waits_out_a_glance_at_its_lock_and_refuses_a_real_holder(tmp_path):
    """`is_alive` takes a job's lock shared for an instant while the face that spawned the
    runner waits for it; a runner that met that glance gave up and its restore stayed pending
    forever (seen in a full test run). A runner that really holds the lock still refuses."""
    import fcntl
    import os
    import threading
    import time

    from fovea_tui.engine.infra.jobs import _hold_job_lock
    from fovea_tui.errors import SafetyRefusal

    lock = tmp_path / "restore-x.lock"
    lock.touch()
    glance = os.open(lock, os.O_RDONLY)
    fcntl.flock(glance, fcntl.LOCK_SH)
    threading.Timer(0.2, lambda: os.close(glance)).start()  # the glance ends, as is_alive's does
    fd = _hold_job_lock(tmp_path, "restore-x")
    try:
        t0 = time.monotonic()
        with pytest.raises(SafetyRefusal, match="already has a runner"):
            _hold_job_lock(tmp_path, "restore-x")  # held for real, by the first
        assert time.monotonic() - t0 < 5
    finally:
        os.close(fd)


def test_a_typed_answer_is_never_read_half_written(tmp_path):
    """The runner polls for the operator's answer: read at any moment, the file is absent or
    holds the whole answer. A file read after its creation and before its write gave an empty
    answer, a wrong one: the right database name cancelled the restore, the right phrase held it."""
    import threading

    settings = make_settings(tmp_path)
    handle = handle_for(settings)
    seen: set[str | None] = set()
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            seen.add(jobs.read_control(jobs.jobs_dir(settings), handle.id, "accept"))

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        for _ in range(300):
            jobs.write_control(settings, handle.id, "accept", "delete 3")
            (jobs.jobs_dir(settings) / f"{handle.id}.accept").unlink()
    finally:
        done.set()
        reader.join()
        handle.close()
    assert seen <= {None, "delete 3"}, seen
    assert "delete 3" in seen
