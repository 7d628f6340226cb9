"""Loads a plain pg_dump SQL stream (gzip) into a fresh, empty database over several psql
sessions, because one psql applies a dump on one core while the server can load rows and
build indexes on all of them.

Three phases, each awaited before the next:

1. pre-data: everything before the first COPY block (the schema), in one session;
2. data: each COPY block's rows cut into chunks of about `CHUNK_TARGET` bytes at a row's
   end, each chunk wrapped in its block's `COPY ... FROM stdin;` line and `\\.`, dealt to
   `sessions()` psql sessions, always to the one with the least waiting for it (so the
   largest table is spread over all of them); each session first gets the dump's SET and
   set_config lines (search_path '', the encoding...);
3. post-data: CREATE [UNIQUE] INDEX and `ALTER TABLE ONLY ... ADD CONSTRAINT ... PRIMARY
   KEY|UNIQUE` statements shared out over the sessions (a partition tree's in one), then
   everything else (foreign keys, triggers, ATTACH, comments, grants, setval...) in one
   session in the dump's order. A statement moves only when it stands alone on its lines
   at a statement boundary (never inside a dollar-quoted body or a longer statement) and
   nothing before it in post-data that it could depend on is other than SET lines (which
   travel with it), comments, setval and ATTACH PARTITION; otherwise post-data runs in
   one session in order;
4. foreign keys: when post-data was shared out, each `ALTER TABLE ONLY ... ADD CONSTRAINT
   ... FOREIGN KEY` that the rest of post-data never names again (and that is not on a
   partition tree, nor already NOT VALID) is added NOT VALID in its place, then checked
   with VALIDATE CONSTRAINT over the sessions, a table's keys in one. Adding a key checks
   every row under a lock that keeps the next key waiting; VALIDATE locks only its own
   table, so the checks of different tables run side by side. The database ends the same:
   every such key valid, or the load fails on the row that breaks it.

Why this is safe without one transaction over the whole dump: the target is always a
database its caller has just created empty (the restore's prepare step renamed the old one
aside or dropped it after a safety dump; the drill and the selective restore use a scratch
database). When any session fails, every other is stopped and the caller discards the
partly loaded database: the restore's undo renames the old one back (or restores the safety
dump), the drill and the selective restore drop their scratch database.

A small dump (under `SMALL_DUMP` compressed, `SMALL_DUMP_DOCKER` in docker mode) or one
without COPY blocks goes through one psql in one transaction, as the runbook's `gunzip | psql`
would.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import threading
import time
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from isal import igzip

from fovea_tui.engine.backups.stream_format import StreamInspector
from fovea_tui.engine.infra.streams import ToolProcess, condense
from fovea_tui.errors import OperationFailed

READ = 1 << 20
CHUNK_TARGET = 2 << 20      # rows per COPY chunk dealt to a session, cut at a row's end
QUEUE_DEPTH = 3             # chunks waiting per data session before the reader waits
SMALL_DUMP = 256 << 10      # compressed bytes under which one session is faster (about 1 MiB of SQL)
# In docker mode each session is one more `docker exec` stream. Measured on 2 cores: a 17 MiB
# dump loads in 0.99x the runbook's pipe over one session, 1.13x over several; at 86 MiB both
# are about 0.9x. Several sessions pay off only on dumps larger than this (and more cores).
SMALL_DUMP_DOCKER = 64 << 20
MAX_SESSIONS = 4
# Written to psql when a stream must be abandoned: ends a COPY block and any statement, then
# raises, so `--single-transaction` rolls back instead of committing half a dump at EOF.
ABORT_SQL = b"\n\\.\n;\nDO $fovea$ BEGIN RAISE EXCEPTION 'restore aborted by fovea-tui'; END $fovea$;\n"


def sessions() -> int:
    """psql sessions of a parallel load: one per core, two to four."""
    return max(2, min(MAX_SESSIONS, os.cpu_count() or 1))


# --------------------------------------------------------------------------- reading SQL

_SPECIAL = re.compile(rb"""--|/\*|;|'|"|\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$""")
_E_STRING = re.compile(rb"\\.|'", re.S)
_BLOCK = re.compile(rb"/\*|\*/")
_NORMAL, _STRING, _E_STR, _QUOTED, _DOLLAR, _COMMENT = range(6)


def _ident_char(c: int) -> bool:
    return c >= 0x80 or c in b"_$" or 0x30 <= c <= 0x39 or 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


@dataclass(slots=True)
class Statement:
    """One SQL statement (or psql meta-command, or run of comment lines) as the dump has it."""

    line: int           # the dump's line of its first line
    text: bytes         # its lines, newlines included
    kind: str           # "sql", "meta" or "trivia" (blank lines and comments)
    ends: int = 0       # statement terminators (;) outside quotes and comments


