"""The restore loader's reading of SQL, without a server: where statements end (as psql's
lexer decides), which COPY lines start data, and which post-data statements may move to a
parallel session. The loads themselves are in test_restore_parallel.py."""

from __future__ import annotations

import pytest

from fovea_tui.engine.restore.loader import Dealer, SqlScanner, Statement


def statements(sql: str, pieces: int = 1) -> list[Statement]:
    """The statements of `sql` fed in `pieces` cuts (any boundary must give the same)."""
    out: list[Statement] = []
    scanner = SqlScanner(out.append)
    data = sql.encode()
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        scanner.feed(data[i:i + step])
    scanner.finish()
    return out


TRICKY = """SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $_$
BEGIN
  -- a comment; with a semicolon
  RETURN 'it''s; $_ not the end';
END $_$;
COMMENT ON TABLE t IS E'it\\'s
COPY public.t (a) FROM stdin;
\\.
';
/* a block /* nested; */ comment */ SELECT 1;
SELECT "odd;""name" FROM t WHERE a = $1;
SELECT a$b$ FROM t;
\\connect other
SELECT 1; SELECT 2;
-- only a comment
CREATE INDEX i ON public.t USING btree (a) WHERE (b <> 'x;y');
"""


@pytest.mark.parametrize("pieces", [1, 7, 500])
def test_statements_end_where_psql_ends_them(pieces):
    got = [(s.line, s.kind, s.ends, s.text.decode().splitlines()[0][:20]) for s in statements(TRICKY, pieces)]
    assert got == [
        (1, "sql", 1, "SET client_encoding "),
        (2, "sql", 1, "SELECT pg_catalog.se"),
        (3, "sql", 1, "CREATE FUNCTION f() "),
        (8, "sql", 1, "COMMENT ON TABLE t I"),
        (12, "sql", 1, "/* a block /* nested"),
        (13, "sql", 1, 'SELECT "odd;""name" '),
        (14, "sql", 1, "SELECT a$b$ FROM t;"),
        (15, "meta", 0, "\\connect other"),
        (16, "sql", 2, "SELECT 1; SELECT 2;"),
        (17, "trivia", 0, "-- only a comment"),
        (18, "sql", 1, "CREATE INDEX i ON pu"),
    ]


class _Session:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.lines = 0
        self.queued = self.written = 0
        self.rows_before: list = []
        self.starts: list[int] = []
        self.dump_lines: list[int] = []

    waiting = 0

    def send(self, data: bytes, dump_line: int | None = None) -> None:
        self.sent.append(data)

    def send_parts(self, parts, lines, marks=()) -> None:
        self.sent.append(b"".join(bytes(p) for p in parts))
        self.lines += lines

    def after(self, other) -> None:
        pass

    def end(self) -> None:
        pass


class _Loader:
    n = 2


def deal(sql: str) -> tuple[Dealer, _Session, list[_Session]]:
    predata, data = _Session(), [_Session(), _Session()]
    dealer = Dealer(_Loader(), predata, data)  # type: ignore[arg-type]
    raw = sql.encode()
    for i in range(0, len(raw), 5):  # cut everywhere: in headers, rows and end lines
        dealer.feed(raw[i:i + 5])
    dealer.finish()
    return dealer, predata, data


DUMP = TRICKY + """COPY public.t (a, b) FROM stdin;
1\tone
2\ttwo\\nlines
\\.
SELECT pg_catalog.setval('public.s', 5, true);
ALTER TABLE ONLY public.t
    ADD CONSTRAINT t_pkey PRIMARY KEY (a);
CREATE UNIQUE INDEX "u;x" ON public."T t" USING btree (b);
-- Name: c c_t_fkey; Type: FK CONSTRAINT; Schema: public; Owner: fovea
ALTER TABLE ONLY public.c
    ADD CONSTRAINT c_t_fkey FOREIGN KEY (t) REFERENCES public.t(a) ON DELETE CASCADE;
"""


def test_only_copy_lines_at_a_statement_boundary_start_data():
    dealer, predata, data = deal(DUMP)
    schema = b"".join(predata.sent).decode()
    assert schema == TRICKY  # the look-alike COPY line and `\\.` stayed in the comment's string
    rows = b"".join(b"".join(s.sent) for s in data).decode()
    assert rows.count("COPY public.t (a, b) FROM stdin;\n") >= 1
    assert "FROM stdin;\n1\tone\n2\ttwo\\nlines\n\\.\n" in rows  # a chunk: COPY line, whole rows, end line
    assert dealer.tables == {"t": 2}


