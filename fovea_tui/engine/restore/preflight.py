"""Pre-flight: everything a restore needs, checked before anything is touched.

Each check is a `Check(name, ok, detail)`. A failed check with `fatal` stops the restore
with nothing changed; `refuse` marks guards (a corrupt dump, a target that cannot take the
dump, too little disk) whose failure is a refusal (exit 3) rather than a failure (exit 1).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from isal import igzip

from fovea_tui import formatting
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups import readahead
from fovea_tui.engine.backups.dumpscan import scan_dump, unquote_ident, verify_and_scan
from fovea_tui.engine.backups.verify import DumpRead
from fovea_tui.engine.backups.verify_cache import remember
from fovea_tui.engine.infra.database import DatabaseError, ServerFacts
from fovea_tui.engine.infra.files import identity
from fovea_tui.engine.infra.stack import redis_queue_counts
from fovea_tui.engine.progress import ProgressEvent
from fovea_tui.errors import FoveaError
from fovea_tui.formatting import plural

MIGRATIONS_DIR = "/app/prisma/migrations"  # where the backend image bundles Prisma's migrations
HEAD_BYTES = 4 << 20                          # of decompressed SQL read for extensions and versions
REDIS_SERVICE = "redis"
MARGIN = 64 << 20                             # bytes of slack on top of every disk estimate

_EXTENSION = re.compile(r'^CREATE EXTENSION (?:IF NOT EXISTS )?"?([A-Za-z0-9_\-]+)"?', re.M)
_DUMPED_FROM = re.compile(r"^-- Dumped from database version (\d+)(?:\.(\d+))?", re.M)
_TABLE_REF = re.compile(
    r'\b(?:TABLE|INTO|UPDATE|FROM|ON|REFERENCES)\s+(?:ONLY\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?'
    r'(?:"?public"?\.)?"([A-Za-z_][A-Za-z0-9_]*)"', re.I)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fatal: bool = True
    refuse: bool = False
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DumpHead:
    extensions: list[str]
    server_major: int | None


def read_dump_head(path: Path, limit: int = HEAD_BYTES) -> DumpHead:
    """Extensions (`CREATE EXTENSION` lines) and the source server's major version from the
    first `limit` bytes of SQL. pg_dump writes both before any table."""
    try:
        with igzip.open(path, "rb") as fh:
            head = fh.read(limit)
    except (OSError, EOFError, ValueError):
        head = b""
    text = head.decode("utf-8", "replace")
    exts = sorted(set(_EXTENSION.findall(text)) - {"plpgsql"})
    m = _DUMPED_FROM.search(text)
    return DumpHead(exts, int(m.group(1)) if m else None)


def tables_touched(sql: str) -> list[str]:
    """Tables a migration's SQL names (CREATE/ALTER TABLE, INSERT INTO, UPDATE, ...)."""
    return sorted(set(_TABLE_REF.findall(sql)))


_IDENT = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf'(?:{_IDENT}\s*\.\s*)?({_IDENT})'
_DROP_TABLE = re.compile(r'^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?(.+?)(?:\s+(?:CASCADE|RESTRICT))?$', re.I | re.S)
_ALTER_TABLE = re.compile(rf'^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_QUALIFIED}\s+(.*)$', re.I | re.S)
_DROP_COLUMN = re.compile(rf'^DROP\s+(?:COLUMN\s+)?(?:IF\s+EXISTS\s+)?({_IDENT})(?:\s+(?:CASCADE|RESTRICT))?$', re.I | re.S)
_ALTER_TYPE = re.compile(rf'^ALTER\s+(?:COLUMN\s+)?({_IDENT})\s+(?:SET\s+DATA\s+)?TYPE\s+(.+?)(?:\s+USING\s+.*)?$',
                         re.I | re.S)
_SET_NOT_NULL = re.compile(rf'^ALTER\s+(?:COLUMN\s+)?({_IDENT})\s+SET\s+NOT\s+NULL$', re.I | re.S)