class SqlScanner:
    """Splits SQL text into statements as psql's lexer would: quotes ('' "" E'' $tag$),
    comments (-- and nested /* */) and `;` at the end of a line. Fed any pieces; works
    line by line; `at_boundary` says whether the next line starts a new statement."""

    def __init__(self, on_statement: Callable[[Statement], None]) -> None:
        self.on_statement = on_statement
        self.line = 1                    # the dump's line number of the next line
        self._partial = b""
        self._lines: list[bytes] = []
        self._first = 0
        self._mode = _NORMAL
        self._tag = b""
        self._depth = 0
        self._open = False               # content since the last `;`
        self._content = False            # content in this statement at all
        self._ends = 0

    @property
    def at_boundary(self) -> bool:
        return not self._partial and not self._lines and self._mode == _NORMAL

    def feed(self, data: bytes) -> None:
        if self._partial:
            data = self._partial + data
        start = 0
        while True:
            nl = data.find(b"\n", start)
            if nl < 0:
                self._partial = data[start:]
                return
            self._take(data[start:nl + 1])
            start = nl + 1

    def finish(self) -> None:
        """The text's end: a last line without its newline, a statement left open."""
        if self._partial:  # ended as a line (statements are sent one after the other)
            partial, self._partial = self._partial, b""
            self._take(partial + b"\n")
        if self._lines:
            self._emit("sql" if self._content else "trivia")

    def _take(self, line: bytes) -> None:
        if not self._lines and self._mode == _NORMAL and line.lstrip().startswith(b"\\"):
            self.on_statement(Statement(self.line, line, "meta"))  # a meta-command: one line
            self.line += 1
            return
        if not self._lines:
            self._first = self.line
        self._lines.append(line)
        self._scan(line)
        self.line += 1
        if self._mode == _NORMAL and not self._open:
            self._emit("sql" if self._content else "trivia")

    def _emit(self, kind: str) -> None:
        stmt = Statement(self._first, b"".join(self._lines), kind, self._ends)
        self._lines, self._content, self._open, self._ends = [], False, False, 0
        self.on_statement(stmt)

    def _scan(self, line: bytes) -> None:
        pos, n = 0, len(line)
        while pos < n:
            mode = self._mode
            if mode == _NORMAL:
                m = _SPECIAL.search(line, pos)
                end = m.start() if m else n
                if line[pos:end].strip():
                    self._open = self._content = True
                if m is None:
                    return
                tok, at = m.group(), m.start()
                pos = m.end()
                if tok == b"--":
                    return
                if tok == b";":
                    self._ends += 1
                    self._open = False
                    continue
                if tok == b"/*":
                    self._mode, self._depth = _COMMENT, 1
                    continue
                self._open = self._content = True
                prev = line[at - 1] if at else 0x20
                if tok == b"'":
                    e_string = prev in b"Ee" and (at < 2 or not _ident_char(line[at - 2]))
                    self._mode = _E_STR if e_string else _STRING
                elif tok == b'"':
                    self._mode = _QUOTED
                elif not _ident_char(prev):
                    self._mode, self._tag = _DOLLAR, tok
                else:
                    pos = at + 1  # `a$b$`: a `$` inside an identifier, not a quote
            elif mode in (_STRING, _QUOTED):
                quote = b"'" if mode == _STRING else b'"'
                i = line.find(quote, pos)
                if i < 0:
                    return
                if line.startswith(quote, i + 1):
                    pos = i + 2
                else:
                    self._mode, pos = _NORMAL, i + 1
            elif mode == _E_STR:
                m = _E_STRING.search(line, pos)
                if m is None:
                    return
                pos = m.end()
                if m.group() == b"'":
                    if line.startswith(b"'", pos):
                        pos += 1
                    else:
                        self._mode = _NORMAL
            elif mode == _DOLLAR:
                i = line.find(self._tag, pos)
                if i < 0:
                    return
                self._mode, pos = _NORMAL, i + len(self._tag)
            else:
                m = _BLOCK.search(line, pos)
                if m is None:
                    return
                pos = m.end()
                self._depth += 1 if m.group() == b"/*" else -1
                if self._depth == 0:
                    self._mode = _NORMAL


# --------------------------------------------------------------------------- classifying post-data

