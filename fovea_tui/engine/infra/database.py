"""One interface to the install's PostgreSQL, two ways in.

`docker`: pg_dump and psql run inside the compose `postgres` service (docker exec), as
the runbook's `docker compose exec -T postgres ...` lines do. `direct`: the client tools
run on this host against a URL, the password passed in the environment (libpq's
PGPASSWORD), never on a command line.
"""

from __future__ import annotations

import copy
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.engine.infra.stack import Stack
from fovea_tui.engine.infra.streams import DockerExecProcess, LocalProcess, ToolProcess, condense
from fovea_tui.envfile import DatabaseURL, EnvFile
from fovea_tui.errors import ConfigError, OperationFailed

PG_BIN_ENV = "FOVEA_TUI_PG_BIN"  # a directory holding pg_dump/psql for direct mode


@dataclass(frozen=True)
class ServerFacts:
    """The server as a restore's pre-flight sees it (`Database.server_facts`)."""

    major: int
    extensions: frozenset[str]
    databases: tuple[str, ...]
    size: int | None             # bytes of the database restored into; None when it does not exist
    data_directory: str | None   # None when this role may not read it
    oid: int | None = None       # the database restored into: its identity, kept through a rename


class DatabaseError(OperationFailed):
    """A client tool failed; the message carries its condensed, redacted stderr."""


def _version_of(binary: str) -> tuple[int, ...]:
    """The client's version; asked once per binary and build (the dashboard's status probe
    looks for the client tools on every poll, and each question is a process)."""
    try:
        st = os.stat(binary)
    except OSError:
        return ()
    return _asked_version(binary, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=64)