@dataclass
class Discard:
    """A statement of a pending migration that drops or rewrites data."""

    kind: str            # drop_table | drop_column | alter_type | set_not_null
    table: str
    column: str = ""
    detail: str = ""     # the new type, for alter_type
    nulls: int | None = None  # set_not_null: NULLs in the dump's column (None: not counted)

    def describe(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        if self.kind == "drop_table":
            return f"DROP TABLE {where}"
        if self.kind == "drop_column":
            return f"DROP COLUMN {where}"
        if self.kind == "alter_type":
            return f"ALTER COLUMN {where} TYPE {self.detail}"
        counted = f" ({self.nulls} NULLs in the dump)" if self.nulls is not None else ""
        return f"SET NOT NULL on {where}{counted}"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "statement": self.describe()}


def _statements(sql: str) -> list[str]:
    """SQL split on semicolons outside quotes, comments removed, whitespace collapsed."""
    out: list[str] = []
    cur: list[str] = []
    i, n = 0, len(sql)
    quote = ""
    while i < n:
        ch = sql[i]
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
            cur.append(ch)
        elif sql.startswith("--", i):
            while i < n and sql[i] != "\n":
                i += 1
            continue
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        elif ch == ";":
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    out.append("".join(cur))
    return [" ".join(s.split()) for s in out if s.strip()]


def _actions(text: str) -> list[str]:
    """ALTER TABLE's comma-separated actions (commas inside parentheses or quotes kept)."""
    out: list[str] = []
    cur: list[str] = []
    depth, quote = 0, ""
    for ch in text:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return [a for a in out if a]


def destructive_statements(sql: str) -> list[Discard]:
    """What a migration drops or rewrites: DROP TABLE, DROP COLUMN, ALTER COLUMN ... TYPE and
    SET NOT NULL, with quoted and unquoted identifiers alike (names as PostgreSQL stores them)."""
    found: list[Discard] = []
    for stmt in _statements(sql):
        m = _DROP_TABLE.match(stmt)
        if m:
            for name in _actions(m.group(1)):
                found.append(Discard("drop_table", unquote_ident(re.split(r"\s*\.\s*", name)[-1])))
            continue
        m = _ALTER_TABLE.match(stmt)
        if not m:
            continue
        table = unquote_ident(m.group(1))
        for action in _actions(m.group(2)):
            if (a := _DROP_COLUMN.match(action)) and not re.match(r"^DROP\s+CONSTRAINT\b", action, re.I):
                found.append(Discard("drop_column", table, unquote_ident(a.group(1))))
            elif a := _ALTER_TYPE.match(action):
                found.append(Discard("alter_type", table, unquote_ident(a.group(1)), " ".join(a.group(2).split())))
            elif a := _SET_NOT_NULL.match(action):
                found.append(Discard("set_not_null", table, unquote_ident(a.group(1))))
    return found


def _count_nulls(ctx, discards: dict[str, list[Discard]]) -> None:
    """Fill in, from the dump, how many NULLs each SET NOT NULL column holds; drop the SET NOT
    NULLs on columns without NULLs (they discard nothing)."""
    wanted = {(d.table, d.column) for found in discards.values() for d in found if d.kind == "set_not_null"}
    if not wanted:
        return
    scan = dump_scan(ctx, wanted)
    for name in list(discards):
        kept = []
        for d in discards[name]:
            if d.kind == "set_not_null":
                d.nulls = scan.nulls.get((d.table, d.column), 0)
                if not d.nulls:
                    continue
            kept.append(d)
        if kept:
            discards[name] = kept
        else:
            del discards[name]


def dump_scan(ctx, null_columns: set[tuple[str, str]] | None = None):
    """The dump's videos and NULL counts, kept on the context: check_dump's read of the dump
    found the videos; NULL counts (only when a pending migration sets NOT NULL) read it again."""
    cached = getattr(ctx, "_dump_scan", None)
    if cached is not None and set(null_columns or ()) <= set(cached.nulls):
        return cached
    scan = scan_dump(ctx.dump_path, null_columns, ctx.cancel)
    ctx._dump_scan = scan
    return scan


