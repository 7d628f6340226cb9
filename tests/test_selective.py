"""Selective restore on real PostgreSQL with Fovea's schema, foreign keys and cascades.

A real backup of the seeded database is "last week's dump"; then the live database moves on
(annotations deleted by mistake, new work on other videos, a video row gone with its cascade,
a persona deleted) and `compare` / `restore DUMP --video` / `undo-selective` bring back exactly
one video while everything else stays as it is now.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_backup_helpers import direct_config, settings_and_config, write_env

from fovea_tui.cli.main import main
from fovea_tui.config import Settings
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.locks import acquire
from fovea_tui.engine.selective.apply import ConcurrentEdit
from fovea_tui.engine.selective.session import SCRATCH_PREFIX, open_session
from fovea_tui.errors import SafetyRefusal


@dataclass
class Install:
    db: object
    settings: Settings
    cfg: Path
    secrets: dict
    dump: Path

    def psql(self, sql: str) -> str:
        return self.db.psql(sql).strip()  # type: ignore[attr-defined]

    def cli(self, capsys, *args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = main(["--config", str(self.cfg), *args])
        out = capsys.readouterr()
        return code, out.out, out.err

    def scratch(self) -> list[str]:
        out = self.db.cluster.psql(  # type: ignore[attr-defined]
            f"SELECT datname FROM pg_database WHERE datname LIKE '{SCRATCH_PREFIX}%'", "postgres")
        return out.split()


@pytest.fixture
def install(fresh_direct_db, tmp_path, monkeypatch) -> Install:
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    env_file, values = write_env(tmp_path)
    settings, cfg = settings_and_config(tmp_path, direct_config(tmp_path, fresh_direct_db.url, env_file))
    backup = run_backup(settings)
    return Install(fresh_direct_db, settings, cfg, {**values, "DB": fresh_direct_db.password}, backup.path)


def videos(inst: Install) -> list[tuple[str, str]]:
    out = inst.psql("SELECT id || '|' || filename FROM videos ORDER BY filename")
    return [tuple(line.split("|", 1)) for line in out.splitlines()]  # type: ignore[misc]


def count(inst: Install, table: str, where: str) -> int:
    return int(inst.psql(f'SELECT count(*) FROM "{table}" WHERE {where}'))


def state(inst: Install, video_id: str) -> str:
    """Every row of one video's scope, as text: equal means identical."""
    return inst.psql(
        "SELECT md5(string_agg(x, ',' ORDER BY x)) FROM ("
        f"SELECT v::text x FROM videos v WHERE id = '{video_id}' UNION ALL "
        f"SELECT a::text FROM annotations a WHERE \"videoId\" = '{video_id}' UNION ALL "
        f"SELECT s::text FROM video_summaries s WHERE \"videoId\" = '{video_id}' UNION ALL "
        f"SELECT c::text FROM claims c JOIN video_summaries s ON s.id = c.\"summaryId\" "
        f"WHERE s.\"videoId\" = '{video_id}') q")


def no_secret(inst: Install, *texts: str) -> None:
    for text in texts:
        for value in inst.secrets.values():
            if len(value) > 6:
                assert value not in text


