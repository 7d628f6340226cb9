"""The rows a selective restore inserts, updates and deletes, as data (the dry run shows it).

Modes: `replace` makes the scope exactly what the dump had (rows only live are deleted,
changed rows put back); `add-missing` only inserts the rows the dump has and live lacks.
Each change carries what the live row looked like when compared (`expect`, its hash), so the
transaction can tell a row someone edited since, and what it looked like (`before`), so the
change can be undone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fovea_tui.engine.infra.database import Database, quote_literal
from fovea_tui.engine.selective.compare import Row, ScopeRows, TableRows, common_columns, live_ids, table_columns
from fovea_tui.engine.selective.scopes import PARTS, ROOT, VIDEO, hex_of, printable, row_hash
from fovea_tui.errors import SafetyRefusal, UsageError

REPLACE = "replace"
ADD_MISSING = "add-missing"
MODES = (REPLACE, ADD_MISSING)
ANY = "*"          # expect: do not check this row (its written form is not the dump's)
OR_ABSENT = "?"    # suffix of expect: this hash, or the row already gone


@dataclass
class Change:
    table: str
    id: str
    action: str                 # insert, update, delete
    expect: str | None          # live hash now (None: the row must not exist)
    before: str | None = None   # live row (JSON) for update/delete
    row: str | None = None      # row to write (JSON) for insert/update
    after: str | None = None    # hash of `row` over the compared columns
    label: str = ""

    def as_dict(self, *, rows: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {"table": self.table, "id": self.id, "action": self.action, "row": self.label}
        if rows:
            data.update(expect=self.expect, before=self.before, data=self.row, after=self.after)
        return data


@dataclass
class ChangeSet:
    kind: str
    scope_id: str
    scope_name: str
    dump: str
    database: str
    mode: str
    columns: dict[str, list[str]]
    changes: list[Change] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    known: dict[str, list[str]] = field(default_factory=dict)  # replace: every live id compared, per table

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def empty(self) -> bool:
        return not self.changes

    def ordered(self) -> list[Change]:
        """Deletes children first, then inserts parents first, then updates."""
        order = {p.table: i for kind in PARTS for i, p in enumerate(PARTS[kind])}
        order["personas"] = -1  # a re-created persona comes before the rows that need it
        deletes = sorted((c for c in self.changes if c.action == "delete"), key=lambda c: -order.get(c.table, 0))
        inserts = sorted((c for c in self.changes if c.action == "insert"), key=lambda c: order.get(c.table, 0))
        updates = [c for c in self.changes if c.action == "update"]
        return deletes + _parents_first(inserts) + updates

    def totals(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for c in self.changes:
            out.setdefault(c.table, {"insert": 0, "update": 0, "delete": 0})[c.action] += 1
        return out

    def describe(self) -> str:
        if self.empty:
            return f"{self.kind} {printable(self.scope_name)}: nothing to change ({self.mode})"
        return (f"{self.kind} {printable(self.scope_name)} ({self.mode}): {self.count('insert')} rows inserted, "
                f"{self.count('update')} updated, {self.count('delete')} deleted")

    def as_dict(self, *, rows: bool = False) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.scope_id, "name": self.scope_name, "dump": self.dump,
                "database": self.database, "mode": self.mode, "summary": self.describe(),
                "inserted": self.count("insert"), "updated": self.count("update"), "deleted": self.count("delete"),
                "totals": self.totals(), "notes": self.notes, "columns": self.columns if rows else None,
                "changes": [c.as_dict(rows=rows) for c in self.ordered()],
                **({"known": self.known} if rows else {})}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChangeSet:
        changes = [Change(c["table"], c["id"], c["action"], c.get("expect"), c.get("before"), c.get("data"),
                          c.get("after"), c.get("row", "")) for c in data["changes"]]
        return cls(data["kind"], data["id"], data["name"], data["dump"], data["database"], data["mode"],
                   data["columns"], changes, list(data.get("notes") or []), dict(data.get("known") or {}))


def _parents_first(inserts: list[Change]) -> list[Change]:
    """Claims point at parent claims: insert a parent before its children."""
    claims = [c for c in inserts if c.table == "claims"]
    if not claims:
        return inserts
    by_id = {c.id: c for c in claims}
    done: set[str] = set()
    ordered: list[Change] = []

    def visit(c: Change, depth: int = 0) -> None:
        if c.id in done or depth > len(by_id):
            return
        parent = _field(c.row, "parentClaimId")
        if isinstance(parent, str) and parent in by_id:
            visit(by_id[parent], depth + 1)
        done.add(c.id)
        ordered.append(c)

    for c in claims:
        visit(c)
    before = [c for c in inserts if c.table != "claims" and c.table != "claim_relations"]
    after = [c for c in inserts if c.table == "claim_relations"]
    return before + ordered + after


def _field(data: str | None, key: str) -> Any:
    if not data:
        return None
    try:
        return json.loads(data).get(key)
    except (ValueError, AttributeError):
        return None


def build_changeset(db: Database, rows: ScopeRows, *, dump: str, dump_db: str, live_db: str, mode: str,
                    recreate_personas: bool = False, leave_out_orphans: bool = False) -> ChangeSet:
    """The changes that bring `rows`' scope back as the dump had it, in `mode`.

    UsageError when the scope is not in the dump; SafetyRefusal naming the personas the
    dump's rows need and live lacks, unless the operator chose to re-create them or to leave
    those rows out.
    """
    if mode not in MODES:
        raise UsageError(f"unknown mode {mode!r}: use replace or add-missing", key="--mode")
    root_table = ROOT[rows.kind][0]
    if not rows.table(root_table).dump:
        raise UsageError(f"{rows.kind} {printable(rows.name)!r} is not in the dump {dump}: nothing to bring back",
                         key=f"--{rows.kind}")
    cs = ChangeSet(rows.kind, rows.id, rows.name, dump, live_db, mode, dict(rows.columns))
    for t in rows.tables:
        cs.changes += _table_changes(t, mode)
        if mode == REPLACE:
            cs.known[t.table] = sorted(t.live)
    video = next((c for c in cs.changes if c.table == "videos" and c.action == "insert"), None)
    if video is not None:
        cs.notes.append(f"the video row is re-created: its file ({printable(str(_field(video.row, 'path')))}) "
                        "must be in the video storage, or the backend's next video sync deletes the row and its "
                        "annotations again (`fovea-tui sync --pull` brings files back from the volume copy)")
    if rows.kind == VIDEO:
        _personas(db, cs, rows, dump_db, live_db, recreate_personas, leave_out_orphans)
    return cs


def _table_changes(t: TableRows, mode: str) -> list[Change]:
    out = []
    for rid in t.only_dump:
        d = t.dump[rid]
        out.append(Change(t.table, rid, "insert", None, row=d.data, after=d.hash, label=d.summary(t.table)))
    if mode == REPLACE:
        for rid in t.changed:
            d, live = t.dump[rid], t.live[rid]
            out.append(Change(t.table, rid, "update", live.hash, before=live.data, row=d.data, after=d.hash,
                              label=d.summary(t.table)))
        for rid in t.only_live:
            live = t.live[rid]
            out.append(Change(t.table, rid, "delete", live.hash, before=live.data, label=live.summary(t.table)))
    return out


def _personas(db: Database, cs: ChangeSet, rows: ScopeRows, dump_db: str, live_db: str,
              recreate: bool, leave_out: bool) -> None:
    """Rows of a video that name a persona gone since: re-create it, leave them out, or refuse."""
    writes = [c for c in cs.changes if c.action in ("insert", "update") and c.table in ("annotations",
                                                                                         "video_summaries")]
    wanted = {p for c in writes if isinstance(p := _field(c.row, "personaId"), str)}
    missing = sorted(wanted - live_ids(db, "personas", wanted, live_db))
    if not missing:
        return
    personas = {r.id: r for r in _persona_rows(db, missing, dump_db)}
    names = ", ".join(f"{printable(str(_field(personas[p].data, 'name') if p in personas else '?'))} ({p})"
                      for p in missing)
    if recreate:
        users = {u for p in missing if p in personas and isinstance(u := _field(personas[p].data, "userId"), str)}
        gone_users = users - live_ids(db, "users", users, live_db)
        for pid in missing:
            p = personas[pid]
            data, after = p.data, p.hash
            if _field(data, "userId") in gone_users:
                obj = json.loads(data)
                obj["userId"] = None
                data, after = json.dumps(obj), ANY
                cs.notes.append(f"persona {printable(str(obj.get('name')))} re-created without its user "
                                "(the user is gone since)")
            cs.changes.append(Change("personas", pid, "insert", None, row=data, after=after,
                                     label=p.summary("personas")))
        cs.columns.setdefault("personas", _columns(db, live_db, dump_db, "personas"))
        cs.notes.append(f"personas re-created from the dump: {names}")
        return
    if not leave_out:
        raise SafetyRefusal(f"rows of {printable(rows.name)} in the dump belong to personas deleted since: {names}",
                            hint="choose --recreate-personas to bring them back too, or --leave-out-orphans "
                                 "to restore without those rows")
    gone = set(missing)
    summaries = {c.id for c in writes if c.table == "video_summaries" and _field(c.row, "personaId") in gone}
    claims = {c.id for c in cs.changes if c.table == "claims" and _field(c.row, "summaryId") in summaries}
    grew = True
    while grew:  # a claim whose parent claim is left out goes too, as the cascade would take it
        more = {c.id for c in cs.changes if c.table == "claims" and _field(c.row, "parentClaimId") in claims}
        grew = not more <= claims
        claims |= more
    kept = []
    left = 0
    for c in cs.changes:
        drop = c.action != "delete" and (
            (c.table in ("annotations", "video_summaries") and _field(c.row, "personaId") in gone)
            or (c.table == "claims" and c.id in claims)
            or (c.table == "claim_relations" and _field(c.row, "sourceClaimId") in claims))
        if drop:
            left += 1
        else:
            kept.append(c)
    cs.changes = kept
    cs.notes.append(f"left out {left} rows of personas deleted since: {names}")


def _persona_rows(db: Database, ids: list[str], dump_db: str) -> Iterator[Row]:
    cols = table_columns(db, dump_db).get("personas", [])
    listed = ", ".join(quote_literal(i) for i in ids)
    out = db.psql(f"SELECT {hex_of('t.id')} || '|' || {row_hash(cols)} || '|' || to_jsonb(t)::text "
                  f"FROM \"personas\" t WHERE t.id IN ({listed});", database=dump_db)
    for line in out.splitlines():
        rid, digest, data = line.split("|", 2)
        yield Row(bytes.fromhex(rid).decode(), digest, data)


def _columns(db: Database, live_db: str, dump_db: str, table: str) -> list[str]:
    return common_columns(table_columns(db, live_db), table_columns(db, dump_db), table)


def inverse(cs: ChangeSet) -> ChangeSet:
    """The change set that undoes `cs` once applied (what the undo file holds)."""
    undo = ChangeSet(cs.kind, cs.scope_id, cs.scope_name, cs.dump, cs.database, "undo", dict(cs.columns),
                     notes=[f"undoes the {cs.mode} of {cs.kind} {printable(cs.scope_name)} from {cs.dump}"])
    for c in cs.changes:
        if c.action == "insert":
            expect = ANY if c.after in (None, ANY) else f"{c.after}{OR_ABSENT}"
            undo.changes.append(Change(c.table, c.id, "delete", expect, before=c.row, label=c.label))
        elif c.action == "update":
            undo.changes.append(Change(c.table, c.id, "update", c.after or ANY, before=c.row, row=c.before,
                                       after=c.expect, label=c.label))
        else:
            undo.changes.append(Change(c.table, c.id, "insert", None, row=c.before, after=c.expect, label=c.label))
    return undo