# A non-ASCII character is written as a negated class: a range up to \uffff beside \w made
# each of these patterns take 10 ms to compile, time the application is down during a restore.
_ID = r'(?:"(?:[^"]|"")*"|(?:[A-Za-z_]|[^\x00-\x7f])(?:[\w$]|[^\x00-\x7f])*)'
_QNAME = rf"{_ID}(?:\.{_ID})?"
_SET = re.compile(r"SET\s+(\w+)\s*(?:=|TO)\s*[^;]*;\s*\Z", re.I)
_SET_CONFIG = re.compile(r"SELECT\s+pg_catalog\.set_config\('(\w+)',[^;]*\);\s*\Z")
_INDEX = re.compile(rf"CREATE (?:UNIQUE )?INDEX {_ID} ON (?:ONLY )?({_QNAME}) USING \w+ \(.*\);\s*\Z")
_KEY = re.compile(rf"ALTER TABLE ONLY ({_QNAME})\n    ADD CONSTRAINT {_ID} (?:PRIMARY KEY|UNIQUE)"
                  rf"(?: NULLS NOT DISTINCT)? \(.*\);\s*\Z")
# Statements that may stand before a moved one: they change nothing an index build reads.
_HARMLESS = re.compile(rf"(?:SELECT pg_catalog\.setval\(.*\)|ALTER INDEX {_QNAME} ATTACH PARTITION {_QNAME});\s*\Z")
_FOREIGN = re.compile(rf"ALTER TABLE ONLY ({_QNAME})\n    ADD CONSTRAINT ({_ID}) FOREIGN KEY \(.*\) "
                      rf"REFERENCES ({_QNAME})\(.*;\s*\Z".encode())
_WORD = re.compile(rb"[\w$\x80-\xff]+")  # a run of the characters of an unquoted identifier
_PARTITION = re.compile(rf"ALTER TABLE ONLY ({_QNAME}) ATTACH PARTITION ({_QNAME}) ", re.S)
_PARTITION_OF = re.compile(rf"CREATE (?:UNLOGGED )?TABLE ({_QNAME}) PARTITION OF ({_QNAME})")
_COPY_TABLE = re.compile(rf"COPY ({_QNAME})")


def _named_once(name: bytes, words: Counter[bytes], text: bytes) -> bool:
    """Does `text` (in lower case; `words`, its runs of identifier characters) name the
    identifier `name` once only, quoted or not, in any case? A name of other characters
    (quoted: a space, a dot...) is looked for as it stands, inside its quotes."""
    bare = (name[1:-1] if name.startswith(b'"') else name).lower()
    return words[bare] == 1 if _WORD.fullmatch(bare) else text.count(bare) == 1


def _single(stmt: Statement) -> str | None:
    """The statement's text when it is one statement of plain SQL, else None."""
    if stmt.kind != "sql" or stmt.ends != 1:
        return None
    return stmt.text.decode("utf-8", "replace")


def _setting(stmt: Statement) -> str | None:
    text = _single(stmt)
    if text is None or "\n" in text.rstrip():
        return None
    m = _SET.match(text) or _SET_CONFIG.match(text)
    return m.group(1).lower() if m else None