def test_compare_and_bring_back_one_video_keeping_new_work_elsewhere(install, capsys):
    (a_id, a_name), (b_id, _b) = videos(install)[:2]
    a_then = count(install, "annotations", f"\"videoId\" = '{a_id}'")
    b_then = count(install, "annotations", f"\"videoId\" = '{b_id}'")
    assert a_then > 10
    # last week's mistake, and this week's work on another video
    install.psql(f"DELETE FROM annotations WHERE \"videoId\" = '{a_id}' AND id NOT IN "
                 f"(SELECT id FROM annotations WHERE \"videoId\" = '{a_id}' ORDER BY id LIMIT 4)")
    install.psql("INSERT INTO annotations (id, \"videoId\", type, label, \"frameStart\", \"frameEnd\", data, "
                 f"\"updatedAt\") VALUES ('new-work-1', '{b_id}', 'entity', 'this week', 1, 2, '{{}}', now())")

    code, out, err = install.cli(capsys, "compare", install.dump.name, "--json")
    assert code == 0, err
    data = json.loads(out)
    first = data["scopes"][0]
    assert (first["kind"], first["id"]) == ("video", a_id)
    assert first["summary"] == f"{a_name}: {a_then} annotations then, 4 now"
    b = next(s for s in data["scopes"] if s["id"] == b_id)
    assert b["summary"].endswith(f"{b_then} annotations then, {b_then + 1} now")
    assert install.scratch() == []

    code, out, err = install.cli(capsys, "compare", install.dump.name)
    assert code == 0 and f"{a_name}: {a_then} annotations then, 4 now" in out

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--dry-run", "--json")
    assert code == 0, err
    cs = json.loads(out)["results"][0]["changeset"]
    assert (cs["inserted"], cs["updated"], cs["deleted"]) == (a_then - 4, 0, 0)
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == 4  # a dry run changes nothing

    old_umask = os.umask(0)  # a careless shell: the undo file holds rows, it must stay private anyway
    try:
        code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--yes", "--json")
    finally:
        os.umask(old_umask)
    assert code == 0, err
    result = json.loads(out)["results"][0]
    assert result["inserted"] == a_then - 4
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == a_then
    assert count(install, "annotations", f"\"videoId\" = '{b_id}'") == b_then + 1  # this week's work stays
    undo = Path(result["undo_file"])
    assert undo.parent == install.settings.backups_dir / "selective-undo"
    assert stat.S_IMODE(undo.stat().st_mode) == 0o600 and stat.S_IMODE(undo.parent.stat().st_mode) == 0o700
    no_secret(install, undo.name, out, err)
    assert install.scratch() == []
    entry = audit.read(install.settings, action="selective-restore")[-1]
    assert entry["outcome"] == "ok" and entry["details"]["insert"] == a_then - 4


def test_video_row_deleted_since_is_recreated_with_its_rows(install, capsys):
    a_id, a_name = videos(install)[3]
    before = state(install, a_id)
    claims = count(install, "claims", f"\"summaryId\" IN (SELECT id FROM video_summaries WHERE \"videoId\" = '{a_id}')")
    install.psql(f"DELETE FROM videos WHERE id = '{a_id}'")  # the backend's reconcile: the cascade takes the rest
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == 0

    code, out, err = install.cli(capsys, "compare", install.dump.name, "--video", a_name, "--json")
    assert code == 0, err
    assert "video row deleted since" in json.loads(out)["scope"]["summary"]

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_id, "--yes")
    assert code == 0, err
    assert "its file (/videos/" in out and "sync --pull" in out  # or the backend's sync deletes it again
    assert state(install, a_id) == before
    assert claims > 0 and count(
        install, "claims", f"\"summaryId\" IN (SELECT id FROM video_summaries WHERE \"videoId\" = '{a_id}')") == claims


def test_persona_gone_is_named_then_recreated_or_left_out(install, capsys):
    a_id, a_name = videos(install)[1]
    persona, name = install.psql(
        f"SELECT p.id || '|' || p.name FROM personas p JOIN annotations a ON a.\"personaId\" = p.id "
        f"WHERE a.\"videoId\" = '{a_id}' ORDER BY p.id LIMIT 1").split("|")
    other = install.psql(f"SELECT id FROM personas WHERE id <> '{persona}' ORDER BY id LIMIT 1")
    install.psql(f"UPDATE annotations SET \"personaId\" = '{other}' WHERE \"videoId\" = '{a_id}' "
                 "AND label LIKE '%1'")  # some of this video's work is another persona's
    install.dump = run_backup(install.settings).path
    before = state(install, a_id)
    others = count(install, "annotations", f"\"videoId\" = '{a_id}' AND \"personaId\" IS DISTINCT FROM '{persona}'")
    assert others > 0
    install.psql(f"DELETE FROM annotations WHERE \"videoId\" = '{a_id}'")
    install.psql(f"DELETE FROM personas WHERE id = '{persona}'")

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--yes")
    assert code == 3
    assert name in err and "--recreate-personas" in err and "--leave-out-orphans" in err
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == 0

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--yes",
                                 "--leave-out-orphans", "--json")
    assert code == 0, err
    assert count(install, "annotations", f"\"personaId\" = '{persona}'") == 0
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == others
    undo = json.loads(out)["results"][0]["undo_file"]
    code, out, err = install.cli(capsys, "undo-selective", undo, "--yes")
    assert code == 0, err
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == 0

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--yes",
                                 "--recreate-personas")
    assert code == 0, err
    assert install.psql(f"SELECT name FROM personas WHERE id = '{persona}'") == name
    assert state(install, a_id) == before


