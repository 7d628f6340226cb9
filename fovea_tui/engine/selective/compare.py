"""The comparison of a dump (loaded into a scratch database) with the live database, as data.

PostgreSQL cannot join across two databases without dblink or postgres_fdw, so each side
streams (scope id, row id, md5 of the row) ordered by bytes, and a keyed merge here counts,
per scope and table, the rows only in the dump, only live, and changed: memory grows with
the number of scopes, never with the number of rows. Row detail (`ScopeRows`) is fetched
for one scope at a time, when asked for.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fovea_tui.engine.infra.database import Database, DatabaseError, quote_ident, quote_literal
from fovea_tui.engine.infra.streams import condense
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.selective.scopes import (
    PARTS,
    ROOT,
    Part,
    from_clause,
    hex_of,
    printable,
    row_hash,
    scope_filter,
)
from fovea_tui.formatting import plural


@dataclass
class TableDiff:
    table: str
    noun: str
    dump: int = 0
    live: int = 0
    only_dump: int = 0
    only_live: int = 0
    changed: int = 0

    @property
    def differs(self) -> int:
        return self.only_dump + self.only_live + self.changed

    def as_dict(self) -> dict[str, Any]:
        return {"table": self.table, "dump": self.dump, "live": self.live, "only_dump": self.only_dump,
                "only_live": self.only_live, "changed": self.changed}


@dataclass
class ScopeDiff:
    kind: str          # video or persona
    id: str
    name: str
    in_dump: bool = False
    in_live: bool = False
    tables: dict[str, TableDiff] = field(default_factory=dict)

    @property
    def differs(self) -> int:
        return sum(t.differs for t in self.tables.values())

    def summary(self) -> str:
        """'video-0042.mp4: 312 annotations then, 4 now; summary changed'."""
        parts = []
        if self.in_dump and not self.in_live:
            parts.append(f"{self.kind} row deleted since")
        elif self.in_live and not self.in_dump:
            parts.append(f"{self.kind} not in the dump (new since)")
        for t in self.tables.values():
            if t.table == ROOT[self.kind][0]:
                if t.changed:
                    parts.append(f"{self.kind} row changed")
                continue
            if t.dump != t.live:
                parts.append(f"{plural(t.dump, t.noun)} then, {t.live:,} now")
            if t.changed:
                parts.append(f"{plural(t.changed, t.noun)} changed")
            elif t.dump == t.live and t.differs:
                parts.append(f"{plural(t.only_dump, t.noun)} only then, {t.only_live:,} only now")
        return f"{printable(self.name)}: " + ("; ".join(parts) if parts else "same")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "in_dump": self.in_dump,
                "in_live": self.in_live, "differs": self.differs, "summary": self.summary(),
                "tables": [t.as_dict() for t in self.tables.values()]}


@dataclass
class Comparison:
    dump: str
    database: str
    scopes: list[ScopeDiff]
    warnings: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def differing(self) -> list[ScopeDiff]:
        return [s for s in self.scopes if s.differs or s.in_dump != s.in_live]

    def as_dict(self) -> dict[str, Any]:
        return {"dump": self.dump, "database": self.database, "duration_s": round(self.duration_s, 3),
                "warnings": self.warnings, "differing": len(self.differing),
                "scopes": [s.as_dict() for s in self.scopes]}


def sort_key(scope: ScopeDiff) -> tuple:
    return (-scope.differs, scope.in_dump == scope.in_live, scope.kind, scope.name)


# --------------------------------------------------------------------------- columns


def table_columns(db: Database, database: str) -> dict[str, list[str]]:
    """Columns per table of the public schema, in their order."""
    out = db.psql("SELECT table_name || '|' || column_name FROM information_schema.columns "
                  "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position;", database=database)
    columns: dict[str, list[str]] = {}
    for line in out.splitlines():
        table, _, column = line.partition("|")
        if column:
            columns.setdefault(table, []).append(column)
    return columns


def common_columns(live: dict[str, list[str]], dump: dict[str, list[str]], table: str) -> list[str]:
    """The columns both sides have, in the live order (hashes and writes use only these)."""
    theirs = set(dump.get(table, []))
    return [c for c in live.get(table, []) if c in theirs]


# --------------------------------------------------------------------------- streaming


def _lines(db: Database, sql: str, database: str, cancel: CancelToken) -> Iterator[bytes]:
    """The output lines of `sql`, streamed; a DatabaseError if psql fails."""
    proc = db.query_stream(sql, database=database)
    rest = b""
    try:
        for chunk in iter(proc.read, b""):
            cancel.check()
            rest += chunk
            lines = rest.split(b"\n")
            rest = lines.pop()
            yield from lines
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if rest:
        yield rest
    if proc.wait() != 0:
        raise DatabaseError(f"psql on {db.describe()} failed: {condense(proc.stderr_text)}")


def _hash_query(part: Part, columns: list[str]) -> str:
    return (f"SELECT {hex_of(part.scope_expr)} || chr(9) || {hex_of('t.id')} || chr(9) || {row_hash(columns)} "
            f"FROM {from_clause(part)} ORDER BY {part.scope_expr} COLLATE \"C\", t.id COLLATE \"C\";")


def merge_part(db: Database, part: Part, columns: list[str], dump_db: str, live_db: str,
               cancel: CancelToken) -> Iterator[tuple[bytes, str]]:
    """Yield (scope id hex, what) for every row: what is 'same', 'dump', 'live' or 'changed'.

    A line is `scope-hex TAB id-hex TAB md5`: hex has no tab and tab sorts below every hex
    digit, so comparing the bytes before the md5 orders lines as (scope, id) does."""
    query = _hash_query(part, columns)
    left = _lines(db, query, dump_db, cancel)
    right = _lines(db, query, live_db, cancel)
    a, b = next(left, None), next(right, None)
    while a is not None or b is not None:
        ka = a[:-33] if a is not None else None
        kb = b[:-33] if b is not None else None
        if kb is None or (ka is not None and ka < kb):
            assert a is not None and ka is not None
            yield ka.partition(b"\t")[0], "dump"
            a = next(left, None)
        elif ka is None or kb < ka:
            assert b is not None
            yield kb.partition(b"\t")[0], "live"
            b = next(right, None)
        else:
            assert a is not None and b is not None
            yield ka.partition(b"\t")[0], "same" if a[-32:] == b[-32:] else "changed"
            a, b = next(left, None), next(right, None)


def _unhex(value: str) -> str:
    return bytes.fromhex(value).decode("utf-8")


def scope_names(db: Database, kind: str, database: str) -> dict[str, str]:
    """Scope id -> its name (filename, persona name) in one database."""
    table, column = ROOT[kind]
    out = db.psql(f"SELECT {hex_of('id')} || '|' || {hex_of(quote_ident(column))} FROM {quote_ident(table)};",
                  database=database)
    names = {}
    for line in out.splitlines():
        rid, _, name = line.partition("|")
        names[_unhex(rid)] = _unhex(name)
    return names


def compare(db: Database, dump_db: str, live_db: str, *, dump_name: str, kinds: tuple[str, ...],
            cancel: CancelToken, progress=None) -> Comparison:
    """Count, per scope and table, the rows only in the dump, only live and changed."""
    live_cols, dump_cols = table_columns(db, live_db), table_columns(db, dump_db)
    warnings: list[str] = []
    scopes: dict[tuple[str, str], ScopeDiff] = {}
    for kind in kinds:
        dump_names, live_names = scope_names(db, kind, dump_db), scope_names(db, kind, live_db)
        for sid in set(dump_names) | set(live_names):
            scopes[(kind, sid)] = ScopeDiff(kind, sid, dump_names.get(sid) or live_names[sid],
                                            in_dump=sid in dump_names, in_live=sid in live_names,
                                            tables={p.table: TableDiff(p.table, p.label) for p in PARTS[kind]})
        for part in PARTS[kind]:
            cancel.check()
            if part.table not in live_cols or part.table not in dump_cols:
                warnings.append(f"table {part.table} is missing from the "
                                f"{'dump' if part.table not in dump_cols else 'live database'}: not compared")
                continue
            if progress is not None:
                progress(part.table)
            columns = common_columns(live_cols, dump_cols, part.table)
            ids: dict[bytes, str] = {}
            for scope_hex, what in merge_part(db, part, columns, dump_db, live_db, cancel):
                if scope_hex not in ids:
                    ids[scope_hex] = _unhex(scope_hex.decode("ascii"))
                scope = scopes.get((kind, ids[scope_hex]))
                if scope is None:
                    continue
                t = scope.tables[part.table]
                if what in ("dump", "same", "changed"):
                    t.dump += 1
                if what in ("live", "same", "changed"):
                    t.live += 1
                if what == "dump":
                    t.only_dump += 1
                elif what == "live":
                    t.only_live += 1
                elif what == "changed":
                    t.changed += 1
    result = Comparison(dump_name, live_db, sorted(scopes.values(), key=sort_key), warnings)
    return result


# --------------------------------------------------------------------------- one scope, row by row


@dataclass
class Row:
    id: str
    hash: str
    data: str          # the row as JSON text (to_jsonb), what a write uses

    def summary(self, table: str) -> str:
        """A few fields to recognise the row by on a screen."""
        try:
            obj = json.loads(self.data)
        except ValueError:
            return ""
        keys = {"annotations": ("label", "type", "frameStart", "frameEnd"), "videos": ("filename",),
                "video_summaries": ("personaId",), "claims": ("text",), "personas": ("name", "role"),
                "claim_relations": ("relationType",)}.get(table, ())
        return printable(", ".join(f"{k}={obj.get(k)}" for k in keys if k in obj))[:80]


@dataclass
class TableRows:
    table: str
    dump: dict[str, Row]
    live: dict[str, Row]

    @property
    def only_dump(self) -> list[str]:
        return sorted(set(self.dump) - set(self.live))

    @property
    def only_live(self) -> list[str]:
        return sorted(set(self.live) - set(self.dump))

    @property
    def changed(self) -> list[str]:
        return sorted(i for i in set(self.dump) & set(self.live) if self.dump[i].hash != self.live[i].hash)


@dataclass
class ScopeRows:
    """Every row of one scope on both sides, with the columns the hashes cover."""

    kind: str
    id: str
    name: str
    tables: list[TableRows]
    columns: dict[str, list[str]]

    def diff(self, scope: ScopeDiff) -> ScopeDiff:
        """`scope` with its counts taken from these rows (no merge of the whole database)."""
        noun = {p.table: p.label for p in PARTS[self.kind]}
        scope.tables = {t.table: TableDiff(t.table, noun.get(t.table, t.table), len(t.dump), len(t.live),
                                           len(t.only_dump), len(t.only_live), len(t.changed)) for t in self.tables}
        return scope

    def table(self, name: str) -> TableRows:
        return next(t for t in self.tables if t.table == name)

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "tables": [
            {"table": t.table, "only_dump": [{"id": i, "row": t.dump[i].summary(t.table)} for i in t.only_dump],
             "only_live": [{"id": i, "row": t.live[i].summary(t.table)} for i in t.only_live],
             "changed": [{"id": i, "row": t.live[i].summary(t.table)} for i in t.changed]}
            for t in self.tables]}


def _rows(db: Database, part: Part, columns: list[str], scope_id: str, database: str) -> dict[str, Row]:
    out = db.psql(f"SELECT {hex_of('t.id')} || '|' || {row_hash(columns)} || '|' || to_jsonb(t)::text "
                  f"FROM {from_clause(part)} WHERE {scope_filter(part, scope_id)};", database=database)
    rows = {}
    for line in out.splitlines():
        rid, digest, data = line.split("|", 2)
        rows[_unhex(rid)] = Row(_unhex(rid), digest, data)
    return rows


def scope_rows(db: Database, kind: str, scope_id: str, name: str, dump_db: str, live_db: str) -> ScopeRows:
    """The rows of one scope on both sides (a scope is one video or persona: it fits in memory)."""
    live_cols, dump_cols = table_columns(db, live_db), table_columns(db, dump_db)
    tables, columns = [], {}
    for part in PARTS[kind]:
        if part.table not in live_cols or part.table not in dump_cols:
            continue
        cols = columns[part.table] = common_columns(live_cols, dump_cols, part.table)
        tables.append(TableRows(part.table, _rows(db, part, cols, scope_id, dump_db),
                                _rows(db, part, cols, scope_id, live_db)))
    return ScopeRows(kind, scope_id, name, tables, columns)


def live_ids(db: Database, table: str, ids: set[str], database: str) -> set[str]:
    """Which of `ids` exist in `table` of `database`."""
    if not ids:
        return set()
    listed = ", ".join(quote_literal(i) for i in sorted(ids))
    out = db.psql(f"SELECT {hex_of('id')} FROM {quote_ident(table)} WHERE id IN ({listed});",
                  database=database)
    return {_unhex(line) for line in out.splitlines() if line}