def test_indexes_and_keys_move_the_rest_stays_in_order():
    dealer, _, _ = deal(DUMP)
    plans, rest, checks = dealer.plan()
    moved = sorted(s.text.decode().split()[-1] for plan in plans for s, _ in plan)
    assert moved == ["(a);", "(b);"]
    assert [s.text.decode().split("\n")[0] for s in rest if s.kind == "sql"] == [
        "SELECT pg_catalog.setval('public.s', 5, true);", "ALTER TABLE ONLY public.c"]
    assert dealer.serial_why == ""
    # the foreign key is added NOT VALID in its place, and checked apart, on its dump line
    key = DUMP[DUMP.index("ALTER TABLE ONLY public.c"):]
    assert rest[-1].text.decode() == key.replace("CASCADE;", "CASCADE NOT VALID;")
    [[(check, settings)]] = checks
    assert check.text == b"ALTER TABLE ONLY public.c VALIDATE CONSTRAINT c_t_fkey;\n"
    assert check.line == rest[-1].line == DUMP[:DUMP.index("ALTER TABLE ONLY public.c")].count("\n") + 1
    assert [name for name, _ in settings] == [name for name, _ in dealer.post[-1][1]]


@pytest.mark.parametrize("why, edit", [
    ("already NOT VALID in the dump: its rows were never checked", lambda d: d.replace("CASCADE;", "CASCADE NOT VALID;")),
    ("named again later in post-data", lambda d: d + "COMMENT ON CONSTRAINT c_t_fkey ON public.c IS 'x';\n"),
    ("named again in upper case (the same name, unquoted)",
     lambda d: d + "ALTER TABLE public.c RENAME CONSTRAINT C_T_FKEY TO k;\n"),
    ("on a partition", lambda d: d.replace("COPY public.t", "CREATE TABLE public.c PARTITION OF public.p "
                                           "FOR VALUES IN (1);\nCOPY public.t")),
])
def test_a_foreign_key_stays_as_the_dump_has_it(why, edit):
    dump = edit(DUMP)
    dealer, _, _ = deal(dump)
    plans, rest, checks = dealer.plan()
    assert checks == [] and dealer.serial_why == "" and len(plans) == 2, why
    assert b"ALTER TABLE ONLY public.c\n    ADD CONSTRAINT c_t_fkey" in b"".join(s.text for s in rest)
    assert b"".join(s.text for s in rest).count(b"NOT VALID") == dump.count("NOT VALID")


@pytest.mark.parametrize("before", ["SET ROLE other;\n", "\\connect other\n", "DROP INDEX public.x;\n",
                                    "CREATE INDEX a ON public.t USING btree (a); CREATE INDEX b ON public.t USING btree (b);\n"])
def test_anything_that_could_change_an_index_keeps_post_data_in_one_session(before):
    cut = DUMP.index("ALTER TABLE ONLY public.t")
    dealer, _, _ = deal(DUMP[:cut] + before + DUMP[cut:])
    plans, rest, checks = dealer.plan()
    assert plans == [] and checks == [] and dealer.serial_why
    assert b"REFERENCES public.t(a) ON DELETE CASCADE;\n" in b"".join(s.text for s in rest)  # as the dump has it
    assert sum(s.text.count(b"INDEX") for s in rest) >= 1


def test_a_truncated_block_fails():
    from fovea_tui.errors import OperationFailed

    with pytest.raises(OperationFailed, match="ends in the middle of the rows of table t"):
        deal(DUMP[:DUMP.index("2\ttwo")])


def test_a_key_name_is_counted_quoted_or_not_in_any_case():
    from collections import Counter

    from fovea_tui.engine.restore.loader import _WORD, _named_once

    def once(name: bytes, text: bytes) -> bool:
        text = text.lower()
        return _named_once(name, Counter(_WORD.findall(text)), text)

    assert once(b'"Fk_A"', b'ADD CONSTRAINT "Fk_A" FOREIGN KEY')
    assert not once(b'"Fk_A"', b'ADD CONSTRAINT "Fk_A" FOREIGN KEY; COMMENT ON CONSTRAINT fk_a')
    assert once(b"fk_a", b"ADD CONSTRAINT fk_a FOREIGN KEY; CREATE INDEX fk_a_2")  # another name: not it
    assert once(b'"a key"', b'ADD CONSTRAINT "a key" FOREIGN KEY')  # not a word: looked for as it stands
    assert not once(b'"a key"', b'ADD CONSTRAINT "a key" FOREIGN KEY; DROP CONSTRAINT "A KEY"')
