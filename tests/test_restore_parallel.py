"""Issue 20, the restore step: the dump is loaded over several psql sessions (schema, rows
dealt out in chunks, indexes and keys side by side, the rest in order). Against a real
PostgreSQL (and the compose-labelled test stack for docker mode):

- what it loads is exactly what one `gunzip | psql` loads: the same schema (pg_dump
  --schema-only) and the same rows (an md5 of each table's ordered rows), on the sandbox seed
  and on a hostile dump (COPY lines and `\\.` inside a function body and a string, odd names,
  escapes in values, an empty table, setval, a rule and a trigger, a partitioned table with
  an index on its parent, a materialized view);
- a bad row in the middle of a big COPY and a unique index over duplicates fail the step with
  psql's error line at the dump's line, no psql left, rolled back (exit 1);
- a runner killed with SIGKILL mid-data leaves no psql once the restore is rolled back;
- docker mode loads over several sessions too.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support.services import local_psql_pids, unavailable
from test_restore_integrity import direct_settings, run_cli

from fovea_tui.config import save_settings
from fovea_tui.engine import restore as engine
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.infra.database import DirectDatabase
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.restore import loader
from fovea_tui.engine.restore.steps import stream_dump
from fovea_tui.envfile import DatabaseURL

HOSTILE_SQL = r"""
CREATE TABLE public.x (a int, b text DEFAULT 'plain');
CREATE FUNCTION public.tricky() RETURNS integer LANGUAGE plpgsql AS $fn$
BEGIN
/*
COPY public.x (a) FROM stdin;
7
\.
*/
  RETURN 1;
END $fn$;
COMMENT ON TABLE public.x IS 'a comment that looks like data:
COPY public.x (a) FROM stdin;
8
\.
CREATE INDEX fake ON public.x USING btree (a);
';
CREATE TABLE public."Odd ""Name"" ;x" ("col with space" int PRIMARY KEY, "Tab	col" text, "ß" text);
CREATE INDEX "idx ;odd" ON public."Odd ""Name"" ;x" ("Tab	col");
INSERT INTO public."Odd ""Name"" ;x" SELECT i, 'v' || i, E'line\none\ttab\\back\\slash \\. end' FROM generate_series(1, 300) i;
INSERT INTO public.x SELECT i, E'\\.\n\\.' FROM generate_series(1, 50) i;
CREATE TABLE public.escapes (id int PRIMARY KEY, t text);
INSERT INTO public.escapes VALUES (1, E'a\nb'), (2, E'\t\t'), (3, E'back\\slash'), (4, E'\\.'),
  (5, E'COPY public.x (a) FROM stdin;'), (6, E'\n\\.\n'), (7, ''), (8, NULL), (9, E'\r\n'), (10, 'émoji ✓');
CREATE TABLE public.empty_t (id int PRIMARY KEY, note text);
CREATE SEQUENCE public.counter START 5;
SELECT setval('public.counter', 4242, true);
CREATE TABLE public.serials (id serial PRIMARY KEY, v text UNIQUE);
INSERT INTO public.serials (v) SELECT 's' || i FROM generate_series(1, 2000) i;
CREATE FUNCTION public.stamp() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.b := 'triggered'; RETURN NEW; END $$;
CREATE TRIGGER x_stamp BEFORE INSERT ON public.x FOR EACH ROW EXECUTE FUNCTION public.stamp();
CREATE RULE x_no_delete AS ON DELETE TO public.escapes DO INSTEAD NOTHING;
CREATE TABLE public.parts (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE public.parts_a PARTITION OF public.parts FOR VALUES FROM (0) TO (100);
CREATE TABLE public.parts_b PARTITION OF public.parts FOR VALUES FROM (100) TO (100000);
CREATE INDEX parts_v ON public.parts (v);
INSERT INTO public.parts SELECT i, i % 1000, md5(i::text) FROM generate_series(1, 20000) i;
CREATE TABLE public.big (id int PRIMARY KEY, t text, u text);
INSERT INTO public.big SELECT i, md5(i::text), md5((i * 7)::text) FROM generate_series(1, 40000) i;
CREATE INDEX big_t ON public.big (t);
CREATE UNIQUE INDEX big_u ON public.big (u) WHERE (u <> 'x;y');
CREATE TABLE public.child (id int PRIMARY KEY, big_id int REFERENCES public.big (id));
INSERT INTO public.child SELECT i, i FROM generate_series(1, 1000) i;
CREATE MATERIALIZED VIEW public.big_summary AS SELECT left(t, 1) AS c, count(*) AS n FROM public.big GROUP BY 1;
CREATE UNIQUE INDEX big_summary_c ON public.big_summary (c);
"""


def pg_dump(cluster, database: str, *extra: str) -> bytes:
    return subprocess.run([str(cluster.bin_dir / "pg_dump"), *extra, database], env=cluster.env(),
                          capture_output=True, check=True).stdout


def schema(cluster, database: str) -> str:
    """pg_dump --schema-only, less the random key of its \\restrict lines."""
    text = pg_dump(cluster, database, "--schema-only").decode()
    return "\n".join(ln for ln in text.splitlines() if not ln.startswith(("\\restrict", "\\unrestrict")))


def contents(cluster, database: str) -> dict[str, str]:
    """Per table (and materialized view) an md5 of its rows in order; each sequence's state."""
    out = cluster.psql(
        "SELECT string_agg(format('SELECT %L, md5(coalesce(string_agg(t::text, E''\\n'' ORDER BY t::text), '''')) "
        "FROM %I.%I t', n.nspname || '.' || c.relname, n.nspname, c.relname), ' UNION ALL ') "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'm', 'p') \\gexec\n"
        "SELECT string_agg(format('SELECT %L, last_value || '','' || is_called FROM %I.%I', sequencename, "
        "schemaname, sequencename), ' UNION ALL ') FROM pg_sequences WHERE schemaname = 'public' \\gexec\n",
        database)
    return dict(line.split("|", 1) for line in out.splitlines() if line)