def bundled_migration_sql(ctx) -> dict[str, str]:
    """Migrations bundled in the backend image: {name: its migration.sql}.

    Read inside the running backend (exec), else in a one-off container of its image.
    """
    service = ctx.settings.stack.backend_service
    script = (f'for d in {MIGRATIONS_DIR}/*/; do [ -f "$d/migration.sql" ] || continue; '
              f'echo "@@fovea-migration@@ $(basename "$d")"; cat "$d/migration.sql"; echo; done')
    svc = ctx.stack.service(service)
    if svc.running:
        code, out, err = ctx.stack.exec(service, ["sh", "-c", script])
        if code != 0:
            raise FoveaError(f"listing {MIGRATIONS_DIR} in service {service} failed: {(err or out).strip()[:200]}")
    else:
        code, out = ctx.stack.run_one_off(service, ["sh", "-c", script], cancel=ctx.cancel, timeout=120)
        if code != 0:
            raise FoveaError(f"listing {MIGRATIONS_DIR} in a one-off {service} container failed: {out.strip()[:200]}")
    found: dict[str, str] = {}
    name: str | None = None
    body: list[str] = []
    for line in out.splitlines() + ["@@fovea-migration@@ "]:
        if line.startswith("@@fovea-migration@@ "):
            if name:
                found[name] = "\n".join(body)
            name, body = line.split(" ", 1)[1].strip() or None, []
        else:
            body.append(line)
    return found


def _free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_dump(ctx) -> Check:
    """The dump whole and its manifest's, from the read begun ahead by the CLI (readahead) when
    there is one for this very file, else from a read of it here."""
    path = ctx.dump_path
    try:
        before = identity(path)
        ahead = readahead.take(path, cancel=ctx.cancel, on_progress=lambda done: ctx.progress(done, before[2]))
        check = _judge_dump(ctx, path, ahead)
        changed = identity(path) != before
    except FileNotFoundError:
        return Check("dump", False, f"{path.name} is gone: it was removed while pre-flight read it", refuse=True)
    check.data["read_ahead"] = ahead is not None
    if changed:
        return Check("dump", False, f"{path.name} changed while pre-flight read it (written or replaced): what "
                     "was checked is not what is there now; restore it once nothing writes to it", refuse=True)
    ctx.facts["dump_identity"] = list(before)  # the restore step loads this very file, or stops
    return check


def _judge_dump(ctx, path: Path, ahead: DumpRead | None) -> Check:
    manifest = None
    if ctx.facts.get("manifest"):
        manifest = mf.Manifest.from_dict(ctx.facts["manifest"], source=f"manifest {path.name}")

    def progress(event: ProgressEvent) -> None:
        ctx.progress(event.done, event.total)  # bytes of the file read: the CLI's bar, the TUI's

    result, ctx._dump_scan = verify_and_scan(path, manifest, cancel=ctx.cancel, progress=progress, read=ahead)
    try:
        remember(ctx.settings, path, result)
    except (OSError, ValueError, FoveaError):
        pass
    ctx.facts["dump_verify"] = {"status": result.status, "sha256": result.sha256, "size": result.size,
                                "uncompressed_size": result.uncompressed_size, "tables": result.tables}
    if result.status == "mismatch":
        what = f"{path.name} is a whole dump, but not the one its manifest describes: " + "; ".join(result.reasons)
        if not ctx.params.get("accept_mismatch"):
            return Check("dump", False, what + " (restore it anyway only with --accept-mismatch: its own rows "
                         "are what step 7 compares)", refuse=True)
        return Check("dump", True, what + "; accepted by the operator (--accept-mismatch)")
    if not result.ok:
        return Check("dump", False, f"{path.name} is corrupt: " + "; ".join(result.reasons), refuse=True)
    how = "checksum equal to its manifest" if result.has_manifest else "no manifest: complete, not checksummed"
    detail = f"{path.name}: whole gzip stream, pg_dump's completion line, {how}"
    if result.warnings:
        detail += " (" + "; ".join(result.warnings) + ")"
    return Check("dump", True, detail)


