"""The pg_dump plain-SQL stream format: its completion line and its COPY blocks.

Shared by the backup pipeline (which inspects the stream as it writes it) and verify
(which re-reads a dump later), so neither imports the other.
"""

from __future__ import annotations

import re

COMPLETION_LINE = b"-- PostgreSQL database dump complete"
TAIL_BYTES = 4096

_IDENT = r'(?:"(?:[^"]|"")*"|[^\s."(]+)'
_COPY_HEADER = re.compile(rf"^COPY\s+({_IDENT})(?:\.({_IDENT}))?\s")


def _unquote(part: str) -> str:
    return part[1:-1].replace('""', '"') if part.startswith('"') else part


def copy_table_name(header: bytes) -> str | None:
    """`COPY public.x (...) FROM stdin;` -> "x" (schema kept when it is not public)."""
    m = _COPY_HEADER.match(header.decode("utf-8", "replace"))
    if not m:
        return None
    first, second = m.group(1), m.group(2)
    if second is None:
        return _unquote(first)
    schema, table = _unquote(first), _unquote(second)
    return table if schema == "public" else f"{schema}.{table}"


def ends_complete(tail: bytes) -> bool:
    """Does the end of a plain dump carry pg_dump's completion line?

    After it only comment lines, blank lines and (pg_dump 17.6/16.10 and later) the
    `\\unrestrict` meta-command may follow.
    """
    at = tail.rfind(COMPLETION_LINE)
    if at < 0 or (at > 0 and tail[at - 1:at] != b"\n"):
        return False
    rest = tail[at + len(COMPLETION_LINE):]
    if rest and not rest.startswith(b"\n"):
        return False  # the line goes on: not pg_dump's line
    for line in rest.split(b"\n"):
        line = line.strip()
        if line and not line.startswith(b"--") and not line.startswith(b"\\unrestrict"):
            return False
    return True


class StreamInspector:
    """Reads a plain dump as it streams by: rows per COPY block, and the stream's end.

    Works on chunks of any size and boundary with C-speed bytes.find/count; carries at
    most a few bytes (or one COPY header line) between chunks, whatever the row sizes.
    """

    def __init__(self) -> None:
        self.tables: dict[str, int] = {}
        self.bytes = 0
        self._table: str | None = None   # inside a COPY block of this table
        self._rows = 0
        self._carry = b""
        self._line_start = True
        self._tail = b""

    @property
    def complete(self) -> bool:
        return self._table is None and ends_complete(self._tail)

    @property
    def tail(self) -> bytes:
        return self._tail

    def text(self, buf: bytes, start: int, end: int) -> None:
        """Called with the next bytes outside COPY blocks, buf[start:end] (SQL, comments, the
        headers of blocks and their end lines excepted): every such byte once and in order."""

    def copy_allowed(self, header: bytes) -> bool:
        """May this `COPY ... FROM stdin;` line start a block? Everything before it has been
        given to `text`. A subclass that reads the SQL says no inside a statement (a function
        body quoting such a line); then the line goes to `text`."""
        return True

    def copy_started(self, header: bytes) -> None:
        """Called as a COPY block begins, with its header line (a subclass reads rows here)."""

    def copy_data(self, buf: bytes, start: int, end: int) -> None:
        """Called with the next bytes of the current block's rows, buf[start:end]: every byte
        once and in order, the last row's newline included, the end line (`\\.`) not."""

    def copy_ended(self) -> None:
        """Called as the current COPY block ends."""

    def _end_copy(self) -> None:
        assert self._table is not None
        self.copy_ended()
        self.tables[self._table] = self.tables.get(self._table, 0) + self._rows
        self._table = None
        self._rows = 0

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        self.bytes += len(chunk)
        self._tail = chunk[-TAIL_BYTES:] if len(chunk) >= TAIL_BYTES else (self._tail + chunk)[-TAIL_BYTES:]
        buf = self._carry + chunk if self._carry else chunk
        self._carry = b""
        p, n = 0, len(buf)
        while p < n:
            if self._table is not None:
                if self._line_start and buf.startswith(b"\\.\n", p):
                    self._end_copy()
                    p += 3
                    continue
                i = buf.find(b"\n\\.\n", p)
                if i >= 0:
                    self._rows += buf.count(b"\n", p, i + 1)
                    self.copy_data(buf, p, i + 1)
                    self._end_copy()
                    p, self._line_start = i + 4, True
                    continue
                self._rows += buf.count(b"\n", p)
                self._keep_tail(buf, p, b"\\.\n")
                self.copy_data(buf, p, n - len(self._carry))  # the carried bytes come again with the next chunk
                return
            if self._line_start and buf.startswith(b"COPY ", p):
                start = p
            else:
                j = buf.find(b"\nCOPY ", p)
                start = j + 1 if j >= 0 else -1
            if start < 0:
                self._keep_tail(buf, p, b"COPY ")
                self.text(buf, p, n - len(self._carry))  # the carried bytes come again with the next chunk
                return
            if start > p:
                self.text(buf, p, start)
            eol = buf.find(b"\n", start)
            if eol < 0:
                self._carry, self._line_start = buf[start:], True
                return
            header = buf[start:eol]
            p, self._line_start = eol + 1, True
            if header.rstrip().endswith(b"FROM stdin;") and self.copy_allowed(header):
                self._table = copy_table_name(header) or header[5:60].decode("utf-8", "replace")
                self._rows = 0
                self.copy_started(header)
            else:
                self.text(buf, start, p)

    def finish(self) -> None:
        """At the stream's end: the few bytes held back in case they began a marker are text
        after all (a stream ending in the middle of a block gives them to nobody)."""
        if self._carry and self._table is None:
            self.text(self._carry, 0, len(self._carry))
        self._carry = b""

    def _keep_tail(self, buf: bytes, p: int, marker: bytes) -> None:
        """After the last newline: carry a few bytes only if they may start `marker`."""
        last = buf.rfind(b"\n", p)
        at_start = last >= 0 or self._line_start
        tail = buf[last + 1:] if last >= 0 else buf[p:]
        if not tail:
            self._line_start = True
        elif at_start and len(tail) < len(marker) and marker.startswith(tail):
            self._carry, self._line_start = tail, True
        else:
            self._line_start = False