def _movable_table(stmt: Statement) -> str | None:
    """The table a movable index or key statement builds on, or None."""
    text = _single(stmt)
    if text is None:
        return None
    m = _INDEX.match(text) if "\n" not in text.rstrip() else _KEY.match(text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- sessions


Settings = tuple[tuple[str, Statement], ...]  # the SET lines in effect at a statement, by name
Plan = list[tuple[Statement, Settings]]  # what one session of a post-data phase runs


class Aborted(Exception):
    """A session gave up because another failed or the load was cancelled."""


@dataclass
class Session:
    """One psql, started by its own thread (so sessions start side by side, while the reader
    goes on), which then writes what is queued for it, in order."""

    index: int
    of: int                            # sessions in its phase
    phase: str
    loader: Loader
    single_transaction: bool = True
    depth: int = 0                     # items queued before the reader waits (0: no bound)
    proc: ToolProcess | None = None
    start_error: Exception | None = None
    queued: int = 0                    # bytes queued (by the reader)
    written: int = 0                   # bytes written (by the session's thread)
    lines: int = 0                     # lines queued so far
    starts: list[int] = field(default_factory=list)   # its line where a piece of the dump starts
    dump_lines: list[int] = field(default_factory=list)  # ... and that piece's line in the dump
    rows_before: list[tuple[int, int, int]] = field(default_factory=list)  # (line, block rows before, dump line)
    code: int | None = None
    broken: OSError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.pending: queue.Queue = queue.Queue(self.depth)
        self.thread = threading.Thread(target=self._write, name=f"restore-{self.phase}-{self.index}", daemon=True)
        self.thread.start()

    @property
    def waiting(self) -> int:
        return self.queued - self.written

    def send(self, data: bytes, dump_line: int | None = None) -> None:
        """Queue `data` (whole lines); `dump_line` is the dump's line of its first line."""
        self.send_parts((data,), data.count(b"\n"), () if dump_line is None else ((0, dump_line),))

    def send_parts(self, parts: tuple[bytes | memoryview, ...], lines: int,
                   marks: tuple[tuple[int, int], ...] = ()) -> None:
        """Queue `parts`, written in order, `lines` lines; each mark (n, line): its n-th line
        (from 0) is the dump's `line`, and so on from there."""
        for offset, dump_line in marks:
            self.starts.append(self.lines + 1 + offset)
            self.dump_lines.append(dump_line)
        self.lines += lines
        self.queued += sum(len(part) for part in parts)
        self.loader.put(self, parts)

    def after(self, other: Session) -> None:
        """Write nothing more until `other` has ended well (the schema before the rows)."""
        self.loader.put(self, other)

    def end(self) -> None:
        self.loader.put(self, None)

    def chunk_at(self, line: int) -> tuple[int, int, int] | None:
        """(its first line here, rows of its block before it, the dump's line of its first
        row) of the COPY chunk that psql's input line `line` is in."""
        i = bisect_right(self.rows_before, (line, 1 << 62, 0)) - 1
        return self.rows_before[i] if i >= 0 else None

    def dump_line(self, line: int) -> int | None:
        i = bisect_right(self.starts, line) - 1
        return None if i < 0 else self.dump_lines[i] + line - self.starts[i]

    def _write(self) -> None:
        loader = self.loader
        try:
            proc = self.proc = loader.ctx.db.restore(loader.database, single_transaction=self.single_transaction)
        except Exception as exc:  # noqa: BLE001 - no psql (the container gone...): the load fails, saying so
            self.start_error = exc
            self.done.set()
            loader.failed(self)
            return
        if loader.aborted.is_set():  # stopped while this psql started: stop it here
            proc.kill()
            self.code = proc.wait()
            self.done.set()
            return
        try:
            while True:
                item = self.pending.get()
                if loader.aborted.is_set():
                    return  # the loader kills this psql: no EOF, no commit of half its work
                if item is None:
                    break
                if isinstance(item, Session):
                    while not item.done.wait(0.05):
                        if loader.aborted.is_set():
                            return
                    if item.code != 0 or item.broken is not None:
                        return  # its failure stops the load
                    continue
                for part in item:
                    proc.write(part)
                    self.written += len(part)
        except OSError as exc:  # psql stopped reading: it hit an error and exited
            self.broken = exc
        self.code = proc.wait()
        self.done.set()
        if self.code != 0 or self.broken is not None:
            loader.failed(self)


class Loader:
    """The sessions of one parallel load and the first failure among them."""

    def __init__(self, ctx, database: str, n: int) -> None:
        self.ctx = ctx
        self.database = database
        self.n = n
        self.all: list[Session] = []
        self.aborted = threading.Event()
        self.failure: Session | None = None
        self._lock = threading.Lock()

    def spawn(self, phase: str, count: int = 1, *, single_transaction: bool = True, depth: int = 0) -> list[Session]:
        """`count` psql sessions for `phase`, connecting while the reader goes on; `depth`
        bounds what waits for each (what the reader streams), 0 not (what is in memory)."""
        started = [Session(i, count, phase, self, single_transaction, depth) for i in range(count)]
        self.all += started
        return started

    def put(self, session: Session, item) -> None:
        while True:
            self.ctx.cancel.check()
            self.check()
            try:
                session.pending.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def failed(self, session: Session) -> None:
        with self._lock:
            if self.failure is None and not self.aborted.is_set():
                self.failure = session
        self.aborted.set()

    def check(self) -> None:
        if self.aborted.is_set():
            raise Aborted

    def await_all(self, group: list[Session]) -> None:
        """Wait for these sessions to end, watching for a failure and cancel."""
        for session in group:
            while not session.done.wait(0.05):
                self.ctx.cancel.check()
                self.check()
        self.check()

    def stop(self) -> None:
        """Stop every session: kill its psql, end its server session, wait for it."""
        self.aborted.set()
        for session in self.all:
            if session.proc is not None and not session.done.is_set():
                try:
                    session.proc.kill()
                except OSError:
                    pass
        try:  # the server may still work on a killed client's statement (docker exec): end it
            self.ctx.db.terminate_sessions(self.database)
        except Exception:  # noqa: BLE001 - the server may be what failed; the waits below still end
            pass
        for session in self.all:
            while True:
                try:
                    session.pending.get_nowait()  # unblock a writer waiting on a full queue
                except queue.Empty:
                    break
            session.pending.put(None)
            session.thread.join(timeout=30)
            if session.proc is not None and not session.done.is_set():
                session.code = session.proc.wait()

    # -- what psql said

    def report(self, last: Session | None = None) -> str:
        """Every session's messages to the job's log (redacted there), `last`'s at the end;
        psql's stdout (all of it, joined)."""
        lines: list[str] = []
        for session in sorted(self.all, key=lambda s: s is last):
            lines += messages(session)
        for line in lines[-20:]:
            self.ctx.output(line)
        return "".join(s.proc.output_text() for s in self.all if s.proc is not None)

    def failure_message(self, session: Session) -> str:
        if session.start_error is not None:
            return f"psql could not start for the {session.phase}: {session.start_error}"
        code = session.code if session.code is not None else -1
        why = psql_failure(self.ctx, code, "\n".join(messages(session)))
        which = f", session {session.index + 1} of {session.of}" if session.of > 1 else ""
        return (f"{why} (while loading the {session.phase}{which}); every session was stopped, leaving database "
                f"{self.database} partly loaded")


_PSQL_LINE = re.compile(r"psql:<stdin>:(\d+):")
_COPY_CONTEXT = re.compile(r"(CONTEXT:\s+COPY [^,]+, line )(\d+)")


def messages(session: Session) -> list[str]:
    """The session's stderr with psql's `psql:<stdin>:N:` as the dump's line; after a COPY
    error, the line of the failing row, and CONTEXT's row counted in its whole block (what
    one psql reading the whole dump would have said)."""
    if session.proc is None:
        return []
    lines = [ln for ln in session.proc.stderr_text.splitlines() if ln.strip()]
    out: list[str] = []
    chunk: tuple[int, int, int] | None = None
    for i, line in enumerate(lines):
        m = _PSQL_LINE.match(line)
        c = _COPY_CONTEXT.match(line)
        if m:
            n = int(m.group(1))
            at = session.dump_line(n)
            following = _COPY_CONTEXT.match(lines[i + 1]) if i + 1 < len(lines) else None
            chunk = session.chunk_at(n) if following else None
            if chunk is not None and following is not None:
                at = chunk[2] + int(following.group(2)) - 1
            if at is not None:
                line = f"psql:<stdin>:{at}:{line[m.end():]}"
        elif c and chunk is not None:
            line = f"{c.group(1)}{chunk[1] + int(c.group(2))}{line[c.end():]}"
        out.append(line)
    return out


def send_all(session: Session, stmts: list[Statement]) -> None:
    """The statements as one item of the session's queue, each mapped to its dump line."""
    marks, lines = [], 0
    for stmt in stmts:
        marks.append((lines, stmt.line))
        lines += stmt.text.count(b"\n")
    session.send_parts(tuple(stmt.text for stmt in stmts), lines, tuple(marks))


def send_plan(session: Session, plan: Plan, restrict: Statement | None) -> None:
    """A post-data session's statements, each after the SET lines in effect where the dump
    has it (sent again only when they change), then its end."""
    if restrict is not None:
        session.send(restrict.text, restrict.line)
    sent: dict[str, Statement] = {}
    for stmt, settings in plan:
        for name, setting in settings:
            if sent.get(name) is not setting:
                sent[name] = setting
                session.send(setting.text, setting.line)
        session.send(stmt.text, stmt.line)
    session.end()


# --------------------------------------------------------------------------- the dealer


class Dealer(StreamInspector):
    """Reads the dump as it streams: the schema to the pre-data session as it comes, each
    COPY block's rows in chunks to the least busy data session, the rest kept for post-data."""

    def __init__(self, loader: Loader, predata: Session, data: list[Session]) -> None:
        super().__init__()
        self.loader = loader
        self.predata = predata
        self.data = data
        self.scanner = SqlScanner(self._statement)
        self.in_data = False
        self.settings: dict[str, Statement] = {}     # SET/set_config in effect, by name
        self.preamble: list[Statement] = []          # what every session runs first
        self.restrict: Statement | None = None       # pg_dump's \restrict line
        self.post: list[tuple[Statement, Settings]] = []  # with the SETs in effect
        self.families: dict[str, str] = {}           # partition -> its parent
        self.serial_why = ""                         # why post-data runs in one session
        self.table_bytes: dict[str, int] = {}
        self._read: dict[str, int] | None = None     # bytes per table with its partitions' (_cost)
        self._header = b""
        self._copy_table = ""
        self._row_line = 0
        self._dealt = 0
        self._block_line = 0
        self._pieces: list[bytes | memoryview] = []
        self._piece_bytes = 0
        self._partial = b""

    # SQL outside COPY blocks
    def text(self, buf: bytes, start: int, end: int) -> None:
        piece = buf[start:end]
        if not self.in_data:
            self.predata.send(piece)
        self.scanner.feed(piece)

    def finish(self) -> None:
        if self._table is not None:
            raise OperationFailed(f"the dump ends in the middle of the rows of table {self._table}: it is truncated")
        super().finish()
        self.scanner.finish()

    def _statement(self, stmt: Statement) -> None:
        name = _setting(stmt)
        if name is not None:
            self.settings[name] = stmt
        elif stmt.kind == "meta" and stmt.text.lstrip().startswith(b"\\restrict"):
            self.restrict = stmt
        if not self.in_data:
            if stmt.kind == "sql":
                text = stmt.text.decode("utf-8", "replace")
                for m in (*_PARTITION.finditer(text), *_PARTITION_OF.finditer(text)):
                    parent, child = (m.group(1), m.group(2)) if m.re is _PARTITION else (m.group(2), m.group(1))
                    self.families[child] = parent
            return
        self.post.append((stmt, tuple(self.settings.items())))

    def copy_allowed(self, header: bytes) -> bool:
        return self.scanner.at_boundary

    # COPY blocks
    def copy_started(self, header: bytes) -> None:
        if not self.in_data:
            self.in_data = True
            self.predata.end()
            self.preamble = ([self.restrict] if self.restrict else []) + list(self.settings.values())
            for session in self.data:
                session.after(self.predata)
                send_all(session, self.preamble)
        self._header = header + b"\n"
        m = _COPY_TABLE.match(header.decode("utf-8", "replace"))
        self._copy_table = m.group(1) if m else ""
        self._block_line = self.scanner.line
        self._row_line = self.scanner.line + 1
        self._dealt = 0
        self.scanner.line += 1

    def copy_data(self, buf: bytes, start: int, end: int) -> None:
        """Rows are kept as views of the decompressed reads (no copy) until about
        CHUNK_TARGET bytes of whole rows are there; a row cut by a read waits for its end."""
        cut = buf.rfind(b"\n", start, end) + 1
        if cut <= start:
            self._partial += buf[start:end]
            return
        if self._partial:
            self._pieces.append(self._partial)
        self._pieces.append(memoryview(buf)[start:cut])
        self._piece_bytes += cut - start + len(self._partial)
        self._partial = buf[cut:end]
        if self._piece_bytes >= CHUNK_TARGET:
            self._deal()

    def copy_ended(self) -> None:
        if self._pieces:  # (the block's last row ends with its newline: nothing is partial)
            self._deal()
        self.scanner.line = self._row_line + 1  # after the block's `\.`

    def _deal(self) -> None:
        count = self._rows - self._dealt  # the inspector's rows so far, all of them whole here
        # The least backed-up session: bytes not yet written to its psql; when none waits
        # (pipe, psql and socket buffers can hold a whole chunk), the one dealt the least.
        session = min(self.data, key=lambda s: (s.waiting, s.queued))
        session.rows_before.append((session.lines + 1, self._dealt, self._row_line))
        session.send_parts((self._header, *self._pieces, b"\\.\n"), count + 2,
                           ((0, self._block_line), (1, self._row_line)))
        self.table_bytes[self._copy_table] = self.table_bytes.get(self._copy_table, 0) + self._piece_bytes
        self._pieces, self._piece_bytes = [], 0
        self._row_line += count
        self._dealt += count

    # post-data
    def plan(self) -> tuple[list[Plan], list[Statement], list[Plan]]:
        """The index and key statements per parallel session, the rest in order (its foreign
        keys added NOT VALID), and their VALIDATE statements per parallel session; all in the
        rest as the dump has it when something before a movable statement could change what
        it builds."""
        last = max((i for i, (stmt, _) in enumerate(self.post) if _movable_table(stmt)), default=-1)
        units: dict[str, Plan] = {}
        rest: list[Statement] = []
        for i, (stmt, settings) in enumerate(self.post):
            table = _movable_table(stmt)
            if table is not None:
                root = table
                while root in self.families:
                    root = self.families[root]
                # a partition tree is one unit (its statements lock parent and partitions);
                # each other statement is its own
                key = root if root != table or root in self.families.values() else f"{table}\0{i}"
                units.setdefault(key, []).append((stmt, settings))
                continue
            if i < last and not (stmt.kind == "trivia" or _setting(stmt) or _HARMLESS.match(_single(stmt) or "")):
                first = stmt.text.decode("utf-8", "replace").splitlines()[0][:80]
                self.serial_why = f"line {stmt.line} ({first}) comes before indexes it might change"
                return [], [s for s, _ in self.post], []
            rest.append(stmt)
        cost = {key: sum(self._cost(_movable_table(stmt) or "") for stmt, _ in unit) for key, unit in units.items()}
        rest, checks, check_cost = self._checks_apart(rest)
        return self._shared_out(units, cost), rest, self._shared_out(checks, check_cost)

    def _checks_apart(self, rest: list[Statement]) -> tuple[list[Statement], dict[str, Plan], dict[str, int]]:
        """The rest with each foreign key that can be checked apart added NOT VALID, and its
        VALIDATE statements by table (a table's in one session: VALIDATE locks its table).

        Only a key the rest of post-data never names again, in any case or quoting (nothing
        after it can depend on it being checked), on a table of no partition tree (NOT VALID
        is refused there), and not NOT VALID in the dump (its rows were never checked: they
        stay so). The names are counted in one pass: a schema may have thousands of keys."""
        settings = {id(stmt): setting for stmt, setting in self.post}
        text = b"".join(stmt.text for stmt in rest if stmt.kind != "trivia").lower()  # (pg_dump's comments name it)
        words = Counter(_WORD.findall(text))
        trees = {*self.families, *self.families.values()}
        checks: dict[str, Plan] = {}
        cost: dict[str, int] = {}  # a check reads its table and looks its keys up in the other
        kept: list[Statement] = []
        for stmt in rest:
            m = _FOREIGN.match(stmt.text) if stmt.kind == "sql" and stmt.ends == 1 else None
            table, _, refers = (g.decode("utf-8", "replace") for g in m.groups()) if m else ("", "", "")
            if (m is None or stmt.text.rstrip().endswith(b" NOT VALID;") or not _named_once(m.group(2), words, text)
                    or table in trees or refers in trees):
                kept.append(stmt)
                continue
            end = stmt.text.rindex(b";")
            kept.append(Statement(stmt.line, stmt.text[:end] + b" NOT VALID" + stmt.text[end:], "sql", 1))
            check = Statement(stmt.line, b"ALTER TABLE ONLY " + m.group(1) + b" VALIDATE CONSTRAINT " + m.group(2)
                              + b";\n", "sql", 1)
            checks.setdefault(table, []).append((check, settings[id(stmt)]))
            cost[table] = cost.get(table, 0) + self._cost(table) + self._cost(refers)
        return kept, checks, cost

    def _shared_out(self, units: dict[str, Plan], cost: dict[str, int]) -> list[Plan]:
        """The units dealt to the sessions, largest first to the least loaded; each
        session's statements in the dump's order; no empty plan."""
        plans: list[Plan] = [[] for _ in range(self.loader.n)]
        loads = [0] * self.loader.n
        for key in sorted(units, key=lambda k: -cost[k]):
            i = loads.index(min(loads))
            plans[i] += units[key]
            loads[i] += cost[key]
        for plan in plans:
            plan.sort(key=lambda item: item[0].line)
        return [p for p in plans if p]

    def _cost(self, table: str) -> int:
        """The bytes of rows a statement on `table` reads: its own, or its partitions'."""
        if self._read is None:  # once per plan: a schema may have thousands of tables
            self._read = dict(self.table_bytes)
            for part, parent in self.families.items():
                self._read[parent] = self._read.get(parent, 0) + self.table_bytes.get(part, 0)
        return 1 + self._read.get(table, 0)


# --------------------------------------------------------------------------- the load


def load_dump(ctx, path: Path, database: str, *, count: bool = False) -> dict[str, int] | None:
    """Restore the gzip'd plain dump `path` into the fresh, empty `database`; progress over
    the file's bytes; with `count`, the rows per table once it is loaded. OperationFailed
    names the phase and psql's error line."""
    small = SMALL_DUMP_DOCKER if ctx.db.mode == "docker" else SMALL_DUMP
    rows = None
    if path.stat().st_size < small:
        _load_single(ctx, path, database)
    else:
        rows = _load_parallel(ctx, path, database, count=count)
    return ctx.db.table_rows(database) if count and rows is None else rows


def _load_parallel(ctx, path: Path, database: str, *, count: bool) -> dict[str, int] | None:
    """The load over several sessions; with `count`, the rows counted beside the foreign
    keys' checks (which change no row), None when there are none (the caller counts then)."""
    total = path.stat().st_size
    loader = Loader(ctx, database, sessions())
    took: list[str] = []
    since = [time.monotonic()]

    def lap(what: str) -> None:
        now = time.monotonic()
        took.append(f"{what} {now - since[0]:.1f} s")
        since[0] = now

    try:
        predata, = loader.spawn("schema (pre-data)", depth=QUEUE_DEPTH)
        predata.starts, predata.dump_lines = [1], [1]  # the dump's own lines, from its first
        data = loader.spawn("rows (data)", loader.n, depth=QUEUE_DEPTH)
        dealer = Dealer(loader, predata, data)
        with open(path, "rb") as raw, igzip.GzipFile(fileobj=raw, mode="rb") as gz:
            while True:
                ctx.cancel.check()
                loader.check()
                chunk = gz.read(READ)
                if not chunk:
                    break
                dealer.feed(chunk)
                ctx.progress(raw.tell(), total)
        dealer.finish()
        ctx.progress(total, total)
        if not dealer.in_data:  # no COPY block: the whole dump went to the pre-data session
            predata.end()
            for session in data:
                session.end()
            loader.await_all(loader.all)
            ctx.output("the dump has no COPY block: loaded in one session")
            loader.report()
            return None
        for session in data:
            session.end()
        plans, rest, checks = dealer.plan()
        post = loader.spawn("indexes and keys (post-data)", len(plans), single_transaction=False)
        tail, = loader.spawn("rest of post-data")
        checking = loader.spawn("foreign keys (post-data)", len(checks), single_transaction=False)
        loader.await_all(data)
        lap("schema and rows")
        for session, plan in zip(post, plans, strict=True):
            send_plan(session, plan, dealer.restrict)
        loader.await_all(post)
        if plans:
            lap("indexes and keys")
        send_all(tail, [*dealer.preamble, *rest])
        tail.end()
        loader.await_all([tail])
        lap("the rest")
        counting = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="restore-count") as pool:
            if count and checks:
                counting = pool.submit(ctx.db.table_rows, database)
            for session, plan in zip(checking, checks, strict=True):
                send_plan(session, plan, dealer.restrict)
            loader.await_all(checking)
        if checks:
            lap("foreign keys checked" + (" (rows counted beside)" if counting is not None else ""))
        loader.report()
        ctx.output(f"loaded over {loader.n} psql sessions: " + ", ".join(took) + (
            f"; post-data in order, in one session: {dealer.serial_why}" if dealer.serial_why else ""))
        return counting.result() if counting is not None else None
    except Aborted:
        failure = loader.failure
        loader.stop()
        loader.report(failure)
        if failure is None:
            raise OperationFailed("the restore's sessions were stopped") from None
        raise OperationFailed(loader.failure_message(failure)) from None
    except BaseException:
        loader.stop()
        raise