def check_disk(ctx) -> Check:
    try:
        current = _server(ctx).size or 0
    except FoveaError:
        current = 0
    # The safety dump is compressed SQL, well under the live database's size on disk.
    need_backups = current // 2 + MARGIN
    free_backups = _free_bytes(ctx.settings.backups_dir)
    problems, parts = [], [f"backups dir: {formatting.size(free_backups)} free, safety dump needs about {formatting.size(need_backups)}"]
    if free_backups < need_backups:
        problems.append(f"{ctx.settings.backups_dir} has {formatting.size(free_backups)} free; the safety dump needs about "
                        f"{formatting.size(need_backups)}")
    # The restored database: its SQL (plus indexes) lands in the server's data directory, where
    # the current database's space is freed at the latest (dumped first, then dropped).
    need_db = restored_size(ctx)
    free_db, where = _asked(ctx, "free", lambda: server_free_bytes(ctx))
    if free_db is not None:
        parts.append(f"database server: {formatting.size(free_db)} free, the restore needs about {formatting.size(need_db)}")
        if free_db + current < need_db:
            problems.append(f"the database server's disk has {formatting.size(free_db)} free ({formatting.size(free_db + current)} "
                            f"with the current database dropped); the restore needs about {formatting.size(need_db)}")
    else:
        parts.append(f"database server's disk: {where}")
    if problems:
        return Check("disk", False, "; ".join(problems), refuse=True)
    return Check("disk", True, "; ".join(parts))


def restored_size(ctx) -> int:
    """About what the restored database takes on the server: its SQL plus indexes."""
    uncompressed = int(ctx.facts.get("dump_verify", {}).get("uncompressed_size") or 0)
    return int(uncompressed * 1.5) + MARGIN


_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "")


def server_free_bytes(ctx) -> tuple[int | None, str]:
    """Free bytes where the server keeps its data, and where that was read; (None, why) when it
    cannot be known from here (a remote server, a role that may not read `data_directory`)."""
    if ctx.settings.database.mode == "docker":
        if ctx.stack is None:
            return None, "free space unknown (no Docker)"
        try:
            code, out, _ = ctx.stack.exec(ctx.db_service, ["sh", "-c", 'df -Pk "${PGDATA:-/var/lib/postgresql/data}" | tail -1'])
            return int(out.split()[3]) * 1024, f"the data directory in service {ctx.db_service}"
        except (FoveaError, ValueError, IndexError):
            return None, f"free space unknown (df in service {ctx.db_service} did not answer)"
    url = getattr(ctx.db, "url", None)
    host = getattr(url, "host", "") or ""
    if not (host in _LOCAL_HOSTS or host.startswith("/")):
        return None, f"free space unknown: the server runs on {host}, not this host"
    try:
        data_dir = _server(ctx).data_directory
    except FoveaError:
        return None, "free space unknown: the server did not answer"
    if not data_dir:
        return None, "free space unknown: this role may not read the server's data_directory"
    try:
        return shutil.disk_usage(data_dir).free, f"the server's data directory {data_dir}"
    except OSError as exc:
        return None, f"free space unknown: {data_dir} is not readable from here ({exc.strerror or exc})"