def _asked_version(binary: str, _mtime_ns: int, _size: int) -> tuple[int, ...]:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    match = re.search(r"(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in match.groups() if g) if match else ()


def _pgserver_bin() -> list[Path]:
    """The pgserver wheel's bin directory (demo and test extras), located without importing
    it: importing pgserver prints a RuntimeDirWarning when XDG_RUNTIME_DIR is unset, which
    cron would mail on every run."""
    try:
        spec = importlib.util.find_spec("pgserver")
    except (ImportError, ValueError):
        return []
    roots = list(spec.submodule_search_locations or []) if spec else []
    return [Path(root) / "pginstall" / "bin" for root in roots]


def _ssl_capable(directory: Path) -> bool:
    """Was this client's libpq built with SSL? Asked of psql itself: with sslmode=require and
    a socket directory that does not exist, a libpq without SSL refuses the mode before it
    tries to connect; one with SSL fails to connect instead. No network, a few ms."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGSSLMODE="require", PGHOST="/nonexistent/fovea-tui-probe", PGCONNECT_TIMEOUT="1")
    try:
        r = subprocess.run([str(directory / "psql"), "-X", "-w", "-c", ""], capture_output=True, text=True,
                           env=env, timeout=10, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return False
    return "not compiled in" not in r.stderr


def find_client_bin(min_major: int = 0, *, url: DatabaseURL | None = None) -> Path:
    """The directory of the newest PostgreSQL client tools on this host that can do what is
    asked of them.

    pg_dump refuses servers newer than itself, so prefer the highest version found in
    $FOVEA_TUI_PG_BIN, PATH, Debian's /usr/lib/postgresql/*/bin and the pgserver wheel. A
    `url` whose parameters need SSL (sslmode=require...) or a newer libpq (require_auth: 16)
    rules out the clients that cannot honour them: a ConfigError says so rather than a
    connection made without what the URL asked for.
    """
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    on_path = shutil.which("pg_dump")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"))]
    candidates += _pgserver_bin()
    present = [d for d in dict.fromkeys(candidates) if (d / "pg_dump").exists() and (d / "psql").exists()]
    with ThreadPoolExecutor(max_workers=max(1, len(present))) as pool:  # each version asked is a process
        versions = list(pool.map(lambda d: _version_of(str(d / "pg_dump")), present))
    found = [(version, directory) for version, directory in zip(versions, present, strict=True) if version]
    found.sort(key=lambda item: item[0], reverse=True)
    if not found:
        raise ConfigError(
            "no PostgreSQL client tools (pg_dump, psql) on this host for database.mode = \"direct\"",
            key="database.mode",
            hint=f"install postgresql-client, set ${PG_BIN_ENV}, or use database.mode = \"docker\"",
        )
    source = url.source if url is not None else "database.url"
    needs = url.client_needs if url is not None else None
    if needs is not None:
        usable = [item for item in found if item[0][0] >= needs[0]]
        if not usable:
            raise ConfigError(
                f"{source} sets {needs[1]}, which PostgreSQL client tools older than {needs[0]} ignore; "
                f"the newest here is pg_dump {_dotted(found[0][0])}",
                key=source, hint=f"install postgresql-client-{needs[0]} and set ${PG_BIN_ENV}, or drop {needs[1]}")
        found = usable
    ssl = url.needs_ssl if url is not None else None
    if ssl is not None:
        usable = [item for item in found if _ssl_capable(item[1])]
        if not usable:
            raise ConfigError(
                f"{source} asks for {ssl}, but no PostgreSQL client tools here that could connect were "
                "built with SSL support (" + ", ".join(f"{d} {_dotted(v)}" for v, d in found) + ")",
                key=source, hint=f"install Debian's postgresql-client and set ${PG_BIN_ENV} to its bin directory")
        found = usable
    best = found[0]
    if min_major and best[0][0] < min_major:
        raise ConfigError(
            f"pg_dump {_dotted(best[0])} is older than the server ({min_major})",
            key="database.mode",
            hint=f"install postgresql-client-{min_major} or set ${PG_BIN_ENV} to its bin directory",
        )
    return best[1]


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


class Database(ABC):
    """What the engine needs of PostgreSQL; see DockerDatabase and DirectDatabase."""

    name: str
    user: str
    mode: str

    @abstractmethod
    def describe(self) -> str:
        """Where the database is, for messages (never a password)."""

    @abstractmethod
    def _spawn(self, tool: str, args: Sequence[str], *, stdin: bool = False) -> ToolProcess:
        """Start a client tool (psql, pg_dump) against this database."""

    # --- shared behaviour ---------------------------------------------------------

    def psql(self, sql: str, *, database: str | None = None) -> str:
        """Run SQL (read from stdin, so nothing lands in argv) and return psql -At output."""
        proc = self._spawn("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database or self.name],
                           stdin=True)
        try:
            proc.write(sql.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # the tool exited early (server unreachable): its exit code and stderr say why
        proc.close_stdin()
        out = bytearray()
        for chunk in iter(proc.read, b""):
            out += chunk
        code = proc.wait()
        if code != 0:
            raise DatabaseError(f"psql on {self.describe()} failed: {condense(proc.stderr_text)}")
        return out.decode("utf-8", "replace").rstrip("\n")

    def query_stream(self, sql: str, *, database: str | None = None) -> ToolProcess:
        """Start psql -At on `sql` and hand back the process: the caller reads stdout as it
        comes (results too large to hold), then wait()s and checks the code."""
        proc = self._spawn("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", database or self.name],
                           stdin=True)
        try:
            proc.write(sql.encode())
        except (BrokenPipeError, ConnectionResetError):
            pass  # psql exited early: its exit code and stderr say why
        proc.close_stdin()
        return proc

    def ping(self) -> str:
        """The server's version string, or DatabaseError saying why it cannot be reached."""
        return self.psql("SELECT current_setting('server_version');")

    def server_facts(self) -> ServerFacts:
        """What a restore's pre-flight asks the server, in one round trip (each psql is a
        process and a login: about 40 ms here, more through docker exec). Asked on the
        `postgres` database: the one restored may not exist yet."""
        out = self.psql(
            "SELECT json_build_object('version_num', current_setting('server_version_num')::int, "
            "'extensions', (SELECT coalesce(json_agg(name), '[]') FROM pg_available_extensions), "
            "'databases', (SELECT coalesce(json_agg(datname ORDER BY datname), '[]') FROM pg_database "
            "WHERE NOT datistemplate), "
            f"'size', (SELECT pg_database_size(datname) FROM pg_database WHERE datname = {quote_literal(self.name)}), "
            f"'oid', (SELECT oid::bigint FROM pg_database WHERE datname = {quote_literal(self.name)}), "
            # pg_settings leaves out what this role may not read (no error, unlike current_setting)
            "'data_directory', (SELECT setting FROM pg_settings WHERE name = 'data_directory'));",
            database="postgres")
        try:
            found = json.loads(out)
            return ServerFacts(major=int(found["version_num"]) // 10000, extensions=frozenset(found["extensions"]),
                               databases=tuple(found["databases"]), size=found["size"],
                               data_directory=found["data_directory"] or None, oid=found["oid"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DatabaseError(f"the server on {self.describe()} gave an answer pre-flight cannot read: {exc}") from exc

    def dump(self, database: str | None = None) -> ToolProcess:
        """pg_dump in plain SQL format; read() the stream, then wait() and check the code."""
        return self._spawn("pg_dump", ["--no-password", database or self.name])

    def restore(self, database: str, *, single_transaction: bool = True) -> ToolProcess:
        """psql reading plain SQL on stdin: one transaction (unless told not to: sessions
        building indexes of one table side by side must not hold their locks to the end),
        stop at the first error. `-f -` makes psql name the line of its input in its errors
        ("psql:<stdin>:1234: ERROR: ..."); the rows of the dump's SELECTs (pg_dump's
        set_config calls) go to /dev/null, not the log."""
        once = ["--single-transaction"] if single_transaction else []
        proc = self._spawn("psql", ["-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", *once,
                                    "-o", "/dev/null", "-f", "-", "-d", database], stdin=True)
        proc.drain_stdout()
        return proc

    def tool_version(self, tool: str = "pg_dump") -> str:
        proc = self._spawn(tool, ["--version"])
        out = b"".join(iter(proc.read, b""))
        proc.wait()
        return out.decode().strip()

    def table_rows(self, database: str | None = None) -> dict[str, int]:
        """Exact rows per table in the public schema: count(*) of each, in one query (one
        round trip, which in docker mode is one exec, whatever the number of tables): the
        server writes the UNION of counts and psql's \\gexec runs it."""
        out = self.psql(
            "SELECT string_agg(format('SELECT %L, count(*) FROM public.%I', tablename, tablename), "
            "' UNION ALL ' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public' \\gexec\n",
            database=database)
        rows = {}
        for line in out.splitlines():
            name, _, count = line.rpartition("|")
            rows[name] = int(count)
        return rows

    def applied_migrations(self, database: str | None = None) -> list[str]:
        """Names of Prisma migrations finished and not rolled back, oldest first; one round trip
        (\\gexec: the server writes the query only when the table exists)."""
        out = self.psql(
            "SELECT CASE WHEN to_regclass('public._prisma_migrations') IS NULL THEN 'SELECT NULL WHERE false' ELSE "
            "'SELECT migration_name FROM public._prisma_migrations WHERE finished_at IS NOT NULL AND "
            "rolled_back_at IS NULL ORDER BY finished_at, migration_name' END \\gexec\n",
            database=database,
        )
        return [line for line in out.splitlines() if line]

    def database_size(self, database: str | None = None) -> int:
        return int(self.psql(f"SELECT pg_database_size({quote_literal(database or self.name)});"))

    def databases(self) -> list[str]:
        return self.psql("SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1;",
                         database="postgres").split()  # asked of postgres: this one may be gone

    def database_oid(self, database: str) -> int | None:
        """Which database goes by `database` now (None: none does); a rename keeps it."""
        out = self.psql(f"SELECT oid FROM pg_database WHERE datname = {quote_literal(database)};", database="postgres")
        return int(out) if out.strip() else None

    def terminate_sessions(self, database: str) -> None:
        self.psql(_terminate_sql(database), database="postgres")

    def drop_database(self, database: str) -> None:
        """End its sessions and drop it, in one round trip."""
        self.psql(_terminate_sql(database) + f"\nDROP DATABASE IF EXISTS {quote_ident(database)};", database="postgres")

    def create_database(self, database: str, owner: str | None = None) -> None:
        owner_sql = f" OWNER {quote_ident(owner)}" if owner else ""
        self.psql(f"CREATE DATABASE {quote_ident(database)}{owner_sql};", database="postgres")

    def create_like_script(self, database: str, like: str) -> str:
        """psql lines creating `database` with `like`'s owner, encoding and locale (from
        template0 when template1's differ), read on the server as they run (\\gset), so a
        round trip that renames `like` first can create `database` too."""
        return ("SELECT pg_get_userbyid(d.datdba) AS owner, pg_encoding_to_char(d.encoding) AS encoding, "
                "d.datcollate AS collate, d.datctype AS ctype, (d.encoding, d.datcollate, d.datctype) IS DISTINCT "
                "FROM (t.encoding, t.datcollate, t.datctype) AS own_locale FROM pg_database d, pg_database t "
                f"WHERE d.datname = {quote_literal(like)} AND t.datname = 'template1' \\gset fovea_like_\n"
                "\\if :fovea_like_own_locale\n"
                f"CREATE DATABASE {quote_ident(database)} OWNER :\"fovea_like_owner\" TEMPLATE template0 "
                "ENCODING :'fovea_like_encoding' LC_COLLATE :'fovea_like_collate' LC_CTYPE :'fovea_like_ctype';\n"
                "\\else\n"
                f"CREATE DATABASE {quote_ident(database)} OWNER :\"fovea_like_owner\";\n"
                "\\endif\n")

    def rename_database(self, old: str, new: str, *, then: str = "", attempts: int = 50,
                        oid: int | None = None, incoming: tuple[str, int] | None = None) -> tuple[str, bool]:
        """End the sessions on `old` and rename it to `new`, in one round trip: a client that
        reconnects between the two is ended again (up to `attempts` tries, 0.1 s apart); `then`
        is SQL run after the rename, still in the same round trip (the new database's CREATE).
        With `oid`, only that database is renamed: one that took the name since is refused.
        With `incoming` (name, OID: a database created ahead), that database takes `old`'s name
        in the same transaction instead, `then` skipped; decided on the server, in the same round
        trip: without it there (dropped since), the rename and `then` run as without `incoming`.
        "moved_in" when `incoming` took the name, else "then"; and whether a database goes by
        `old` once all that is done (asked at the end of the same round trip)."""
        named = f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(old)});\n"
        if incoming is None:
            out = self.psql(_rename_sql(old, new, attempts, oid) + then + named, database="postgres")
            return "then", out.strip() == "t"
        out = self.psql(
            f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(incoming[0])} "
            f"AND oid = {int(incoming[1])}) AS ready \\gset fovea_incoming_\n\\if :fovea_incoming_ready\n"
            + _rename_sql(old, new, attempts, oid, incoming) + "SELECT 'moved_in';\n\\else\n"
            + _rename_sql(old, new, attempts, oid) + then + "SELECT 'then';\n\\endif\n" + named, database="postgres")
        lines = out.splitlines()
        return (lines[-2].strip() if len(lines) >= 2 else ""), bool(lines) and lines[-1].strip() == "t"

    def create_like(self, database: str, like: str) -> int:
        """Create `database` as `create_like_script` does; its OID, in the same round trip.
        Without a database `like` there is nothing to create it like: refused, nothing made."""
        out = self.psql(f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(like)}) "
                        "AS there \\gset fovea_like_\n\\if :fovea_like_there\n" + self.create_like_script(database, like)
                        + f"SELECT oid FROM pg_database WHERE datname = {quote_literal(database)};\n\\endif\n",
                        database="postgres")
        if not out.strip():
            raise OperationFailed(f"database {like} does not exist: no owner, encoding and locale to create {database} with")
        return int(out.splitlines()[-1])

    def is_empty(self, database: str) -> bool:
        """No table, view, sequence or other relation outside the system schemas: dropping it
        loses nothing."""
        return self.psql("SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                         "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') "
                         "AND n.nspname NOT LIKE 'pg\\_toast%');", database=database).strip() == "t"

    def drop_database_if(self, database: str, oid: int) -> bool:
        """Drop `database` only while it is the database `oid` (one that took its name is
        kept); False when there was none such to drop."""
        out = self.psql(
            f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(database)} AND oid = {int(oid)}) "
            "AS ours \\gset fovea_drop_\n\\if :fovea_drop_ours\n" + _terminate_sql(database)
            + f"\nDROP DATABASE IF EXISTS {quote_ident(database)};\nSELECT 'dropped';\n\\endif\n",
            database="postgres")
        return out.strip().endswith("dropped")

    def put_back(self, aside: str, name: str, attempts: int = 50, oid: int | None = None) -> str:
        """A rename-aside rolled back in one round trip, decided on the server from what exists:
        with `aside` there (and, given `oid`, that database: one that only has its name is not
        the copy), `name` (the restored database) is dropped and `aside` renamed to `name`:
        "renamed"; else nothing is touched: "untouched" when `name` is there (it was never
        renamed, or was put back), "neither" when both are gone."""
        ours = "" if oid is None else f" AND oid = {int(oid)}"
        out = self.psql(
            f"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(aside)}{ours}) AS aside, "
            f"EXISTS (SELECT 1 FROM pg_database WHERE datname = {quote_literal(name)}) AS name \\gset fovea_has_\n"
            "\\if :fovea_has_aside\n"
            + _terminate_sql(name) + f"\nDROP DATABASE IF EXISTS {quote_ident(name)};\n"
            + _rename_sql(aside, name, attempts, oid) + "SELECT 'renamed';\n"
            "\\elif :fovea_has_name\nSELECT 'untouched';\n\\else\nSELECT 'neither';\n\\endif\n",
            database="postgres")
        return out.splitlines()[-1].strip() if out else ""

    def on(self, database: str) -> Database:
        """This server, another database: what pg_dump and psql of the copy connect to."""
        clone = copy.copy(self)
        clone.name = database
        return clone


