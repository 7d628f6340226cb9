"""What "one video" and "one persona" are in Fovea's schema, as data.

A scope is a row of `videos` or `personas` and the rows that hang off it through the
application's foreign keys. Each part names a table and the SQL that gives, for a row `t`
of it, the id of the scope it belongs to. Parts are listed parents first: inserts run in
this order, deletes in reverse (the cascades of `videos` and `video_summaries` point down).
"""

from __future__ import annotations

from dataclasses import dataclass

from fovea_tui.engine.infra.database import quote_ident, quote_literal

VIDEO = "video"
PERSONA = "persona"
KINDS = (VIDEO, PERSONA)


@dataclass(frozen=True)
class Part:
    table: str
    scope_expr: str        # the scope id of row t
    joins: str = ""        # what scope_expr needs besides t
    noun: str = ""         # for sentences, singular: "annotation", "summary"

    @property
    def label(self) -> str:
        return self.noun or self.table


PARTS: dict[str, tuple[Part, ...]] = {
    VIDEO: (
        Part("videos", "t.id", noun="video row"),
        Part("video_summaries", 't."videoId"', noun="summary"),
        Part("annotations", 't."videoId"', noun="annotation"),
        Part("claims", 's."videoId"', 'JOIN "video_summaries" s ON s.id = t."summaryId"', noun="claim"),
        Part("claim_relations", 's."videoId"',
             'JOIN "claims" c ON c.id = t."sourceClaimId" JOIN "video_summaries" s ON s.id = c."summaryId"',
             noun="claim relation"),
    ),
    # World state belongs to a user in Fovea's schema: a persona's scope holds the world
    # state of the user who owns the persona.
    PERSONA: (
        Part("personas", "t.id", noun="persona row"),
        Part("ontologies", 't."personaId"', noun="ontology"),
        Part("world_state", "p.id", 'JOIN "personas" p ON p."userId" = t."userId"', noun="world state row"),
    ),
}

#: The table holding the scope's own row, and its column naming it for people.
ROOT = {VIDEO: ("videos", "filename"), PERSONA: ("personas", "name")}


def hex_of(expr: str) -> str:
    """SQL for the UTF-8 bytes of `expr` in hex: no escaping on the wire, and its order is
    the byte order that `COLLATE "C"` sorts by."""
    return f"encode(convert_to({expr}, 'UTF8'), 'hex')"


def row_hash(columns: list[str], alias: str = "t") -> str:
    """md5 of the row's text over `columns` (the columns both databases have)."""
    cols = ", ".join(f"{alias}.{quote_ident(c)}" for c in columns)
    return f"md5(ROW({cols})::text)"


def from_clause(part: Part) -> str:
    return f"{quote_ident(part.table)} t {part.joins}".strip()


def scope_filter(part: Part, scope_id: str) -> str:
    return f"{part.scope_expr} = {quote_literal(scope_id)}"


def printable(text: str) -> str:
    """A name from the database as one safe line: control characters shown escaped."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
