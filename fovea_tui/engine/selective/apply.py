"""Apply a change set to the live database: undo file first, then one transaction.

1. The live rows it will change or delete (and the ids it will insert) go to an undo file
   under `<backups.dir>/selective-undo/`, 0600, fsynced, named by time and scope id only.
2. One psql transaction: the rows it touches are locked (FOR UPDATE) and hashed; any whose
   hash is not what the comparison saw (edited, deleted or inserted by someone since) is
   listed and the transaction rolled back: the operator is told, nothing changes, the
   undo file is removed. Otherwise deletes (children first), inserts (parents first),
   updates, COMMIT.

No service stops: the backend keeps serving while this runs, and row locks make its writes
to these rows wait for the commit.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.database import Database, DatabaseError, quote_ident, quote_literal
from fovea_tui.engine.infra.files import ensure_private_dir, write_atomic
from fovea_tui.engine.infra.locks import holder
from fovea_tui.engine.selective.changeset import ADD_MISSING, ANY, OR_ABSENT, Change, ChangeSet, inverse
from fovea_tui.engine.selective.scopes import PARTS, from_clause, hex_of, printable, row_hash, scope_filter
from fovea_tui.errors import OperationFailed, SafetyRefusal

UNDO_DIR = "selective-undo"
UNDO_FORMAT = "fovea-tui selective undo 1"
BATCH = 500
MARK = "fovea-selective"


class ConcurrentEdit(SafetyRefusal):
    """Rows changed since the comparison: rolled back, nothing written (exit 3)."""

    def __init__(self, message: str, conflicts: list[dict[str, str]], *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.conflicts = conflicts


@dataclass
class ApplyResult:
    ok: bool
    changeset: ChangeSet
    undo_file: Path | None
    inserted: dict[str, int] = field(default_factory=dict)
    updated: int = 0
    deleted: int = 0
    skipped: int = 0
    duration_s: float = 0.0

    @property
    def message(self) -> str:
        cs = self.changeset
        done = (f"{sum(self.inserted.values())} rows inserted, {self.updated} updated, {self.deleted} deleted "
                f"in {cs.database}")
        skipped = f"; {self.skipped} not inserted (a live row holds the same unique key)" if self.skipped else ""
        undo = f"; undo with `fovea-tui undo-selective {self.undo_file}`" if self.undo_file else ""
        return f"{cs.kind} {printable(cs.scope_name)} ({cs.mode}): {done}{skipped}{undo}"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "undo_file": str(self.undo_file) if self.undo_file else None,
                "inserted": sum(self.inserted.values()), "updated": self.updated, "deleted": self.deleted,
                "skipped": self.skipped, "duration_s": round(self.duration_s, 3), "message": self.message,
                "changeset": self.changeset.as_dict()}


def undo_dir(settings: Settings) -> Path:
    return settings.backups_dir / UNDO_DIR


def _safe(text: str) -> str:
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_" for ch in text)[:40] or "scope"


def undo_path(settings: Settings, cs: ChangeSet, now: datetime) -> Path:
    """Time, kind and the scope's id (cleaned): never a name, a host or a password."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return undo_dir(settings) / f"undo-{stamp}-{cs.kind}-{_safe(cs.scope_id)}.json"


def write_undo(settings: Settings, cs: ChangeSet, now: datetime) -> Path:
    data = {"format": UNDO_FORMAT, "created_at": now.isoformat(), "changeset": inverse(cs).as_dict(rows=True)}
    path = undo_path(settings, cs, now)
    try:
        ensure_private_dir(path.parent)
        return write_atomic(path, json.dumps(data, ensure_ascii=False))
    except (OSError, OperationFailed) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise OperationFailed(f"cannot write the undo file {path}: {why}; nothing was changed",
                              hint="backups.dir must be writable and have room") from None