def _rename_sql(old: str, new: str, attempts: int, oid: int | None = None,
                incoming: tuple[str, int] | None = None) -> str:
    """A DO block renaming `old` to `new` (only the database `oid`, when given), ending its
    sessions before each try; with `incoming` (a name and its OID: a database created ahead),
    that database then takes the name `old`, in the same transaction: both renames, or neither."""
    def same(name: str, expected: int | None, said: str, what: str) -> str:  # checked before and after, in the transaction
        return "" if expected is None else f"""
      IF (SELECT oid FROM pg_database WHERE datname = {quote_literal(name)}) IS DISTINCT FROM {int(expected)} THEN
        RAISE EXCEPTION 'database % is not the one {what}: it was dropped or replaced since', {quote_literal(said)};
      END IF;"""
    checked, created = "pre-flight checked", "created ahead for this restore"
    ending = f"datname = {quote_literal(old)}"
    move_in = ""
    if incoming is not None:
        ending = f"datname IN ({quote_literal(old)}, {quote_literal(incoming[0])})"
        move_in = (f"\n      EXECUTE {quote_literal(f'ALTER DATABASE {quote_ident(incoming[0])} RENAME TO {quote_ident(old)}')};"
                   + same(old, incoming[1], incoming[0], created))
    body = f"""
DECLARE tries int := 0;
BEGIN{same(old, oid, old, checked)}{same(incoming[0], incoming[1], incoming[0], created) if incoming else ""}
  LOOP
    PERFORM pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE {ending} AND pid <> pg_backend_pid();
    BEGIN
      EXECUTE {quote_literal(f"ALTER DATABASE {quote_ident(old)} RENAME TO {quote_ident(new)}")};{same(new, oid, old, checked)}{move_in}
      RETURN;
    EXCEPTION WHEN object_in_use THEN
      tries := tries + 1;
      IF tries >= {int(attempts)} THEN RAISE; END IF;
      PERFORM pg_sleep(0.1);
    END;
  END LOOP;
END """
    tag = "$fovea$"
    while tag in body:  # a database named with the tag in it must not end the body early
        tag = tag[:-1] + "_$"
    return f"DO {tag}{body}{tag};\n"