def test_add_missing_versus_replace_and_undo(install, capsys):
    a_id, a_name = videos(install)[2]
    dump_state = state(install, a_id)
    ids = install.psql(f"SELECT id FROM annotations WHERE \"videoId\" = '{a_id}' ORDER BY id LIMIT 2").split()
    install.psql(f"DELETE FROM annotations WHERE id = '{ids[0]}'")
    install.psql(f"UPDATE annotations SET label = 'relabelled this week' WHERE id = '{ids[1]}'")
    install.psql("INSERT INTO annotations (id, \"videoId\", type, label, \"frameStart\", \"frameEnd\", data, "
                 f"\"updatedAt\") VALUES ('added-this-week', '{a_id}', 'entity', 'new', 1, 2, '{{}}', now())")

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--mode", "add-missing",
                                 "--yes", "--json")
    assert code == 0, err
    r = json.loads(out)["results"][0]
    assert (r["inserted"], r["updated"], r["deleted"]) == (1, 0, 0)
    assert count(install, "annotations", f"id = '{ids[0]}'") == 1
    assert install.psql(f"SELECT label FROM annotations WHERE id = '{ids[1]}'") == "relabelled this week"
    assert count(install, "annotations", "id = 'added-this-week'") == 1
    before_replace = state(install, a_id)

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--yes", "--json")
    assert code == 0, err
    r = json.loads(out)["results"][0]
    assert (r["inserted"], r["updated"], r["deleted"]) == (0, 1, 1)
    assert state(install, a_id) == dump_state

    code, out, err = install.cli(capsys, "undo-selective", r["undo_file"], "--yes")
    assert code == 0, err
    assert state(install, a_id) == before_replace
    assert install.psql(f"SELECT label FROM annotations WHERE id = '{ids[1]}'") == "relabelled this week"


def test_rows_edited_since_the_comparison_are_detected_and_nothing_changes(install):
    a_id, a_name = videos(install)[4]
    ids = install.psql(f"SELECT id FROM annotations WHERE \"videoId\" = '{a_id}' ORDER BY id LIMIT 2").split()
    install.psql(f"UPDATE annotations SET label = 'mine' WHERE id IN ('{ids[0]}', '{ids[1]}')")
    with open_session(install.settings, install.dump.name) as session:
        cs = session.changeset(session.find("video", a_name), "replace")
        assert cs.count("update") == 2
        # someone else edits one of those rows while the operator reads the dry run
        install.psql(f"UPDATE annotations SET label = 'theirs', \"updatedAt\" = now() WHERE id = '{ids[1]}'")
        with pytest.raises(ConcurrentEdit) as caught:
            session.apply(cs)
    assert [c["id"] for c in caught.value.conflicts] == [ids[1]]
    assert "edited since" in str(caught.value) and caught.value.exit_code == 3
    assert install.psql(f"SELECT label FROM annotations WHERE id = '{ids[0]}'") == "mine"  # rolled back
    assert not list((install.settings.backups_dir / "selective-undo").glob("*.json"))
    assert install.scratch() == []

    # a whole restore running meanwhile: it is about to replace this database
    with open_session(install.settings, install.dump.name) as session:
        cs = session.changeset(session.find("video", a_name), "replace")
        with acquire(install.settings, "backups", purpose="restore (job 123)"), pytest.raises(SafetyRefusal) as refused:
            session.apply(cs)
    assert "whole restore is running" in str(refused.value)
    assert install.psql(f"SELECT label FROM annotations WHERE id = '{ids[0]}'") == "mine"

    # a row added to the video meanwhile: replace would not have shown it, so it is named too
    with open_session(install.settings, install.dump.name) as session:
        cs = session.changeset(session.find("video", a_name), "replace")
        install.psql("INSERT INTO annotations (id, \"videoId\", type, label, \"frameStart\", \"frameEnd\", data, "
                     f"\"updatedAt\") VALUES ('sneaked-in', '{a_id}', 'entity', 'new', 1, 2, '{{}}', now())")
        with pytest.raises(ConcurrentEdit) as caught:
            session.apply(cs)
    assert [c["id"] for c in caught.value.conflicts] == ["sneaked-in"]
    assert "inserted since" in str(caught.value)
    install.psql("DELETE FROM annotations WHERE id = 'sneaked-in'")

    # and the undo of a restore refuses rows edited after it
    with open_session(install.settings, install.dump.name) as session:
        result = session.apply(session.changeset(session.find("video", a_name), "replace"))
    install.psql(f"UPDATE annotations SET label = 'after' WHERE id = '{ids[0]}'")
    code = main(["--config", str(install.cfg), "undo-selective", str(result.undo_file), "--yes"])
    assert code == 3
    assert install.psql(f"SELECT label FROM annotations WHERE id = '{ids[0]}'") == "after"


