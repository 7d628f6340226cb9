"""Issue 20: the safety copy is the current database renamed aside, on a real PostgreSQL cluster
and real detached runners driven through the CLI.

What must hold: the old database is renamed aside, a new one restored under its name; the
rollback renames it back (seconds, no dump read); after the restore's result, the renamed
database is dumped (pre-restore name, manifest), the dump verified, the copy dropped or kept
for `restore.keep_renamed_hours`; a runner killed with SIGKILL before any step leaves the old
database under its own name or under the recorded aside name, never neither, and both
`--rollback` and `--resume` finish from there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.hold import start_held_restore
from test_restore_integrity import REPO, direct, run_cli  # noqa: F401 - the fixture is used by name

from fovea_tui.cli.commands.restore import render
from fovea_tui.config import load_file, save_settings, settings_from_dict
from fovea_tui.engine import restore as engine
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.restore.steps import aside_name
from fovea_tui.errors import ConfigError

MARKER = "restore_marker"  # only in the database as it was before the restore


def databases(db) -> set[str]:
    return set(db.cluster.psql("SELECT datname FROM pg_database;", "postgres").split())


def asides(db) -> set[str]:
    return {d for d in databases(db) if d.startswith(db.name + "_pre_restore_")}


def made_ahead(db) -> set[str]:
    """The new databases a restore creates empty during pre-flight, still under their own name."""
    return {d for d in databases(db) if d.startswith(db.name + "_restore_new_")}


def has_marker(db, name: str) -> bool:
    return db.cluster.psql(f"SELECT to_regclass('public.{MARKER}') IS NOT NULL;", name).strip() == "t"


@pytest.fixture
def marked(direct):  # noqa: F811 - pytest's fixture by name
    settings, config, backup, db = direct
    db.psql(f"CREATE TABLE {MARKER} (id int); INSERT INTO {MARKER} VALUES (42);")
    yield settings, config, backup, db
    for name in asides(db):
        db.cluster.drop_database(name)


def restore_cli(config, *args: str, env: dict | None = None) -> tuple[int, dict]:
    proc = run_cli(["--config", str(config), "restore", *args, "--json"], env=env)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"exit {proc.returncode}: {proc.stdout!r} {proc.stderr!r}") from None


def settled(settings, job: str, timeout: float = 120) -> dict:
    """The job once its runner is gone (the safety copy written after the result included)."""
    data = jobs.follow(settings, job, lambda _d: None, timeout=timeout)
    assert not jobs.is_alive(jobs.jobs_dir(settings), job), data
    return engine.report({**jobs.load_job(settings, job)})


def test_aside_name_fits_postgres_and_says_when_and_which_job():
    when = datetime(2026, 11, 29, 23, 5, 9, tzinfo=UTC)
    job = "restore-20261129T230508Z-5c02"
    assert aside_name("fovea", when, job) == "fovea_pre_restore_20261129T230509Z_5c02"
    assert aside_name("fovea", when, "restore-20261129T230509Z-77aa") != aside_name("fovea", when, job)
    long = aside_name("é" * 40, when, job)
    assert len(long.encode()) <= 63 and long.endswith("_pre_restore_20261129T230509Z_5c02")
    long.encode().decode("utf-8")  # never cut inside a character


def test_restore_renames_aside_then_dumps_and_drops_the_copy(marked):
    settings, config, backup, db = marked
    code, result = restore_cli(config, backup.name, "--yes")
    assert code == 0 and result["ok"], result
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["safety_dump"]["detail"].startswith("rename aside"), steps["safety_dump"]
    assert "renamed" in steps["prepare"]["detail"] and "_pre_restore_" in steps["prepare"]["detail"]
    assert "_restore_new_" in steps["prepare"]["detail"] and "created empty during pre-flight" in steps["prepare"]["detail"]
    assert made_ahead(db) == set()  # renamed into place, not left beside it
    room = next(c for c in result["preflight"] if c["name"] == "room")
    assert room["ok"] and room["data"]["rename"] and room["data"]["free"] > 0, room
    copy = result["safety_copy"]
    assert copy["mode"] == "rename" and copy["renamed_to"].startswith(db.name + "_pre_restore_")
    assert not has_marker(db, db.name)  # the restored dump

    final = settled(settings, result["job"])
    copy = final["safety_copy"]
    assert copy["status"] == "verified" and copy["dropped"], copy
    assert asides(db) == set()
    dump = settings.backups_dir / copy["dump"]
    assert mf.parse_dump_name(dump.name).kind == "pre-restore" and mf.read_for(dump) is not None
    assert final["safety_dump"] == str(dump)
    # the safety dump holds the database as it was: its marker row
    import gzip
    with gzip.open(dump, "rt") as fh:
        assert f"CREATE TABLE public.{MARKER}" in fh.read()


def test_the_new_database_takes_the_old_ones_owner_encoding_and_locale(direct):  # noqa: F811 - fixture by name
    """The CREATE that follows the rename reads the renamed database's settings on the server
    (one round trip): a LATIN1 database owned by another role gets a LATIN1 twin with that owner
    (from template0, since template1 differs), a hostile name is quoted, and a database like
    template1 is created plainly."""
    from fovea_tui.engine.infra.database import open_database

    settings, _config, _backup, db = direct
    server = open_database(settings)
    odd, twin, plain_twin = 'latin "one"; x', 'twin "of" it', "plain_twin"
    role = "fovea_owner_" + db.name[-6:]
    q = '"' + odd.replace('"', '""') + '"'
    db.cluster.psql(f"CREATE ROLE {role}; CREATE DATABASE {q} OWNER {role} TEMPLATE template0 ENCODING 'LATIN1' "
                    "LC_COLLATE 'C' LC_CTYPE 'C';", "postgres")
    try:
        server.psql(server.create_like_script(twin, odd), database="postgres")
        server.psql(server.create_like_script(plain_twin, "template1"), database="postgres")

        def described(name: str) -> str:
            lit = "'" + name.replace("'", "''") + "'"
            return db.cluster.psql("SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype "
                                   f"FROM pg_database WHERE datname = {lit};", "postgres").strip()

        assert described(twin) == described(odd) == f"{role}|LATIN1|C|C"
        assert described(plain_twin).split("|")[1:] == described("template1").split("|")[1:]
    finally:
        for name in (twin, plain_twin, odd):
            db.cluster.psql('DROP DATABASE IF EXISTS "' + name.replace('"', '""') + '";', "postgres")
        db.cluster.psql(f"DROP ROLE IF EXISTS {role};", "postgres")


def test_a_failed_restore_is_rolled_back_by_renaming_back(marked):
    settings, config, backup, db = marked
    broken = settings.backups_dir / "fovea-20200101T000000Z.sql.gz"
    import gzip
    with gzip.open(backup.path, "rb") as src:
        sql = src.read()
    tail = b"\n-- PostgreSQL database dump complete\n"
    with gzip.open(broken, "wb") as out:
        out.write(sql.replace(tail, b"\nSELECT no_such_function();\n" + tail))
    code, result = restore_cli(config, broken.name, "--yes")
    assert code == 1 and result["status"] == "rolled_back", (result["message"], result["steps"])
    undo = {s["name"]: s.get("undo") or {} for s in result["steps"]}
    assert "renamed back" in undo["restore"]["detail"], undo
    assert "already put back as it was" in undo["prepare"]["detail"], undo  # not "from the safety dump"
    assert undo["restore"]["duration_s"] < 5
    assert has_marker(db, db.name) and asides(db) == set()
    assert "renamed back" in result["message"] and "as it was before" in result["message"]
    assert not list(settings.backups_dir.glob("*-pre-restore.sql.gz"))  # no dump was needed
    # what the copy is now, in the JSON and the words: the database again, no dump to come
    assert result["safety_copy"]["status"] == "renamed_back", result["safety_copy"]
    text = render(result)
    assert "safety copy: renamed_back" in text and "in the background" not in text and "None" not in text, text


def test_keep_renamed_hours_keeps_the_copy_then_drops_it_when_due(marked, tmp_path):
    settings, config, backup, db = marked
    settings.restore.keep_renamed_hours = 2
    save_settings(settings, config)
    code, result = restore_cli(config, backup.name, "--yes")
    assert code == 0, result
    copy = settled(settings, result["job"])["safety_copy"]
    assert copy["status"] == "verified" and not copy["dropped"] and copy["keep_until"], copy
    assert asides(db) == {copy["renamed_to"]} and has_marker(db, copy["renamed_to"])

    # a finished restore rolled back while the copy is kept: renamed back, live database saved first
    code, back = restore_cli(config, "--rollback", result["job"], "--yes", "--force-after-success")
    assert code == 1 and back["status"] == "rolled_back", back
    assert has_marker(db, db.name) and asides(db) == set()
    assert back["rollback"]["after_success"]

    # a second restore keeps its copy; once due, the next restore's runner drops it
    code, second = restore_cli(config, backup.name, "--yes")
    kept = settled(settings, second["job"])["safety_copy"]["renamed_to"]
    path = jobs.state_path(jobs.jobs_dir(settings), second["job"])
    state = json.loads(path.read_text())
    state["facts"]["safety_copy"]["keep_until"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    path.write_text(json.dumps(state))
    code, third = restore_cli(config, backup.name, "--yes")
    settled(settings, third["job"])
    assert kept not in databases(db)
    assert jobs.read_state(jobs.jobs_dir(settings), second["job"])["facts"]["aside_dropped"]


def test_the_nightly_run_drops_a_copy_kept_past_its_time(marked):
    """`keep_renamed_hours` is kept to without another restore: the nightly run drops a copy
    that is due, says so, and leaves one that is not."""
    from fovea_tui.engine.ops.nightly import run_nightly

    settings, config, backup, db = marked
    settings.restore.keep_renamed_hours = 2
    save_settings(settings, config)
    code, result = restore_cli(config, backup.name, "--yes")
    copy = settled(settings, result["job"])["safety_copy"]
    assert code == 0 and copy["keep_until"] and copy["renamed_to"] in databases(db), copy
    run_nightly(settings, send_notifications=False)
    assert copy["renamed_to"] in databases(db)  # not due yet
    path = jobs.state_path(jobs.jobs_dir(settings), result["job"])
    state = json.loads(path.read_text())
    state["facts"]["safety_copy"]["keep_until"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    path.write_text(json.dumps(state))
    nightly = run_nightly(settings, send_notifications=False)
    prune_step = nightly.step("prune")
    assert prune_step.status == "ok" and f"dropped {copy['renamed_to']}" in prune_step.detail, prune_step.detail
    assert copy["renamed_to"] not in databases(db)
    assert engine.report(jobs.load_job(settings, result["job"]))["safety_copy"]["dropped"]


def test_rollback_of_a_finished_restore_whose_kept_copy_was_dropped_uses_its_safety_dump(marked):
    """The copy kept by `keep_renamed_hours` dropped by someone: its verified safety dump is the
    database as it was, and the rollback restores it (the live database saved first)."""
    settings, config, backup, db = marked
    settings.restore.keep_renamed_hours = 2
    save_settings(settings, config)
    code, result = restore_cli(config, backup.name, "--yes")
    copy = settled(settings, result["job"])["safety_copy"]
    assert code == 0 and copy["status"] == "verified" and copy["renamed_to"] in databases(db), copy
    db.cluster.drop_database(copy["renamed_to"])
    code, back = restore_cli(config, "--rollback", result["job"], "--yes", "--force-after-success")
    assert code == 1 and back["status"] == "rolled_back", (back["status"], back["message"])
    assert has_marker(db, db.name) and db.psql(f"SELECT id FROM {MARKER}").strip() == "42"
    assert "back to the safety dump" in back["message"] and "renamed back" not in back["message"], back["message"]
    assert "saved as" in back["message"]  # the live database, dumped before it was replaced


def test_rollback_after_success_once_the_copy_is_dropped_uses_the_safety_dump(marked):
    settings, config, backup, db = marked
    code, result = restore_cli(config, backup.name, "--yes")
    final = settled(settings, result["job"])
    assert final["safety_copy"]["dropped"]
    code, back = restore_cli(config, "--rollback", result["job"], "--yes", "--force-after-success")
    assert back["status"] == "rolled_back", back
    assert "safety dump" in back["message"] and has_marker(db, db.name)


@pytest.mark.parametrize("value", [-1, "2", 10 ** 9])
def test_bad_keep_renamed_hours_names_the_key(tmp_path, value):
    path = tmp_path / "c.toml"
    text = f'[restore]\nkeep_renamed_hours = {json.dumps(value)}\n'
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_file(path)
    assert info.value.key == "restore.keep_renamed_hours"
    proc = run_cli(["--config", str(path), "status"])
    assert proc.returncode == 2 and "restore.keep_renamed_hours" in proc.stderr


def test_keep_renamed_hours_default_and_round_trip(tmp_path):
    settings = settings_from_dict({})
    assert settings.restore.keep_renamed_hours == 0
    settings.restore.keep_renamed_hours = 6
    assert load_file(save_settings(settings, tmp_path / "c.toml")).restore.keep_renamed_hours == 6


# ---------------------------------------------------------------- kill -9 before each step

STEPS_AFTER_CHOOSE = ["preflight", "safety_dump", "confirm", "stop", "prepare", "restore", "migrate", "videos",
                      "start", "verify"]


def _held_at(settings, backup, step: str, seconds: float = 60) -> dict:
    """A restore whose runner holds `step` for `seconds`, once it holds it: the job's state."""
    job = start_held_restore(settings, backup.name, step, seconds)
    deadline = time.monotonic() + 60
    while True:
        data = jobs.load_job(settings, job)
        if next(r for r in data["steps"] if r["name"] == step)["status"] == "running":
            return data
        assert data["status"] not in jobs.FINAL and time.monotonic() < deadline, data.get("message")
        time.sleep(0.05)