class Ctx:
    """What stream_dump needs of a restore's context."""

    def __init__(self, db) -> None:
        self.db = db
        self.cancel = CancelToken()
        self.lines: list[str] = []
        self.done: list[tuple[int, int | None]] = []

    def progress(self, done: int, total: int | None, unit: str = "bytes") -> None:
        self.done.append((done, total))

    def output(self, line: str) -> None:
        self.lines.append(line)


def app_db(cluster) -> DirectDatabase:
    return DirectDatabase(DatabaseURL.parse(cluster.url, source="test"), cluster.bin_dir)


def restore_both_ways(cluster, dump: Path) -> tuple[str, str, Ctx]:
    """The dump restored by `gunzip | psql` and by stream_dump into two new databases; the rows
    stream_dump counted (beside the foreign keys' checks) are the rows the database holds."""
    one, many = cluster.unique_name("one"), cluster.unique_name("many")
    for name in (one, many):
        cluster.create_database(name, seeded=False)
    piped = subprocess.run(f"gunzip -c {dump} | {cluster.bin_dir / 'psql'} -X -q -v ON_ERROR_STOP=1 "
                           f"--single-transaction -o /dev/null -d {one}", shell=True, env=cluster.env(),
                           capture_output=True, text=True)
    assert piped.returncode == 0, piped.stderr
    ctx = Ctx(app_db(cluster))
    counted = stream_dump(ctx, dump, many, count=True)
    assert counted and counted == app_db(cluster).table_rows(many) == app_db(cluster).table_rows(one)
    return one, many, ctx


@pytest.fixture
def many_chunks(monkeypatch):
    """Any dump goes the parallel way, its blocks cut into many chunks."""
    monkeypatch.setattr(loader, "SMALL_DUMP", 0)
    monkeypatch.setattr(loader, "CHUNK_TARGET", 16 << 10)


# ---------------------------------------------------------------- the same result


@pytest.mark.parametrize("source", ["seed", "hostile"])
def test_parallel_load_gives_what_one_psql_gives(direct_pg, fresh_direct_db, many_chunks, tmp_path, source):
    cluster = direct_pg
    if source == "hostile":
        fresh_direct_db.psql(HOSTILE_SQL)
    dump = tmp_path / "dump.sql.gz"
    sql = pg_dump(cluster, fresh_direct_db.name)
    if source == "hostile":  # the traps are really in the dump, at the start of their lines
        lines = sql.decode().split("\n")
        assert lines.count("COPY public.x (a) FROM stdin;") == 2
        assert lines.count("\\.") == sum(ln.startswith("COPY ") for ln in lines)
    dump.write_bytes(gzip.compress(sql))
    one, many, ctx = restore_both_ways(cluster, dump)
    try:
        assert schema(cluster, many) == schema(cluster, one)
        expected = contents(cluster, one)
        assert contents(cluster, many) == expected
        assert len(expected) > (20 if source == "hostile" else 10)
        summary = [line for line in ctx.lines if line.startswith("loaded over ")]
        assert len(summary) == 1 and "indexes and keys" in summary[0], ctx.lines
        assert "foreign keys checked (rows counted beside)" in summary[0], ctx.lines  # NOT VALID, then validated
        assert ctx.done[-1] == (dump.stat().st_size, dump.stat().st_size)
        if source == "hostile":
            assert cluster.psql("SELECT public.tricky(), last_value FROM public.counter", many).strip() == "1|4242"
            assert cluster.psql("SELECT count(*) FROM public.x WHERE b = 'triggered'", many).strip() == "0"
    finally:
        for name in (one, many):
            cluster.drop_database(name)