def _terminate_sql(database: str) -> str:
    return ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = {quote_literal(database)} AND pid <> pg_backend_pid();")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DockerDatabase(Database):
    """Client tools exec'd inside the compose postgres service."""

    mode = "docker"

    def __init__(self, stack: Stack, service: str, name: str, user: str) -> None:
        self.stack = stack
        self.service = service
        self.name = name
        self.user = user
        self._container_id: str | None = None

    def describe(self) -> str:
        return f"service {self.service} of compose project {self.stack.project}"

    def _spawn(self, tool: str, args: Sequence[str], *, stdin: bool = False) -> ToolProcess:
        """An exec in the database container. Its id is looked up (a listing of the project's
        containers, six API calls) once, then reused: a restore runs dozens of psql calls, and
        on a busy engine the lookups cost more than the queries. When the container was
        recreated or stopped since, the exec fails and the lookup says why."""
        from docker.errors import APIError  # the docker SDK is loaded: this database came from a Stack

        argv = [tool] if "--version" in args else [tool, "-U", self.user]
        if self._container_id is not None:
            try:
                return DockerExecProcess(self.stack.client.api, self._container_id, argv + list(args), stdin=stdin)
            except APIError:
                self._container_id = None
        proc = self.stack.exec_stream(self.service, argv + list(args), stdin=stdin)
        self._container_id = proc.container_id
        return proc