def _killed_at(settings, backup, step: str) -> str:
    data = _held_at(settings, backup, step)
    os.kill(data["pid"], signal.SIGKILL)
    while jobs.is_alive(jobs.jobs_dir(settings), data["id"]):
        time.sleep(0.05)
    return data["id"]


@pytest.mark.parametrize("step", STEPS_AFTER_CHOOSE)
def test_sigkill_before_each_step_never_loses_the_old_database(marked, step):
    settings, config, backup, db = marked
    job = _killed_at(settings, backup, step)
    data = jobs.load_job(settings, job)
    assert jobs.effective_status(data) == "interrupted"
    aside = data["facts"].get("renamed_to")
    # the old database is under its own name, or under the name the job recorded before renaming
    holders = [n for n in (db.name, aside) if n and n in databases(db) and has_marker(db, n)]
    assert len(holders) == 1, (holders, databases(db))
    assert (holders[0] == aside) == (STEPS_AFTER_CHOOSE.index(step) > STEPS_AFTER_CHOOSE.index("prepare"))
    # the new database is created during pre-flight, and renamed into place by prepare
    between = STEPS_AFTER_CHOOSE.index("preflight") < STEPS_AFTER_CHOOSE.index(step) <= STEPS_AFTER_CHOOSE.index("prepare")
    assert made_ahead(db) == ({data["facts"]["incoming"]} if between else set()), (made_ahead(db), data["facts"])
    state = engine.describe_status(data)
    assert "--rollback" in state and "--resume" in state

    if step in ("prepare", "restore", "verify"):  # resumed: the restore completes, the copy is dumped
        code, result = restore_cli(config, "--resume", job, "--yes")
        assert code == 0 and result["ok"], result
        final = settled(settings, job)
        assert final["safety_copy"]["status"] == "verified" and asides(db) == set(), final["safety_copy"]
        assert not has_marker(db, db.name) and made_ahead(db) == set()
        return
    code, result = restore_cli(config, "--rollback", job, "--yes")
    assert result["status"] == "rolled_back", result
    assert has_marker(db, db.name) and asides(db) == set() and made_ahead(db) == set()
    assert db.psql(f"SELECT id FROM {MARKER}").strip() == "42"