def test_hostile_video_name_and_unknown_names(install, capsys):
    hostile = "it's \"quoted\"\nline two ünïcode 🎞.mp4"
    vid = "deadbeefdeadbeef"
    lit = hostile.replace("'", "''")
    install.psql(f"INSERT INTO videos (id, filename, path, \"updatedAt\") VALUES ('{vid}', E'{lit}', '/videos/x', now())"
                 .replace("\n", "\\n"))
    install.psql("INSERT INTO annotations (id, \"videoId\", type, label, \"frameStart\", \"frameEnd\", data, "
                 f"\"updatedAt\") SELECT 'h-' || i, '{vid}', 'entity', 'x''; DROP TABLE videos; --', i, i + 1, "
                 "'{\"q\": \"\\\"\"}', now() FROM generate_series(1, 5) i")
    dump = run_backup(install.settings).path
    install.psql(f"DELETE FROM videos WHERE id = '{vid}'")

    code, out, err = install.cli(capsys, "compare", dump.name)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if "quoted" in ln)
    assert "\\n" in line and "ünïcode 🎞.mp4" in line  # one line, the newline shown escaped

    code, out, err = install.cli(capsys, "restore", dump.name, "--video", hostile, "--yes")
    assert code == 0, err
    assert count(install, "annotations", f"\"videoId\" = '{vid}'") == 5
    assert install.psql(f"SELECT filename = E'{lit}' FROM videos WHERE id = '{vid}'".replace("\n", "\\n")) == "t"

    code, out, err = install.cli(capsys, "restore", dump.name, "--video", "no-such.mp4", "--yes")
    assert code == 2 and "no-such.mp4" in err
    code, out, err = install.cli(capsys, "compare", "nope.sql.gz")
    assert code == 2 and "nope.sql.gz" in err
    code, out, err = install.cli(capsys, "restore", dump.name, "--mode", "add-missing", "--yes")
    assert code == 2 and "--mode" in err
    code, out, err = install.cli(capsys, "restore", dump.name, "--video", vid, "--skip-migrate", "--yes")
    assert code == 2 and "--skip-migrate" in err
    assert install.scratch() == []