def _load_single(ctx, path: Path, database: str) -> None:
    """One psql, one transaction: a small dump loads faster than sessions start."""
    total = path.stat().st_size
    proc = ctx.db.restore(database)
    broken: OSError | None = None
    try:
        with open(path, "rb") as raw, igzip.GzipFile(fileobj=raw, mode="rb") as gz:
            while True:
                ctx.cancel.check()
                chunk = gz.read(READ)
                if not chunk:
                    break
                try:
                    proc.write(chunk)
                except OSError as exc:  # psql stopped reading: it hit an error and exited
                    broken = exc
                    break
                ctx.progress(raw.tell(), total)
    except BaseException:
        try:
            proc.write(ABORT_SQL)
        except OSError:
            pass
        try:
            proc.kill()
        finally:
            proc.wait()
        raise
    ctx.progress(total, total)
    code = proc.wait()
    out = proc.output_text()
    # psql's own words: "psql:<stdin>:1234: ERROR: ..." names the dump's line (redacted by output)
    for line in (out.splitlines() + proc.stderr_text.splitlines())[-20:]:
        if line.strip():
            ctx.output(line)
    if code != 0 or broken is not None:
        raise OperationFailed(f"{psql_failure(ctx, code, proc.stderr_text)}; the transaction was rolled back")
    ctx.output("loaded in one psql session, in one transaction (a dump this size loads faster so)")