def test_rollback_when_the_renamed_database_was_dropped_by_someone_else_says_so(marked):
    """The copy the rollback would rename back is gone: it never calls the restored database
    the old one, never drops it, and never tells the operator to rename a database that is not there."""
    settings, config, backup, db = marked
    job = _killed_at(settings, backup, "restore")  # prepare ended ok: renamed aside, a new one created
    aside = jobs.load_job(settings, job)["facts"]["renamed_to"]
    db.cluster.drop_database(aside)
    for _ in range(2):  # a retry says the same, and still drops nothing
        code, result = restore_cli(config, "--rollback", job, "--yes")
        assert code == 1 and result["status"] == "rollback_failed", result
        assert f"{aside}, the database as it was before the restore, is no longer on the server" in result["message"]
        assert "RENAME TO" not in result["message"] and "kept as" not in result["message"], result["message"]
        assert result["safety_copy"]["status"] == "lost" and "holds the database as it was" not in render(result)
        assert db.name in databases(db) and not has_marker(db, db.name)


def test_resume_after_the_renamed_database_was_dropped_never_calls_the_install_untouched(marked):
    """Resumed, the prepare step finds no copy and a database this restore created: it renames
    nothing, and what the job then says never claims the database was not touched."""
    settings, config, backup, db = marked
    job = _killed_at(settings, backup, "restore")
    aside = jobs.load_job(settings, job)["facts"]["renamed_to"]
    db.cluster.drop_database(aside)
    code, result = restore_cli(config, "--resume", job, "--yes")
    assert code == 1 and result["status"] == "rollback_failed", (result["status"], result["message"])
    assert "not touched" not in result["message"] and "as it was before the restore." not in result["message"]
    assert f"{aside}, the database as it was before the restore, is no longer on the server" in result["message"]
    assert db.name in databases(db) and not has_marker(db, db.name)


