"""The dump-stream inspector: rows per COPY block and the completion line, whatever the
chunk boundaries (a pure function of the bytes, so hypothesis drives the boundaries)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fovea_tui.engine.backups.stream_format import StreamInspector, copy_table_name, ends_complete

DUMP = (
    b"--\n-- PostgreSQL database dump\n--\n\nSET statement_timeout = 0;\n"
    b"CREATE TABLE public.users (id text);\n"
    b"-- a comment mentioning COPY public.fake (x) FROM stdin;\n"
    b"COPY public.users (id, \"createdAt\") FROM stdin;\n"
    b"u1\t2025-01-01\nu2\t\\\\.\nu3\tCOPY public.x (a) FROM stdin;\n\\.\n\n"
    b"COPY public.\"Weird Name\" (a) FROM stdin;\n\\.\n\n"
    b"COPY audit.events (a) FROM stdin;\n" + b"".join(b"row %d\t" % i + b"x" * (i % 50) + b"\n" for i in range(300))
    + b"\\.\n\n"
    b"COPY public._prisma_migrations (id) FROM stdin;\nm1\nm2\n\\.\n\n"
    b"--\n-- PostgreSQL database dump complete\n--\n\n"
)
EXPECTED = {"users": 3, "Weird Name": 0, "audit.events": 300, "_prisma_migrations": 2}


def _feed(data: bytes, cuts: list[int]) -> StreamInspector:
    inspector = StreamInspector()
    points = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    start = 0
    for point in points:
        inspector.feed(data[start:point])
        start = point
    return inspector


def test_whole_stream():
    inspector = _feed(DUMP, [])
    assert inspector.tables == EXPECTED and inspector.complete


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(DUMP)), max_size=40))
def test_any_chunk_boundaries(cuts):
    inspector = _feed(DUMP, cuts)
    assert inspector.tables == EXPECTED
    assert inspector.complete


def test_byte_by_byte():
    inspector = _feed(DUMP, list(range(len(DUMP))))
    assert inspector.tables == EXPECTED and inspector.complete


def test_cut_streams_are_incomplete():
    for cut in (len(DUMP) // 3, len(DUMP) - 10, len(DUMP) - 40):
        assert not _feed(DUMP[:cut], []).complete


def test_completion_line_variants():
    assert ends_complete(b"x\n--\n-- PostgreSQL database dump complete\n--\n\n")
    # pg_dump 17.6 / 16.10 and later end with \unrestrict after the line
    assert ends_complete(b"--\n-- PostgreSQL database dump complete\n--\n\n\\unrestrict abc123\n\n")
    assert not ends_complete(b"--\n-- PostgreSQL database dump complete\n--\n\nCREATE TABLE t ();\n")
    assert not ends_complete(b"-- PostgreSQL database dump")
    assert not ends_complete(b"SELECT '-- PostgreSQL database dump complete';\n")


def test_copy_table_names():
    assert copy_table_name(b"COPY public.annotations (id, \"videoId\") FROM stdin;") == "annotations"
    assert copy_table_name(b'COPY public."a ""q"" b" (x) FROM stdin;') == 'a "q" b'
    assert copy_table_name(b"COPY other.t (x) FROM stdin;") == "other.t"