# --------------------------------------------------------------------------- why psql stopped


def psql_failure(ctx, code: int, stderr: str) -> str:
    """Why the restoring psql stopped, in one line: the server gone, psql killed, or its error."""
    gone = _server_gone(ctx.db)
    if gone:
        return f"{gone} while psql restored the dump (psql exit {code})"
    errors = condense(stderr)
    signum = -code if code < 0 else code - 128 if 128 < code < 160 else 0  # docker exec: 128 + signal
    if signum and "ERROR" not in stderr:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"psql was killed ({name}) in the middle of the dump (exit {code})"
    if "ERROR" in stderr:
        return f"psql stopped at an SQL error (exit {code}): {errors}"
    return f"psql lost its session on the server (exit {code}): {errors}"


def _server_gone(db) -> str | None:
    """How the database server went away (a stopped container, no answer), or None when it answers."""
    stack, service = getattr(db, "stack", None), getattr(db, "service", None)

    def container_down() -> str | None:
        if stack is None or service is None:
            return None
        try:
            svc = stack.service(service)
        except Exception as exc:  # noqa: BLE001 - the container itself may be gone
            return f"the database service {service} is gone ({exc})"
        return None if svc.running else f"the database service {service} stopped (state {svc.state})"

    down = container_down()
    if down:
        return down
    try:
        db.ping()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure to answer is the answer
        deadline = time.monotonic() + 15  # a container shutting down: give it the time to say so
        while stack is not None and time.monotonic() < deadline:
            down = container_down()
            if down:
                return down
            time.sleep(0.5)
        return f"the database server stopped answering ({exc})"