def test_rollback_after_the_database_was_put_back_by_hand_finds_it_as_it_was(marked):
    settings, config, backup, db = marked
    job = _killed_at(settings, backup, "restore")
    aside = jobs.load_job(settings, job)["facts"]["renamed_to"]
    db.cluster.drop_database(db.name)  # what a failed rollback's message tells the operator to do
    db.cluster.psql(f'ALTER DATABASE "{aside}" RENAME TO "{db.name}";', "postgres")
    code, result = restore_cli(config, "--rollback", job, "--yes")
    assert code == 1 and result["status"] == "rolled_back", (result["message"], result["steps"])
    undo = {s["name"]: (s.get("undo") or {}).get("detail", "") for s in result["steps"]}
    assert "put back under its name by hand" in undo["restore"], undo
    assert result["safety_copy"]["status"] == "renamed_back", result["safety_copy"]
    assert has_marker(db, db.name) and asides(db) == set()


@pytest.mark.parametrize("step", ["confirm", "stop"])
def test_a_restore_killed_before_prepare_and_resumed_uses_the_database_created_ahead(marked, step):
    settings, config, backup, db = marked
    job = _killed_at(settings, backup, step)
    ahead = jobs.load_job(settings, job)["facts"]["incoming"]
    assert made_ahead(db) == {ahead}
    code, result = restore_cli(config, "--resume", job, "--yes")
    assert code == 0 and result["ok"], result
    assert f"and {ahead} (created empty during pre-flight) to {db.name}" in \
        next(s for s in result["steps"] if s["name"] == "prepare")["detail"]
    assert made_ahead(db) == set() and not has_marker(db, db.name)
    settled(settings, job)