def check_room(ctx) -> Check:
    """Room on the server for the current database and the restored one side by side. Then the
    current one is renamed aside (a way back in seconds) rather than dumped before the restore;
    without room, the safety dump comes first as before. Where the room cannot be known, the
    rename goes ahead: a restore that runs out of room fails and is rolled back by renaming
    the current database back, which needs no room."""
    db, server = ctx.db, _server(ctx)
    if db.name not in server.databases or server.size is None:
        return Check("room", True, f"no database {db.name} yet: nothing to keep aside", fatal=False,
                     data={"rename": False, "exists": db.name in server.databases})
    current = server.size
    need = restored_size(ctx)
    free, where = _asked(ctx, "free", lambda: server_free_bytes(ctx))
    data = {"rename": True, "current": current, "need": need, "free": free, "oid": server.oid}
    if free is None:
        return Check("room", True, f"{where}; database {db.name} ({formatting.size(current)}) is renamed aside "
                     "and kept until its safety dump is written after the restore", fatal=False, data=data)
    if free < need:
        data["rename"] = False
        return Check("room", False, f"{formatting.size(free)} free in {where}: no room for the restored database "
                     f"(about {formatting.size(need)}) beside the current {db.name} ({formatting.size(current)}); "
                     "the current database is dumped before the restore instead (slower)", fatal=False, data=data)
    return Check("room", True, f"{formatting.size(free)} free in {where}: room for the restored database (about "
                 f"{formatting.size(need)}) beside the current {db.name} ({formatting.size(current)}), which is renamed "
                 "aside and kept until its safety dump is written after the restore", fatal=False, data=data)


def check_engine(ctx) -> Check:
    s = ctx.settings
    if s.database.mode == "docker":
        services = {svc.name: svc for svc in ctx.stack.require()}
        if ctx.db_service not in services:
            return Check("engine", False, f"compose project {s.install.compose_project!r} has no service "
                         f"{ctx.db_service!r} (database.service)")
        names = ", ".join(f"{n} ({'running' if v.running else v.state})" for n, v in services.items())
        detail = f"Docker engine answers; project {s.install.compose_project}: {names}"
    else:
        tools = ctx.db.bin_dir  # raises ConfigError when there are no client tools
        detail = f"client tools in {tools}; "
        if ctx.stack is None:
            detail += "no compose stack managed (services are not stopped, migrations not run)"
        else:
            detail += f"compose project {s.install.compose_project}: " + ", ".join(x.name for x in ctx.stack.services())
    if ctx.stack is not None and not ctx.params.get("skip_migrate"):
        service_names = [x.name for x in ctx.stack.services()]
        if s.stack.backend_service not in service_names:
            return Check("engine", False, f"no service {s.stack.backend_service!r} (stack.backend_service) to run "
                         "the migrations in", data={"services": service_names})
    return Check("engine", True, detail, data={"stack": ctx.stack is not None})


def check_server(ctx) -> Check:
    head = _asked(ctx, "head", lambda: read_dump_head(ctx.dump_path))
    manifest = ctx.facts.get("manifest") or {}
    source_major = head.server_major
    if source_major is None and manifest.get("server_version"):
        m = re.match(r"(\d+)", str(manifest["server_version"]))
        source_major = int(m.group(1)) if m else None
    try:
        server = _server(ctx)
    except DatabaseError as exc:
        return Check("server", False, f"cannot reach the target server: {exc}")
    major, available = server.major, server.extensions
    ctx.facts["dump_extensions"] = head.extensions
    missing = [e for e in head.extensions if e not in available]
    problems = []
    if source_major and major < source_major:
        problems.append(f"the dump comes from PostgreSQL {source_major}, the target runs {major}: "
                        "a plain dump does not restore into an older server")
    if missing:
        problems.append(f"the dump needs {'extension' if len(missing) == 1 else 'extensions'} {', '.join(missing)} that the target server lacks "
                        "(install pgvector, e.g. the pgvector/pgvector:pg16 image)")
    if problems:
        return Check("server", False, "; ".join(problems), refuse=True)
    exts = ", ".join(head.extensions) or "none"
    src = f"from PostgreSQL {source_major}" if source_major else "source version unknown"
    return Check("server", True, f"target PostgreSQL {major} ({src}); extensions the dump needs: {exts}, all available")