def read_undo(path: Path) -> ChangeSet:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        from fovea_tui.errors import UsageError

        raise UsageError(f"no undo file {path}", key="FILE") from None
    except (OSError, ValueError) as exc:
        raise SafetyRefusal(f"{path} is not a readable undo file: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != UNDO_FORMAT:
        raise SafetyRefusal(f"{path} is not a fovea-tui selective undo file")
    try:
        return ChangeSet.from_dict(data["changeset"])
    except (KeyError, TypeError) as exc:
        raise SafetyRefusal(f"{path} is damaged (missing {exc})") from None


# --------------------------------------------------------------------------- the script


def _expect_sql(c: Change) -> str:
    return "NULL" if c.expect is None else quote_literal(c.expect)


def _values(changes: list[Change]) -> str:
    return ",\n".join(f"({quote_literal(c.table)}, {quote_literal(c.id)}, {_expect_sql(c)})" for c in changes)


def _batches(items: list[Change]) -> list[list[Change]]:
    return [items[i:i + BATCH] for i in range(0, len(items), BATCH)]


def _runs(changes: list[Change]) -> list[list[Change]]:
    """Consecutive changes of one table, at most BATCH each, in the order given."""
    runs: list[list[Change]] = []
    for c in changes:
        if runs and runs[-1][0].table == c.table and len(runs[-1]) < BATCH:
            runs[-1].append(c)
        else:
            runs.append([c])
    return runs


def script(cs: ChangeSet) -> str:
    """The whole transaction as psql input (values as literals: nothing of it in argv)."""
    changes = cs.ordered()
    tables = sorted({c.table for c in changes})
    out = ["BEGIN;", "SET LOCAL lock_timeout = '10s';",
           "CREATE TEMP TABLE fovea_expect (tbl text, id text, hash text) ON COMMIT DROP;",
           "CREATE TEMP TABLE fovea_found (tbl text, id text, hash text) ON COMMIT DROP;"]
    for batch in _batches(changes):
        out.append(f"INSERT INTO fovea_expect VALUES\n{_values(batch)};")
    for table in tables:
        out.append(f"INSERT INTO fovea_found SELECT {quote_literal(table)}, t.id, {row_hash(cs.columns[table])} "
                   f"FROM {quote_ident(table)} t WHERE t.id IN (SELECT id FROM fovea_expect WHERE tbl = "
                   f"{quote_literal(table)}) FOR UPDATE;")
    if cs.known:  # replace: rows someone added to the scope since the comparison are named too
        out.append("CREATE TEMP TABLE fovea_known (tbl text, id text) ON COMMIT DROP;")
        known = [(table, rid) for table, ids in sorted(cs.known.items()) for rid in ids]
        for i in range(0, len(known), BATCH):
            out.append("INSERT INTO fovea_known VALUES " + ", ".join(
                f"({quote_literal(t)}, {quote_literal(r)})" for t, r in known[i:i + BATCH]) + ";")
    for part in PARTS.get(cs.kind, ()):
        if part.table in cs.known:
            table = quote_literal(part.table)
            new = (f"FROM {from_clause(part)} WHERE {scope_filter(part, cs.scope_id)} AND NOT EXISTS "
                   f"(SELECT 1 FROM fovea_known k WHERE k.tbl = {table} AND k.id = t.id) AND NOT EXISTS "
                   f"(SELECT 1 FROM fovea_expect x WHERE x.tbl = {table} AND x.id = t.id)")
            out.append(f"INSERT INTO fovea_found SELECT {table}, t.id, 'new' {new};")
            out.append(f"INSERT INTO fovea_expect SELECT {table}, t.id, NULL {new};")
    conflict = (f"FROM fovea_expect e LEFT JOIN fovea_found f USING (tbl, id) WHERE NOT ("
                f"coalesce(e.hash = {quote_literal(ANY)}, false) OR (e.hash IS NULL AND f.hash IS NULL) "
                f"OR coalesce(f.hash = e.hash, false) OR coalesce(right(e.hash, 1) = {quote_literal(OR_ABSENT)} "
                f"AND (f.hash IS NULL OR f.hash = left(e.hash, -1)), false))")
    out.append(f"SELECT 'conflict|' || e.tbl || '|' || {hex_of('e.id')} || '|' || "
               f"CASE WHEN f.hash IS NULL THEN 'absent' WHEN e.hash IS NULL THEN 'present' ELSE 'changed' END "
               f"{conflict};")
    out.append(f"SELECT count(*) > 0 AS fovea_conflict {conflict} \\gset")
    out.append(f"\\if :fovea_conflict\nROLLBACK;\n\\echo {MARK}|rolled-back\n\\q\n\\endif")
    for run in _runs([c for c in changes if c.action == "delete"]):
        ids = ", ".join(quote_literal(c.id) for c in run)
        out.append(f"WITH d AS (DELETE FROM {quote_ident(run[0].table)} WHERE id IN ({ids}) RETURNING id) "
                   f"SELECT 'deleted|{run[0].table}|' || count(*) FROM d;")
    on_conflict = " ON CONFLICT DO NOTHING" if cs.mode == ADD_MISSING else ""
    for run in _runs([c for c in changes if c.action == "insert"]):
        out.append(_insert(cs, run, on_conflict))
    for table in tables:
        updates = [c for c in changes if c.action == "update" and c.table == table]
        cols = [col for col in cs.columns[table] if col != "id"]
        if not updates or not cols:
            continue
        names = ", ".join(quote_ident(col) for col in cols)
        values = ", ".join(f"r.{quote_ident(col)}" for col in cols)
        for batch in _batches(updates):
            data = quote_literal("[" + ",".join(c.row or "{}" for c in batch) + "]")
            out.append(f"WITH u AS (UPDATE {quote_ident(table)} t SET ({names}) = ROW({values}) "
                       f"FROM jsonb_populate_recordset(NULL::{quote_ident(table)}, {data}::jsonb) r "
                       f"WHERE t.id = r.id RETURNING t.id) SELECT 'updated|{table}|' || count(*) FROM u;")
    out.append("COMMIT;")
    out.append(f"\\echo {MARK}|committed")
    return "\n".join(out) + "\n"


def _insert(cs: ChangeSet, run: list[Change], on_conflict: str) -> str:
    table = run[0].table
    names = ", ".join(quote_ident(col) for col in cs.columns[table])
    values = ", ".join(f"r.{quote_ident(col)}" for col in cs.columns[table])
    data = quote_literal("[" + ",".join(c.row or "{}" for c in run) + "]")
    return (f"WITH i AS (INSERT INTO {quote_ident(table)} ({names}) SELECT {values} FROM "
            f"jsonb_populate_recordset(NULL::{quote_ident(table)}, {data}::jsonb) r{on_conflict} RETURNING id) "
            f"SELECT 'inserted|{table}|' || count(*) || '|{len(run)}' FROM i;")


# --------------------------------------------------------------------------- applying


def apply_changeset(settings: Settings, db: Database, cs: ChangeSet, *, action: str = "selective-restore",
                    now: datetime | None = None) -> ApplyResult:
    """Write the undo file, then run the transaction; ConcurrentEdit when rows moved since."""
    if cs.database != db.name:
        raise SafetyRefusal(f"this change set is for database {cs.database!r}, the install's is {db.name!r}")
    running = holder(settings, "backups")
    if running is not None and running.purpose.startswith("restore"):
        raise SafetyRefusal(f"a whole restore is running ({running.describe()}): it replaces the database "
                            "these rows would go to", hint="wait for it to finish, then compare again")
    t0 = time.monotonic()
    now = now or datetime.now(UTC)
    details = {"kind": cs.kind, "scope": cs.scope_id, "name": cs.scope_name, "dump": cs.dump, "mode": cs.mode,
               "insert": cs.count("insert"), "update": cs.count("update"), "delete": cs.count("delete")}
    if cs.empty:
        result = ApplyResult(True, cs, None, duration_s=time.monotonic() - t0)
        audit.record(settings, action, "ok", {**details, "undo_file": None})
        return result
    path = write_undo(settings, cs, now)
    try:
        out = db.psql(script(cs))
    except DatabaseError as exc:
        _discard(path)
        audit.record(settings, action, "failed", {**details, "error": str(exc)})
        raise OperationFailed(f"the selective restore was rolled back, nothing changed: {exc}") from None
    except BaseException:
        # Interrupted: psql's session ended without COMMIT unless it got that far; the undo
        # file stays (it undoes nothing harmful if the transaction never committed).
        audit.record(settings, action, "interrupted", {**details, "undo_file": str(path)})
        raise
    lines = [line.split("|") for line in out.splitlines() if "|" in line]
    if [MARK, "rolled-back"] in lines:
        _discard(path)
        conflicts = [{"table": f[1], "id": bytes.fromhex(f[2]).decode("utf-8"), "what": f[3]}
                     for f in lines if f[0] == "conflict"]
        audit.record(settings, action, "refused", {**details, "conflicts": len(conflicts)})
        shown = "; ".join(f"{c['table']} {printable(c['id'])} ({_what(c['what'])})" for c in conflicts[:10])
        more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        raise ConcurrentEdit(f"{len(conflicts)} rows changed since the comparison (someone is editing them): "
                             f"{shown}{more}; rolled back, nothing changed", conflicts,
                             hint="compare again and re-apply when the edits are done")
    if [MARK, "committed"] not in lines:
        audit.record(settings, action, "failed", {**details, "undo_file": str(path)})
        raise OperationFailed("psql ended without saying whether the transaction committed; the undo file "
                              f"{path} is kept: check the rows before using it")
    result = ApplyResult(True, cs, path, duration_s=time.monotonic() - t0)
    for f in lines:
        if f[0] == "inserted":
            result.inserted[f[1]] = result.inserted.get(f[1], 0) + int(f[2])
            result.skipped += int(f[3]) - int(f[2])
        elif f[0] == "updated":
            result.updated += int(f[2])
        elif f[0] == "deleted":
            result.deleted += int(f[2])
    audit.record(settings, action, "ok", {**details, "undo_file": str(path), "skipped": result.skipped})
    return result


def _what(code: str) -> str:
    return {"absent": "deleted since", "present": "inserted since", "changed": "edited since"}.get(code, code)


def _discard(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