def test_a_database_created_ahead_then_dropped_by_hand_is_created_again(marked):
    """Someone drops the new, empty database between pre-flight and the rename: the rename's
    round trip creates one instead, and the restore goes on."""
    settings, config, backup, db = marked
    data = _held_at(settings, backup, "prepare", seconds=3)
    db.cluster.drop_database(data["facts"]["incoming"])
    report = settled(settings, data["id"])
    assert report["status"] == "ok", report["message"]
    prepare = next(s for s in report["steps"] if s["name"] == "prepare")["detail"]
    assert prepare.endswith(f"database {db.name} created empty") and "during pre-flight" not in prepare, prepare
    assert made_ahead(db) == set() and not has_marker(db, db.name)


def test_a_stranger_under_the_name_created_ahead_is_neither_renamed_in_nor_dropped(marked):
    """The new database's name is taken by another database (its own OID, a table in it):
    the restore creates its own, renames nothing of the stranger's, and leaves it as it was."""
    settings, config, backup, db = marked
    data = _held_at(settings, backup, "prepare", seconds=3)
    ahead = data["facts"]["incoming"]
    db.cluster.drop_database(ahead)
    db.cluster.psql(f'CREATE DATABASE "{ahead}";', "postgres")
    db.cluster.psql("CREATE TABLE stranger (id int);", ahead)
    report = settled(settings, data["id"])
    assert report["status"] == "ok", report["message"]
    assert "during pre-flight" not in next(s for s in report["steps"] if s["name"] == "prepare")["detail"]
    assert made_ahead(db) == {ahead}
    assert db.cluster.psql("SELECT to_regclass('public.stranger') IS NOT NULL;", ahead).strip() == "t"
    assert db.cluster.psql("SELECT to_regclass('public.stranger') IS NULL;", db.name).strip() == "t"
    db.cluster.drop_database(ahead)


def test_a_restore_cancelled_at_its_question_drops_the_database_created_ahead(marked):
    settings, config, backup, db = marked
    job = engine.start_restore(settings, backup.name)  # unconfirmed: the runner waits at the question
    deadline = time.monotonic() + 60
    while jobs.load_job(settings, job).get("awaiting") != "confirm":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert made_ahead(db) == {jobs.load_job(settings, job)["facts"]["incoming"]}
    engine.cancel(settings, job)
    report = settled(settings, job)
    assert report["status"] == "cancelled", report["message"]
    assert made_ahead(db) == set() and has_marker(db, db.name) and asides(db) == set()


def test_a_name_left_by_a_runner_killed_during_the_create_is_dropped_only_if_empty(marked, capsys):
    """The job knows the name (saved before the CREATE) but not the OID: an empty database of
    that name is dropped; one holding a table is kept, and said."""
    settings, config, backup, db = marked
    from fovea_tui.engine.restore import incoming
    from fovea_tui.engine.restore.context import RestoreContext

    job = jobs.create_job(settings, "restore", {"dump": backup.name, "database": db.name})
    handle = jobs.JobHandle(jobs.jobs_dir(settings), job, jobs.read_state(jobs.jobs_dir(settings), job), settings)
    try:
        ctx = RestoreContext(handle)
        for filled in (True, False):
            name = incoming.name_for(db.name, datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=filled), job)
            db.cluster.psql(f'CREATE DATABASE "{name}";', "postgres")
            if filled:
                db.cluster.psql("CREATE TABLE kept (id int);", name)
            ctx.facts.update(incoming=name, incoming_oid=None)
            incoming.discard(ctx)
            assert (name in databases(db)) == filled
            assert "incoming" not in ctx.facts
        log = capsys.readouterr().out  # the runner's log is its stdout
        assert "holds tables: it is not this restore's, and is kept" in log, log
        assert "created empty ahead of the rename, not used" in log, log
    finally:
        handle.close()
        for name in made_ahead(db):
            db.cluster.drop_database(name)


def test_a_database_that_replaced_the_checked_one_is_not_renamed(marked):
    """Between pre-flight and the rename another database took the name: the restore renames
    nothing, says why, and leaves that database as it found it."""
    settings, config, backup, db = marked
    job = _held_at(settings, backup, "prepare", seconds=3)["id"]
    db.cluster.drop_database(db.name)
    db.cluster.psql(f'CREATE DATABASE "{db.name}" OWNER "{db.cluster.user}";', "postgres")
    db.cluster.psql("CREATE TABLE replacement (id int);", db.name)
    report = settled(settings, job)
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["prepare"]["status"] == "failed" and "not the one pre-flight checked" in steps["prepare"]["detail"]
    assert report["status"] == "rolled_back" and "not touched" in report["message"], report["message"]
    assert report["safety_copy"] is None  # nothing was renamed: no copy to speak of
    assert asides(db) == set() and db.cluster.psql("SELECT to_regclass('public.replacement') IS NOT NULL;",
                                                    db.name).strip() == "t"