def check_queues(ctx) -> Check:
    if ctx.stack is None:
        return Check("queues", True, "no compose stack managed: Redis not checked", fatal=False)
    try:
        counts = _asked(ctx, "queues", lambda: _queue_counts(ctx))
    except FoveaError as exc:
        return Check("queues", False, f"cannot read the queues: {exc}", fatal=False)
    if counts is None:
        return Check("queues", True, "Redis is not running: no jobs to interrupt", fatal=False)
    active = sum(c.get("active", 0) for c in counts.values())
    waiting = sum(c.get("wait", 0) for c in counts.values())
    ctx.facts["queues"] = counts
    if active or waiting:
        busy = ", ".join(f"{q}: {c['active']} active, {c['wait']} waiting" for q, c in counts.items()
                         if c["active"] or c["wait"])
        detail = f"{plural(active, 'job')} active and {waiting} waiting ({busy}); stopping the stack interrupts them " \
                 "(users retry them from the UI)"
    else:
        detail = "no jobs active or waiting in the BullMQ queues"
    return Check("queues", True, detail, fatal=False, data={"active": active, "waiting": waiting})


def check_migrations(ctx) -> Check:
    if ctx.params.get("skip_migrate"):
        return Check("migrations", True, "--skip-migrate: bundled migrations not applied", fatal=False)
    if ctx.stack is None:
        return Check("migrations", True, "no compose stack managed: migrations are not run", fatal=False)
    try:
        bundled = _asked(ctx, "migrations", lambda: _bundled(ctx)) or {}
    except FoveaError as exc:
        return Check("migrations", False, f"cannot list the backend's migrations: {exc}", fatal=False)
    manifest = ctx.facts.get("manifest") or {}
    in_dump = manifest.get("prisma_migrations")
    if in_dump is None:
        in_dump = []
        note = " (no manifest: the dump's own migrations are unknown, all are listed)"
    else:
        note = ""
    pending = [name for name in sorted(bundled) if name not in set(in_dump)]
    ctx.facts["bundled_migrations"] = sorted(bundled)
    ctx.facts["pending_migrations"] = {name: tables_touched(bundled[name]) for name in pending}
    discards = {name: destructive_statements(bundled[name]) for name in pending}
    discards = {name: found for name, found in discards.items() if found}
    _count_nulls(ctx, discards)
    ctx.facts["migration_discards"] = {name: [d.as_dict() for d in found] for name, found in discards.items()}
    if pending:
        detail = f"{plural(len(pending), 'migration')} bundled in the backend image that the dump lacks will be applied: " \
                 + ", ".join(pending) + note
    else:
        detail = f"the dump has all {plural(len(bundled), 'migration')} bundled in the backend image"
    if discards:
        detail += "; they drop or rewrite data: " + "; ".join(
            f"{name}: " + ", ".join(d.describe() for d in found) for name, found in discards.items())
    return Check("migrations", True, detail, fatal=False,
                 data={"pending": pending, "discards": ctx.facts["migration_discards"]})


def check_videos(ctx) -> Check:
    """How many videos the dump references are missing from the install's storage, and
    whether `volume.target` holds them (the restore pulls those back before the backend)."""
    from fovea_tui.engine.restore.videos import preflight_videos

    scan = dump_scan(ctx)
    if scan.videos is None:
        return Check("videos", True, "the dump holds no videos rows", fatal=False)
    found = preflight_videos(ctx, scan.videos)
    ctx.facts["preflight_videos"] = found
    where, n, missing = found["storage"], found["referenced"], found["missing"]
    if not missing:
        return Check("videos", True, f"all {plural(n, 'video')} the dump references are in {where}", fatal=False, data=found)
    target = ctx.settings.volume.target
    if found.get("error"):
        tail = f"cannot list {target}: {found['error']}"
    elif found["in_target"] is None:
        tail = "volume.target is not set: no copy to pull them from"
    elif found["in_target"] == missing:
        tail = f"{target} holds all of them: the restore pulls them back before the backend starts"
        return Check("videos", True, f"{missing} of {plural(n, 'video')} the dump references are missing from {where}; {tail}",
                     fatal=False, data=found)
    else:
        tail = f"{target} holds {found['in_target']} of them (pulled back before the backend starts)"
    lost = missing - (found["in_target"] or 0)
    return Check("videos", False, f"{missing} of {plural(n, 'video')} the dump references are missing from {where}; {tail}; "
                 f"{lost} are nowhere: the restore will stop before starting the backend, which would delete "
                 "their rows with their annotations, summaries and claims", fatal=False, data=found)