def test_post_data_that_cannot_be_sorted_safely_runs_in_order(direct_pg, fresh_direct_db, many_chunks, tmp_path):
    """A statement in post-data that could change what an index builds (here a role switch
    before the indexes) keeps all of post-data in one session, in the dump's order."""
    sql = pg_dump(direct_pg, fresh_direct_db.name).decode()
    cut = sql.index("ALTER TABLE ONLY public.")
    sql = sql[:cut] + "SET ROLE fovea;\n" + sql[cut:]
    dump = tmp_path / "dump.sql.gz"
    dump.write_bytes(gzip.compress(sql.encode()))
    one, many, ctx = restore_both_ways(direct_pg, dump)
    try:
        assert schema(direct_pg, many) == schema(direct_pg, one)
        assert contents(direct_pg, many) == contents(direct_pg, one)
        assert any("post-data in order, in one session: line" in line and "SET ROLE" in line for line in ctx.lines), ctx.lines
    finally:
        for name in (one, many):
            direct_pg.drop_database(name)


def test_cancel_mid_load_stops_every_session(direct_pg, fresh_direct_db, many_chunks, tmp_path):
    fresh_direct_db.psql(HOSTILE_SQL)
    dump = tmp_path / "dump.sql.gz"
    dump.write_bytes(gzip.compress(pg_dump(direct_pg, fresh_direct_db.name)))
    target = direct_pg.create_database(direct_pg.unique_name("cancelled"), seeded=False)
    ctx = Ctx(app_db(direct_pg))
    real = ctx.progress

    def progress(done: int, total: int | None, unit: str = "bytes") -> None:
        real(done, total)
        if len(ctx.done) == 2:
            ctx.cancel.cancel()

    ctx.progress = progress  # type: ignore[method-assign]
    try:
        from fovea_tui.errors import Cancelled

        with pytest.raises(Cancelled):
            stream_dump(ctx, dump, target)
        assert local_psql_pids(target) == []
        sessions = direct_pg.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{target}'", "postgres")
        assert sessions.strip() == "0"
    finally:
        direct_pg.drop_database(target)


def test_a_psql_that_cannot_start_fails_the_load_saying_so(direct_pg, fresh_direct_db, many_chunks, tmp_path):
    from fovea_tui.errors import OperationFailed

    dump = tmp_path / "dump.sql.gz"
    dump.write_bytes(gzip.compress(pg_dump(direct_pg, fresh_direct_db.name)))
    (tmp_path / "bin").mkdir()
    db = DirectDatabase(DatabaseURL.parse(direct_pg.url, source="test"), tmp_path / "bin")  # no psql there
    with pytest.raises(OperationFailed, match=r"psql could not start for the (schema \(pre-data\)|rows \(data\)): .*No such file"):
        stream_dump(Ctx(db), dump, fresh_direct_db.name)


# ---------------------------------------------------------------- failures, through the CLI