def test_a_database_that_already_has_the_aside_name_is_never_taken_for_the_copy(marked):
    """The rename's new name is taken by another database (made by hand: another restore's
    copy has another job in its name): the rename fails, and the rollback must not take that
    namesake for the copy, drop the live database and rename the namesake in its place."""
    settings, config, backup, db = marked
    job = _held_at(settings, backup, "prepare", seconds=2)["id"]
    now = datetime.now(UTC)
    decoys = {aside_name(db.name, now + timedelta(seconds=k), job) for k in range(-1, 8)}
    for name in decoys:
        db.cluster.psql(f'CREATE DATABASE "{name}";', "postgres")
        db.cluster.psql("CREATE TABLE decoy (id int);", name)
    report = settled(settings, job)
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["prepare"]["status"] == "failed" and "already exists" in steps["prepare"]["detail"], steps["prepare"]
    assert report["status"] == "rolled_back" and "not touched" in report["message"], report["message"]
    assert has_marker(db, db.name) and db.psql(f"SELECT id FROM {MARKER}").strip() == "42"
    assert decoys <= databases(db)


def test_put_back_takes_only_the_copy_it_renamed(marked):
    """A rollback's one round trip: a database that only has the copy's name is not the copy."""
    settings, config, backup, db = marked
    from fovea_tui.engine.infra.database import open_database

    database = open_database(settings)
    original = database.database_oid(db.name)
    namesake = aside_name(db.name, datetime.now(UTC), "restore-20261130T000000Z-0000")
    db.cluster.psql(f'CREATE DATABASE "{namesake}";', "postgres")
    assert database.put_back(namesake, db.name, oid=original) == "untouched"
    assert has_marker(db, db.name) and namesake in databases(db)
    assert database.put_back(namesake, db.name, oid=database.database_oid(namesake)) == "renamed"
    assert not has_marker(db, db.name) and namesake not in databases(db)


def test_a_dump_rewritten_after_preflight_is_not_loaded(marked):
    """Between pre-flight's read and the load the dump is rewritten (its mtime put back): the
    restore step refuses to load what pre-flight did not check, and the rollback puts the
    database back. Without the check the rewrite loaded silently: its rows are the same."""
    import gzip

    settings, config, backup, db = marked
    job = _held_at(settings, backup, "restore", seconds=2)["id"]
    st = backup.path.stat()
    with gzip.open(backup.path, "rb") as src:
        sql = src.read()
    tail = b"\n-- PostgreSQL database dump complete\n"
    with gzip.open(backup.path, "wb") as out:
        out.write(sql.replace(tail, b"\nCOMMENT ON TABLE public.videos IS 'tampered';\n" + tail))
    os.utime(backup.path, ns=(st.st_atime_ns, st.st_mtime_ns))
    report = settled(settings, job)
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["restore"]["status"] == "failed", steps["restore"]
    assert "changed since pre-flight verified it" in steps["restore"]["detail"], steps["restore"]["detail"]
    assert report["status"] == "rolled_back" and has_marker(db, db.name)
    assert db.psql("SELECT obj_description('public.videos'::regclass);").strip() != "tampered"


def test_a_dump_removed_after_preflight_fails_the_step_in_words(marked):
    settings, config, backup, db = marked
    job = _held_at(settings, backup, "restore", seconds=2)["id"]
    backup.path.unlink()
    report = settled(settings, job)
    detail = {s["name"]: s for s in report["steps"]}["restore"]["detail"]
    assert "is gone since pre-flight verified it" in detail and "unexpected" not in detail, detail
    assert report["status"] == "rolled_back" and has_marker(db, db.name)


def test_rename_and_put_back_hold_for_hostile_database_names(marked):
    """Quotes, a space and the DO block's own dollar tag in a database's name."""
    settings, config, backup, db = marked
    from fovea_tui.engine.infra.database import open_database

    database = open_database(settings)
    hostile = 'x$fovea$ y"q\'z'
    db.cluster.psql(f'CREATE DATABASE "{hostile.replace(chr(34), chr(34) * 2)}";', "postgres")
    try:
        oid = database.database_oid(hostile)
        # nothing takes the name (no CREATE after the rename): the server says so in the same round trip
        assert database.rename_database(hostile, hostile + "_aside", oid=oid) == ("then", False)
        assert database.database_oid(hostile + "_aside") == oid and database.database_oid(hostile) is None
        assert database.put_back(hostile + "_aside", hostile, oid=oid) == "renamed"
        assert database.database_oid(hostile) == oid
        new = database.create_like(hostile + "_new", hostile)
        assert database.rename_database(hostile, hostile + "_aside", oid=oid,
                                        incoming=(hostile + "_new", new)) == ("moved_in", True)
        assert database.database_oid(hostile) == new and database.database_oid(hostile + "_aside") == oid
        assert database.database_oid(hostile + "_new") is None
        assert database.put_back(hostile + "_aside", hostile, oid=oid) == "renamed"  # the new one dropped, the old back
        assert database.rename_database(hostile, hostile + "_aside", oid=oid,
                                        then=database.create_like_script(hostile, hostile + "_aside")) == ("then", True)
        assert database.database_oid(hostile + "_aside") == oid and database.database_oid(hostile) not in (None, oid)
    finally:
        for name in (hostile, hostile + "_aside", hostile + "_new"):
            db.cluster.psql(f'DROP DATABASE IF EXISTS "{name.replace(chr(34), chr(34) * 2)}";', "postgres")