CHECKS = (check_dump, check_disk, check_room, check_engine, check_server, check_queues, check_migrations, check_videos)


def run_preflight(ctx, on_check=None) -> list[Check]:
    """Run every check (a crash in one is that check's failure); `on_check(check)` as each lands.

    The questions for the server, Docker and Redis are asked in threads as pre-flight starts,
    while the dump is read here: each is a process or an exec, and one after another they took
    longer than the read."""
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="preflight")
    try:
        _ask_ahead(ctx, pool)
        return _run_checks(ctx, on_check)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        ctx.__dict__.pop("_preflight_answers", None)  # asked again by the next pre-flight, never stale


def _run_checks(ctx, on_check) -> list[Check]:
    results = []
    for fn in CHECKS:
        ctx.cancel.check()
        name = fn.__name__.removeprefix("check_")
        t0 = time.monotonic()
        try:
            check = fn(ctx)
        except FoveaError as exc:
            check = Check(name, False, str(exc), refuse=getattr(exc, "exit_code", 1) == 3)
        check.data["duration_s"] = round(time.monotonic() - t0, 2)
        results.append(check)
        if on_check is not None:
            on_check(check)
        if name == "dump" and not check.ok:
            break  # nothing else is worth asking about a dump that will not be restored
    return results


def _ask_ahead(ctx, pool: ThreadPoolExecutor) -> None:
    """Start the answers the checks will take (`_asked`). Opening the database and the stack
    (Docker's client: a third of a second) happens in these threads too, once (cached_property
    holds the others back while one opens them)."""
    answers = ctx.__dict__.setdefault("_preflight_answers", {})
    answers["server"] = pool.submit(lambda: ctx.db.server_facts())
    answers["head"] = pool.submit(read_dump_head, ctx.dump_path)  # while the dump check waits for its read
    answers["free"] = pool.submit(server_free_bytes, ctx)
    answers["queues"], answers["migrations"] = Future(), Future()
    pool.submit(_ask_the_stack, ctx, answers)


def _ask_the_stack(ctx, answers: dict[str, Future]) -> None:
    _settle(answers["queues"], lambda: _queue_counts(ctx))
    _settle(answers["migrations"], lambda: _bundled(ctx))


def _queue_counts(ctx) -> dict | None:
    """BullMQ's queues as Redis holds them; None when there is no stack or Redis is not running."""
    if ctx.stack is None:
        return None
    redis = {s.name: s for s in ctx.stack.services()}.get(REDIS_SERVICE)
    if redis is None or not redis.running:
        return None
    port = (ctx.env.get("REDIS_PORT") if ctx.env else "") or ""
    return redis_queue_counts(ctx.stack, REDIS_SERVICE, port=port)


def _bundled(ctx) -> dict[str, str] | None:
    """The backend image's migrations; None when none are run (no stack, --skip-migrate)."""
    if ctx.stack is None or ctx.params.get("skip_migrate"):
        return None
    return bundled_migration_sql(ctx)


def _asked(ctx, name: str, ask: Callable[[], Any]) -> Any:
    """The answer started ahead under `name`, else asked now (a check run on its own)."""
    answers = ctx.__dict__.setdefault("_preflight_answers", {})
    if name not in answers:
        answers[name] = Future()
        _settle(answers[name], ask)
    return answers[name].result()


def _settle(future: Future, ask: Callable[[], Any]) -> None:
    """`future` holds what `ask()` returns, or what it raised (raised again to each check that asks)."""
    try:
        future.set_result(ask())
    except Exception as exc:  # noqa: BLE001 - kept, not swallowed: Future.result() raises it
        future.set_exception(exc)


def _server(ctx) -> ServerFacts:
    return _asked(ctx, "server", ctx.db.server_facts)