@pytest.fixture
def big_direct(fresh_direct_db, tmp_path, monkeypatch):
    """Direct mode on a database large enough to load in parallel (a filler table of about
    5 MB of rows, a table with a unique index and one whose foreign key refers to it), a
    marker only the old database has."""
    fresh_direct_db.psql(
        "CREATE TABLE public.filler (i int, t text, u text);"
        "INSERT INTO public.filler SELECT i, md5(i::text), md5((i * 7)::text) FROM generate_series(1, 60000) i;"
        "CREATE TABLE public.tags (id int, name text);"
        "INSERT INTO public.tags SELECT i, 'tag' || i FROM generate_series(1, 100) i;"
        "CREATE UNIQUE INDEX tags_name_key ON public.tags (name);"
        "CREATE TABLE public.tagged (id int PRIMARY KEY, tag text REFERENCES public.tags (name));"
        "INSERT INTO public.tagged SELECT i, 'tag' || (i % 5 + 1) FROM generate_series(1, 1000) i;")
    settings, config = direct_settings(fresh_direct_db, tmp_path, monkeypatch)
    sql = pg_dump(fresh_direct_db.cluster, fresh_direct_db.name).decode()
    fresh_direct_db.psql("CREATE TABLE restore_marker (id int); INSERT INTO restore_marker VALUES (1);")
    return settings, config, sql, fresh_direct_db


def write_dump(settings, sql: str) -> Path:
    """The SQL as a dump in the backups dir (no manifest: the pre-flight takes it as it is)."""
    settings.backups_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.backups_dir / "fovea-20200101T000000Z.sql.gz"
    path.write_bytes(gzip.compress(sql.encode()))
    assert path.stat().st_size > loader.SMALL_DUMP
    return path


def assert_rolled_back(db, proc) -> dict:
    assert proc.returncode == 1, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["status"] == "rolled_back", result["message"]
    restore = next(s for s in result["steps"] if s["name"] == "restore")
    assert restore["status"] == "failed" and restore["undo"]["status"] == "ok"
    assert db.psql("SELECT count(*) FROM restore_marker").strip() == "1"  # the old database, intact
    assert local_psql_pids(db.name) == []
    return result


def restore_rolled_back(settings, config, db, sql: str) -> tuple[dict, str]:
    """`restore --yes` of `sql` as a dump, which fails and is rolled back: its restore step's
    record and the job's log."""
    write_dump(settings, sql)
    proc = run_cli(["--config", str(config), "restore", "fovea-20200101T000000Z.sql.gz", "--yes", "--json"])
    result = assert_rolled_back(db, proc)
    return next(s for s in result["steps"] if s["name"] == "restore"), Path(result["log"]).read_text()


def test_a_bad_row_in_the_middle_of_a_big_copy_names_its_line(big_direct):
    settings, config, sql, db = big_direct
    lines = sql.split("\n")
    header = next(i for i, ln in enumerate(lines) if ln.startswith("COPY public.filler "))
    bad = header + 45000  # row 45000 of the block (0-based index of its line): far past the first chunk
    lines[bad] += "\textra"
    restore, log = restore_rolled_back(settings, config, db, "\n".join(lines))
    assert "extra data after last expected column" in restore["detail"] and "rows (data)" in restore["detail"]
    assert f"psql:<stdin>:{bad + 1}: ERROR:  extra data after last expected column" in log, log
    assert re.search(r"CONTEXT:\s+COPY filler, line 45000:", log), log


def test_a_unique_index_over_duplicates_fails_in_post_data(big_direct):
    settings, config, sql, db = big_direct
    sql = sql.replace("\ttag7\n", "\ttag8\n", 1)
    line = sql[:sql.index("CREATE UNIQUE INDEX tags_name_key")].count("\n") + 1
    restore, log = restore_rolled_back(settings, config, db, sql)
    assert 'could not create unique index "tags_name_key"' in restore["detail"], restore["detail"]
    assert "indexes and keys (post-data)" in restore["detail"]
    assert f'psql:<stdin>:{line}: ERROR:  could not create unique index "tags_name_key"' in log, log


def test_a_row_that_breaks_a_foreign_key_fails_its_check_on_the_keys_line(big_direct):
    """The key is added NOT VALID, then validated in a session of its own: a row the dump
    holds without its parent still fails the load, named at the key's line in the dump."""
    settings, config, sql, db = big_direct
    block = sql.index("COPY public.tagged ")
    row = sql.index("\n500\t", block) + 1
    sql = sql[:row] + sql[row:].replace("500\ttag1\n", "500\tnope\n", 1)
    line = sql[:sql.index('ALTER TABLE ONLY public.tagged\n    ADD CONSTRAINT tagged_tag_fkey')].count("\n") + 1
    restore, log = restore_rolled_back(settings, config, db, sql)
    assert 'violates foreign key constraint "tagged_tag_fkey"' in restore["detail"], restore["detail"]
    assert "foreign keys (post-data)" in restore["detail"]
    assert f'psql:<stdin>:{line}: ERROR:  insert or update on table "tagged" violates foreign key constraint' in log, log