def test_sigkill_while_the_safety_copy_is_written_then_resume_finishes_it(marked, monkeypatch):
    """The CLI prints the result first, then follows the safety dump on stderr; the runner killed
    then leaves the renamed database in place, and `--resume` writes the dump."""
    settings, config, backup, db = marked
    db.psql("CREATE TABLE filler AS SELECT i, md5(i::text) AS t FROM generate_series(1, 400000) i;")
    cli = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(config), "restore", backup.name,
                            "--yes"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO,
                           stdin=subprocess.DEVNULL)
    first = b""  # the result, printed before the safety dump is written
    while b"safety copy:" not in first:
        line = cli.stdout.readline()
        assert line, first
        first += line
    assert b": ok" in first.splitlines()[0], first
    assert b"safety copy: pending" in first or b"safety copy: running" in first, first
    deadline = time.monotonic() + 60
    while True:
        data = jobs.latest_job(settings, "restore")
        if (data["facts"].get("safety_copy") or {}).get("status") == "running":
            break
        assert time.monotonic() < deadline and data["alive"], data.get("facts", {}).get("safety_copy")
        time.sleep(0.02)
    job = data["id"]
    assert job.encode() in first
    os.kill(data["pid"], signal.SIGKILL)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, out
    err = err.decode()
    assert "safety copy" in err and "interrupted" in err, err
    report = engine.report(jobs.load_job(settings, job))
    assert report["ok"] and report["safety_copy"]["status"] == "interrupted"
    aside = report["safety_copy"]["renamed_to"]
    assert aside in databases(db) and has_marker(db, aside)  # kept: the way back is still there
    from fovea_tui.engine.ops.status.probe import restore_status
    section = restore_status(settings)
    assert section.verdict.value == "warning" and "safety copy" in section.reason and "--resume" in section.reason
    code, again = restore_cli(config, "--resume", job, "--yes")
    assert code == 0, again
    final = settled(settings, job)
    assert final["safety_copy"]["status"] == "verified" and aside not in databases(db)
    assert not [p for p in settings.backups_dir.iterdir() if p.name.endswith(".partial")]


def test_a_safety_copy_whose_database_was_dropped_says_it_is_gone_not_kept(marked):
    """The runner killed while it dumps the renamed database, which someone then drops: the
    resumed safety dump fails and says the database as it was is gone, never that it is kept."""
    settings, config, backup, db = marked
    db.psql("CREATE TABLE filler AS SELECT i, md5(i::text) AS t FROM generate_series(1, 400000) i;")
    job = engine.start_restore(settings, backup.name, confirmed=True)
    deadline = time.monotonic() + 120
    while True:
        data = jobs.load_job(settings, job)
        if (data["facts"].get("safety_copy") or {}).get("status") == "running":
            break
        assert time.monotonic() < deadline and data["status"] not in ("failed", "rolled_back"), data.get("message")
        time.sleep(0.02)
    os.kill(data["pid"], signal.SIGKILL)
    while jobs.is_alive(jobs.jobs_dir(settings), job):
        time.sleep(0.05)
    aside = data["facts"]["renamed_to"]
    db.cluster.drop_database(aside)
    restore_cli(config, "--resume", job, "--yes")
    final = settled(settings, job)
    copy = final["safety_copy"]
    assert copy["status"] == "failed" and "no longer on the server" in copy["detail"], copy
    assert "kept as the way back" not in copy["detail"] and "kept as the way back" not in final["message"]


# ---------------------------------------------------------------- no room for both: the dump first


@pytest.fixture
def small_server(tmp_path, monkeypatch):
    """A cluster whose data directory is on a small tmpfs, filled until the restored database
    fits only once the current one is dropped (room for one, not for both)."""
    import tempfile

    from support.services import PgCluster, pg_bin_dir_or_fail, unavailable

    mount = Path(tempfile.mkdtemp(prefix="fovea-small-pg-"))  # the cluster's own user must reach it
    mount.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200m", "tmpfs", str(mount)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        unavailable(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")  # fails under CI=true
    cluster = PgCluster(pg_bin_dir_or_fail())
    cluster.base = cluster.socket_dir = mount
    cluster.data_dir, cluster.log_file = mount / "data", mount / "postgres.log"
    try:
        cluster.start()
        cluster.bootstrap(scale=1)
        monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(cluster.bin_dir))
        yield cluster, mount
    finally:
        cluster.stop()
        subprocess.run(["umount", "-l", str(mount)])
        mount.rmdir()