def _spawn(install: Install, *args: str) -> subprocess.Popen:
    env = {**os.environ, "FOVEA_TUI_PG_BIN": str(install.db.bin_dir)}  # type: ignore[attr-defined]
    return subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", str(install.cfg), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for_scratch(install: Install, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while not install.scratch():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_scratch_database_dropped_on_ctrl_c_and_after_kill(install):
    proc = _spawn(install, "compare", install.dump.name)
    _wait_for_scratch(install, proc)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and b"cancelled" in err and b"Traceback" not in err, err
    assert install.scratch() == [], err

    proc = _spawn(install, "compare", install.dump.name)
    _wait_for_scratch(install, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left = install.scratch()
    assert len(left) == 1  # killed: nothing could drop it...
    proc = _spawn(install, "compare", install.dump.name, "--json")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert install.scratch() == []  # ...the next run does, before loading its own
    assert json.loads(out)["scopes"]


def test_persona_ontology_and_world_state_brought_back(install, capsys):
    pid, _name, user = install.psql(
        "SELECT p.id || '|' || p.name || '|' || p.\"userId\" FROM personas p JOIN world_state w ON "
        "w.\"userId\" = p.\"userId\" JOIN ontologies o ON o.\"personaId\" = p.id ORDER BY p.id LIMIT 1").split("|")
    ontology = install.psql(f"SELECT o::text FROM ontologies o WHERE \"personaId\" = '{pid}'")
    world = install.psql(f"SELECT w::text FROM world_state w WHERE \"userId\" = '{user}'")
    install.psql(f"DELETE FROM ontologies WHERE \"personaId\" = '{pid}'")
    install.psql(f"UPDATE world_state SET entities = '[{{\"oops\": 1}}]' WHERE \"userId\" = '{user}'")

    code, out, err = install.cli(capsys, "compare", install.dump.name, "--json")
    assert code == 0, err
    scope = next(s for s in json.loads(out)["scopes"] if s["id"] == pid)
    assert scope["kind"] == "persona" and "1 ontology then, 0 now" in scope["summary"]
    assert "1 world state row changed" in scope["summary"]

    code, out, err = install.cli(capsys, "restore", install.dump.name, "--persona", pid, "--yes", "--json")
    assert code == 0, err
    r = json.loads(out)["results"][0]
    assert (r["inserted"], r["updated"], r["deleted"]) == (1, 1, 0)
    assert install.psql(f"SELECT o::text FROM ontologies o WHERE \"personaId\" = '{pid}'") == ontology
    assert install.psql(f"SELECT w::text FROM world_state w WHERE \"userId\" = '{user}'") == world


def test_dump_only_off_site_is_fetched_and_compared(fresh_direct_db, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    env_file, values = write_env(tmp_path)
    data = direct_config(tmp_path, fresh_direct_db.url, env_file, backups={"offsite": str(tmp_path / "offsite")})
    settings, cfg = settings_and_config(tmp_path, data)
    backup = run_backup(settings)
    assert backup.offsite
    backup.path.unlink()  # the host's copy is gone: only the off-site one is left
    inst = Install(fresh_direct_db, settings, cfg, values, backup.path)
    a_id, a_name = videos(inst)[5]
    then = count(inst, "annotations", f"\"videoId\" = '{a_id}'")
    inst.psql(f"DELETE FROM annotations WHERE \"videoId\" = '{a_id}'")

    code, out, err = inst.cli(capsys, "restore", backup.path.name, "--video", a_name, "--yes", "--json")
    assert code == 0, err
    assert count(inst, "annotations", f"\"videoId\" = '{a_id}'") == then
    assert inst.scratch() == []
    assert not [p for p in settings.state_dir.iterdir() if p.name.startswith("selective-")]  # the fetched copy


def test_no_undo_file_no_change(install, capsys):
    """The undo file cannot be written (its place taken, as a full or read-only disk would):
    one line saying so, exit 1, and not one row changed."""
    a_id, a_name = videos(install)[6]
    install.psql(f"DELETE FROM annotations WHERE \"videoId\" = '{a_id}'")
    (install.settings.backups_dir / "selective-undo").write_text("not a directory")
    code, out, err = install.cli(capsys, "restore", install.dump.name, "--video", a_name, "--yes")
    assert code == 1 and "selective-undo" in err and "nothing was changed" in err and "Traceback" not in err
    assert count(install, "annotations", f"\"videoId\" = '{a_id}'") == 0
    assert install.scratch() == []


def _rewrite_keeping_mtime(dump: Path) -> None:
    """The dump rewritten by someone else (a copy put in its place), its mtime put back."""
    import gzip

    st = dump.stat()
    sql = gzip.decompress(dump.read_bytes())
    tail = b"\n-- PostgreSQL database dump complete\n"
    fresh = dump.with_name(dump.name + ".new")
    fresh.write_bytes(gzip.compress(sql.replace(tail, b"\nCOMMENT ON TABLE public.videos IS 'tampered';\n" + tail)))
    os.utime(fresh, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(fresh, dump)


def test_a_dump_rewritten_while_the_session_loads_it_offers_nothing(install):
    """The rows a selective restore offers come from the dump it verified, or from none."""
    from fovea_tui.errors import OperationFailed

    rewritten = []

    def progress(event) -> None:
        if event.phase == "restore" and not rewritten:
            rewritten.append(True)
            _rewrite_keeping_mtime(install.dump)

    with pytest.raises(OperationFailed, match="changed since it was verified"):
        with open_session(install.settings, install.dump.name, progress=progress):
            pytest.fail("a session was opened on a dump that changed after its check")
    assert rewritten and install.scratch() == []