class DirectDatabase(Database):
    """Client tools on this host; connection details in libpq environment variables."""

    mode = "direct"

    def __init__(self, url: DatabaseURL, bin_dir: Path | None = None) -> None:
        self.url = url
        self.name = url.database
        self.user = url.user
        self._bin_dir = bin_dir

    @cached_property
    def bin_dir(self) -> Path:
        return self._bin_dir or find_client_bin(url=self.url)

    def describe(self) -> str:
        return str(self.url)

    def _spawn(self, tool: str, args: Sequence[str], *, stdin: bool = False) -> ToolProcess:
        binary = self.bin_dir / tool
        env = {"PGCONNECT_TIMEOUT": "10", "PGAPPNAME": "fovea-tui", **self.url.client_env()}
        return LocalProcess([str(binary), *args], env, stdin=stdin)


def open_database(settings: Settings, env: EnvFile | None = None, stack: Stack | None = None) -> Database:
    """The Database for these settings (docker exec or direct), or a ConfigError saying why not."""
    db = settings.database
    if db.mode == "docker":
        stack = stack or Stack.connect(settings.install.compose_project)
        return DockerDatabase(stack, db.service, db.name, db.user)
    if db.url:
        url = DatabaseURL.parse(db.url, source="database.url")
    else:
        env = env or EnvFile.load(settings.install.env_file)
        env_url = env.database_url()
        if env_url is None:
            raise ConfigError(
                "direct mode needs a database URL: database.url is empty and the env file has no DATABASE_URL",
                key="database.url",
            )
        url = env_url
        if url.host in ("postgres", settings.database.service):
            raise ConfigError(
                f"DATABASE_URL in the env file points at host {url.host!r}, which resolves only inside the compose network",
                key="database.url",
                hint="set database.url to an address this host can reach, or use database.mode = \"docker\"",
            )
    return DirectDatabase(url)