def test_without_room_for_both_the_current_database_is_dumped_first(small_server, tmp_path):
    import shutil as sh

    from fovea_tui.engine.backups.pipeline import run_backup
    from fovea_tui.engine.restore.preflight import MARGIN

    cluster, mount = small_server
    env_file = tmp_path / ".env"
    env_file.write_text("STORAGE_PATH=/videos\n")
    (tmp_path / "videos").mkdir()
    settings = settings_from_dict({
        "install": {"compose_project": "fovea-no-such-project", "env_file": str(env_file)},
        "database": {"mode": "direct", "url": cluster.url},
        "backups": {"dir": str(tmp_path / "backups")}, "volume": {"path": str(tmp_path / "videos")}})
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    backup = run_backup(settings, offsite=False)
    cluster.psql(f"CREATE TABLE {MARKER} (id int);", "fovea")
    # leave a little more than the restore needs, less than it needs beside the current database
    free = sh.disk_usage(mount).free
    current = int(cluster.psql("SELECT pg_database_size('fovea');", "postgres"))
    leave = MARGIN + int(backup.raw_bytes * 1.5) - current // 2
    with open(mount / "ballast", "wb") as fh:
        fh.truncate(0)
        fh.write(b"\0" * (free - leave))
    code, result = restore_cli(config, backup.name, "--yes")
    assert code == 0 and result["ok"], result
    room = next(c for c in result["preflight"] if c["name"] == "room")
    assert not room["ok"] and not room["data"]["rename"] and "no room" in room["detail"], room
    detail = next(s for s in result["steps"] if s["name"] == "safety_dump")["detail"]
    assert detail.startswith("dump (") and "no room" in detail and "-pre-restore.sql.gz" in detail, detail
    assert result["safety_copy"] == {"mode": "dump"}
    listed = cluster.psql("SELECT string_agg(datname, ',') FROM pg_database;", "postgres")
    assert "_pre_restore_" not in listed and "_restore_new_" not in listed, listed  # the one made ahead: dropped
    assert cluster.psql(f"SELECT to_regclass('public.{MARKER}') IS NULL;", "fovea").strip() == "t"
    assert (settings.backups_dir / result["safety_dump"].rsplit("/", 1)[-1]).is_file()


def test_a_new_database_pre_flight_could_not_create_is_created_by_step_6(marked):
    """A session on template1 holds CREATE DATABASE off (the server gives up after 5 s): the
    CREATE begun beside pre-flight fails and says so; step 6, after the session ended, creates
    the database itself; the restore ends ok with nothing left beside it."""
    import threading

    settings, config, backup, db = marked
    holder = threading.Thread(target=db.cluster.psql, args=("SELECT pg_sleep(7);", "template1"), daemon=True)
    holder.start()
    code, result = restore_cli(config, backup.name, "--yes")
    holder.join(30)
    assert code == 0 and result["ok"], (result["message"], [(s["name"], s["detail"]) for s in result["steps"]])
    steps = {s["name"]: s for s in result["steps"]}
    said = next(s for s in jobs.load_job(settings, result["job"])["steps"] if s["name"] == "preflight")["output"]
    assert any("the new database is created in step 6, not during pre-flight" in line and "template1" in line
               for line in said), said
    assert steps["prepare"]["detail"].endswith(f"database {db.name} created empty"), steps["prepare"]["detail"]
    assert made_ahead(db) == set() and not has_marker(db, db.name)


def test_a_restore_onto_a_server_whose_database_was_dropped_creates_it(marked):
    """The disaster a backup is for: `DROP DATABASE fovea` by mistake. The restore saves
    nothing (there is nothing), creates the database, loads the dump; a rollback of it drops
    the database again, its live state saved first."""
    settings, config, backup, db = marked
    rows = db.psql("SELECT count(*) FROM annotations").strip()
    db.cluster.drop_database(db.name)
    code, result = restore_cli(config, backup.name, "--yes")
    assert code == 0 and result["ok"], (result["message"], [(s["name"], s["detail"]) for s in result["steps"]])
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["safety_dump"]["status"] == "skipped", steps["safety_dump"]
    assert "does not exist yet: nothing to save" in steps["safety_dump"]["detail"]
    assert steps["prepare"]["detail"].startswith(f"database {db.name} created empty (there was none before"), steps["prepare"]
    assert result["safety_copy"] is None, result["safety_copy"]
    assert db.psql("SELECT count(*) FROM annotations").strip() == rows
    assert not has_marker(db, db.name) and made_ahead(db) == set() and asides(db) == set()
    said = next(s for s in jobs.load_job(settings, result["job"])["steps"] if s["name"] == "preflight")["output"]
    assert any(f"database {db.name} does not exist" in line for line in said), said

    settled(settings, result["job"])
    finished = engine.finished_restore(jobs.load_job(settings, result["job"]))
    assert finished is not None and "safety dump taken before" not in finished.question, finished.question
    assert finished.question.endswith(f"Then: Drop database {db.name} (it did not exist before the restore)."), \
        finished.question
    code, back = restore_cli(config, "--rollback", result["job"], "--yes", "--force-after-success")
    assert code == 1 and back["status"] == "rolled_back", (back["status"], back["message"])
    assert db.name not in databases(db), databases(db)
    assert "saved as" in back["message"], back["message"]  # the restored database, dumped before the drop
    assert f"database {db.name} is dropped again, as there was none before the restore" in back["message"], \
        back["message"]
    assert "safety dump" not in back["message"].split("saved as")[0], back["message"]