def test_an_error_in_the_schema_names_its_line_and_no_rows_are_loaded(big_direct):
    settings, config, sql, db = big_direct
    cut = sql.index("\nCOPY public.") + 1
    line = sql[:cut].count("\n") + 1
    restore, log = restore_rolled_back(settings, config, db, sql[:cut] + "INSERT INTO no_such_table VALUES (1);\n" + sql[cut:])
    assert "(while loading the schema (pre-data));" in restore["detail"]  # one session: no number
    assert f'psql:<stdin>:{line}: ERROR:  relation "no_such_table" does not exist' in log, log


@pytest.mark.parametrize("then", ["--rollback", "--resume"])
def test_runner_killed_mid_data_leaves_no_psql_after_rollback_or_resume(big_direct, then):
    settings, config, sql, db = big_direct
    # a slow row check (in the schema, before the first COPY) holds the data phase for long
    # enough to kill the runner in it
    cut = sql.index("\nCOPY public.") + 1
    slow = ("CREATE FUNCTION public.slow_ok(v integer) RETURNS boolean LANGUAGE sql AS "
            "$$ SELECT pg_catalog.pg_sleep(0.0005) IS NOT NULL $$;\n"
            "ALTER TABLE public.filler ADD CONSTRAINT filler_slow CHECK (public.slow_ok(i));\n")
    write_dump(settings, sql[:cut] + slow + sql[cut:])
    job = engine.start_restore(settings, "fovea-20200101T000000Z.sql.gz", confirmed=True)
    deadline = time.monotonic() + 300
    while True:
        data = jobs.load_job(settings, job)
        assert time.monotonic() < deadline and data["status"] not in jobs.FINAL, (
            "the data phase never started", data["status"], data.get("message"),
            [(r["name"], r["status"]) for r in data["steps"]])
        rec = next(r for r in data["steps"] if r["name"] == "restore")
        copying = db.cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND "
                                  f"datname = '{db.name}' AND query LIKE 'COPY public.filler %'", "postgres")
        if rec["status"] == "running" and int(copying) >= 2:  # rows going in over two sessions
            break
        time.sleep(0.05)
    os.kill(data["pid"], signal.SIGKILL)
    proc = run_cli(["--config", str(config), "restore", then, job, "--json", *(["--yes"] if then == "--resume" else [])])
    result = json.loads(proc.stdout)
    if then == "--rollback":
        assert proc.returncode == 1, proc.stderr + proc.stdout
        assert result["status"] == "rolled_back"
        assert db.psql("SELECT count(*) FROM restore_marker").strip() == "1"
    else:  # loaded again from a new empty database: every row once, the check in place
        restore = next(s for s in result["steps"] if s["name"] == "restore")
        assert restore["status"] == "ok", result
        assert db.psql("SELECT count(*), count(DISTINCT i) FROM filler").strip() == "60000|60000"
        assert db.psql("SELECT to_regclass('public.restore_marker') IS NULL").strip() == "t"
    assert local_psql_pids(db.name) == []


# ---------------------------------------------------------------- docker mode


@pytest.fixture
def docker_filler(stack, tmp_path):
    """A dump of the stack's database with a table of 60,000 rows and its index (a few MiB),
    the rows per table it holds, and the settings that took it."""
    from fovea_tui.engine.backups.pipeline import run_backup
    from fovea_tui.engine.infra.database import open_database

    settings = stack.settings(tmp_path, stack={"health_url": stack.health_url})
    stack.psql("CREATE TABLE filler AS SELECT i, md5(i::text) AS t FROM generate_series(1, 60000) i;"
               "CREATE INDEX filler_t ON filler (t);")
    try:
        dump = run_backup(settings, offsite=False).path
        yield settings, dump, open_database(settings).table_rows()
    finally:
        stack.psql("DROP TABLE IF EXISTS filler; DROP TABLE IF EXISTS restore_marker;")


@pytest.mark.docker
def test_docker_mode_loads_a_dump_under_its_threshold_in_one_session(stack, tmp_path, docker_filler):
    """Each session is a `docker exec` stream: below SMALL_DUMP_DOCKER one session is faster."""
    from fovea_tui.engine.infra.database import open_database

    settings, dump, expected = docker_filler
    assert loader.SMALL_DUMP < dump.stat().st_size < loader.SMALL_DUMP_DOCKER
    stack.psql("CREATE TABLE restore_marker (id int); DELETE FROM filler WHERE i < 100;")
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--skip-migrate", "--json"], timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    log = Path(json.loads(proc.stdout)["log"]).read_text()
    assert "loaded in one psql session" in log and "loaded over" not in log, log
    assert open_database(settings).table_rows() == expected
    assert stack.psql("SELECT to_regclass('public.restore_marker') IS NULL").strip() == "t"
    assert stack.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'filler_t'").strip() == "1"


@pytest.mark.docker
def test_docker_mode_loads_a_dump_over_its_threshold_over_several_sessions(stack, docker_filler, monkeypatch):
    """The parallel load through `docker exec` sessions, the threshold lowered under this dump
    (a real one above 64 MiB would take a minute to make): the same rows, the index built."""
    from fovea_tui.engine.infra.database import open_database

    settings, dump, expected = docker_filler
    monkeypatch.setattr(loader, "SMALL_DUMP_DOCKER", 0)
    db = open_database(settings)
    target = "fovea_parallel_" + str(os.getpid())
    stack.psql(f"CREATE DATABASE {target} OWNER fovea;")
    try:
        ctx = Ctx(db)
        loader.load_dump(ctx, dump, target)
        assert any(re.match(r"loaded over [2-4] psql sessions", line) for line in ctx.lines), ctx.lines
        assert db.table_rows(database=target) == expected
        assert stack.psql("SELECT count(*) FROM pg_indexes WHERE indexname = 'filler_t'", db=target).strip() == "1"
    finally:
        stack.psql(f"DROP DATABASE IF EXISTS {target} WITH (FORCE);")


# ---------------------------------------------------------------- pg_dump's \restrict


CLIENT_15 = Path("/usr/lib/postgresql/15/bin")


def restricting_client() -> Path:
    """A psql that knows pg_dump's \\restrict (15.14 and later); skip, or fail under CI=true."""
    psql = CLIENT_15 / "psql"
    if not psql.exists():
        unavailable(f"no Debian postgresql-client at {CLIENT_15} (scripts/ensure-services.sh installs it)")
    version = subprocess.run([str(psql), "--version"], capture_output=True, text=True).stdout
    major, minor = (int(x) for x in re.search(r"(\d+)\.(\d+)", version).groups())
    if (major, minor) < (15, 14):
        unavailable(f"{version.strip()} does not know \\restrict (scripts/ensure-services.sh installs a newer one)")
    return CLIENT_15


def test_restricted_dump_keeps_every_session_restricted(direct_pg, fresh_direct_db, many_chunks, tmp_path):
    """pg_dump 17.6/16.10/15.14 wrap the dump in \\restrict KEY ... \\unrestrict KEY so a hostile
    server cannot have psql run meta-commands. Every session gets the \\restrict line: the dump
    loads as before, and a meta-command hidden after the data is refused, not run."""
    client = restricting_client()
    sql = pg_dump(direct_pg, fresh_direct_db.name).decode()
    at = sql.index("SET statement_timeout")
    restricted = sql[:at] + "\\restrict K3y\n\n" + sql[at:] + "\n\\unrestrict K3y\n"
    db = DirectDatabase(DatabaseURL.parse(direct_pg.url, source="test"), client)
    good = tmp_path / "good.sql.gz"
    good.write_bytes(gzip.compress(restricted.encode()))
    target = direct_pg.create_database(direct_pg.unique_name("restricted"), seeded=False)
    try:
        ctx = Ctx(db)
        stream_dump(ctx, good, target)
        assert contents(direct_pg, target) == contents(direct_pg, fresh_direct_db.name)
    finally:
        direct_pg.drop_database(target)

    flag = tmp_path / "pwned"
    cut = restricted.index("\n--\n-- Name: ", restricted.rindex("\n\\.\n")) + 1  # after the last COPY block
    hostile = tmp_path / "hostile.sql.gz"
    hostile.write_bytes(gzip.compress((restricted[:cut] + f"\\! touch {flag}\n" + restricted[cut:]).encode()))
    target = direct_pg.create_database(direct_pg.unique_name("restricted"), seeded=False)
    try:
        from fovea_tui.errors import OperationFailed

        with pytest.raises(OperationFailed, match="rest of post-data"):
            stream_dump(Ctx(db), hostile, target)
        assert not flag.exists()
        assert local_psql_pids(target) == []
    finally:
        direct_pg.drop_database(target)
