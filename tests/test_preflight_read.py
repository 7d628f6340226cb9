"""Pre-flight reads the whole dump once (verify and the videos scan share the read) and shows
how far it got: bytes read of the file's size, in the restore job's step record that the CLI's
bar and the TUI's progress bar draw."""

from __future__ import annotations

import gzip
import os
import random

import pytest
from support.backup_history import make_settings

from fovea_tui.engine.backups.dumpscan import DumpScanner, scan_dump, verify_and_scan
from fovea_tui.engine.backups.stream_format import StreamInspector
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.restore.context import RestoreContext
from fovea_tui.engine.restore.preflight import check_dump, check_videos

# Rows that look like the markers the scan looks for, a block of another schema's `videos`,
# escaped tabs and backslashes, a short row, and a block that is not read between two that are.
SQL = (
    b"--\n-- PostgreSQL database dump\n--\n\nSET client_encoding = 'UTF8';\n\n"
    b'COPY public.annotations (id, "videoId", label) FROM stdin;\n'
    b"a1\tv1\tCOPY public.videos (id, filename) FROM stdin;\n"
    b"a2\tv1\t\\\\.\n"
    b"a3\tv2\t\\N\n"
    b"\\.\n\n"
    b"COPY audit.videos (id, filename, path) FROM stdin;\n"
    b"x1\tnot-this.mp4\t/videos/not-this.mp4\n"
    b"\\.\n\n"
    b'COPY public.videos (id, filename, path, "fileSize") FROM stdin;\n'
    b"v1\ta.mp4\t/videos/a.mp4\t10\n"
    b"v2\tb\\tc.mp4\t/videos/sub/b\\tc.mp4\t\\N\n"
    b"v3\tshort.mp4\n"
    b"v4\tback\\\\slash.mp4\t/videos/back\\\\slash.mp4\t3\n"
    b"\\.\n\n"
    b"COPY public.users (id, name) FROM stdin;\n"
    b"u1\tCOPY public.videos (id, filename) FROM stdin;\n"
    b"\\.\n\n"
    b"--\n-- PostgreSQL database dump complete\n--\n\n"
)
VIDEOS = [("a.mp4", "/videos/a.mp4"), ("b\tc.mp4", "/videos/sub/b\tc.mp4"), ("short.mp4", ""),
          ("back\\slash.mp4", "/videos/back\\slash.mp4")]
TABLES = {"annotations": 3, "audit.videos": 1, "videos": 4, "users": 1}


def chunkings(data: bytes):
    for size in (1, 2, 3, 5, 64, len(data)):
        yield [data[i:i + size] for i in range(0, len(data), size)]
    rng = random.Random(7)
    for _ in range(20):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 30)))
        yield [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def test_the_scan_finds_the_same_rows_at_any_chunk_boundary():
    for chunks in chunkings(SQL):
        scanner = DumpScanner({("annotations", "label"), ("videos", "fileSize")})
        for chunk in chunks:
            scanner.feed(chunk)
        assert scanner.scan.videos == VIDEOS, [len(c) for c in chunks]
        assert scanner.scan.nulls == {("annotations", "label"): 1, ("videos", "fileSize"): 1}
        assert scanner.tables == TABLES and scanner.complete  # still verify's inspector


def test_a_dump_without_videos_data_and_a_plain_inspector_agree(tmp_path):
    sql = SQL.replace(b"COPY public.videos (id, filename, path", b"COPY public.clips (id, filename, path")
    inspector, scanner = StreamInspector(), DumpScanner()
    inspector.feed(sql)
    scanner.feed(sql)
    assert scanner.scan.videos is None
    assert scanner.tables == inspector.tables and scanner.complete == inspector.complete


def incompressible_dump(path, rows: int) -> int:
    """A whole dump whose gzip file is several of verify's 1 MiB reads."""
    body = b"".join(b"r%d\t%s\n" % (i, os.urandom(48).hex().encode()) for i in range(rows))
    path.write_bytes(gzip.compress(SQL.replace(b"COPY public.users (id, name) FROM stdin;\n",
                                               b"COPY public.users (id, name) FROM stdin;\n" + body), 1))
    return path.stat().st_size


def test_progress_is_bytes_read_of_the_file_and_ends_full(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    size = incompressible_dump(path, 60_000)
    assert size > 3 << 20
    events = []
    result, scan = verify_and_scan(path, None, progress=events.append)
    assert result.status == "verified" and scan.videos == VIDEOS
    assert result.tables["users"] == 60_001
    assert events and all(e.total == size and e.unit == "bytes" for e in events)
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] == size


def test_a_corrupt_dump_is_refused_and_its_scan_is_not_trusted(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    incompressible_dump(path, 20_000)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result, _ = verify_and_scan(path, None)
    assert result.status == "corrupt"


@pytest.fixture
def restore_ctx(tmp_path):
    settings = make_settings(tmp_path)
    settings.backups_dir.mkdir(parents=True, exist_ok=True)
    path = settings.backups_dir / "fovea-20261101T020000Z.sql.gz"
    job_id = jobs.create_job(settings, "restore", {"dump": path.name, "database": "fovea"})
    directory = jobs.jobs_dir(settings)
    handle = jobs.JobHandle(directory, job_id, jobs.read_state(directory, job_id), settings)
    ctx = RestoreContext(handle)
    ctx.facts["dump_path"] = str(path)
    ctx.current = {"name": "preflight", "status": "running"}
    ctx.data.setdefault("steps", []).append(ctx.current)
    yield ctx, path, directory, job_id
    handle.close()


def test_preflight_reads_the_dump_once_and_the_step_shows_how_far(restore_ctx, monkeypatch):
    ctx, path, directory, job_id = restore_ctx
    size = incompressible_dump(path, 30_000)
    check = check_dump(ctx)
    assert check.ok, check.detail
    assert ctx.current["progress"] == {"done": size, "total": size, "unit": "bytes"}
    ctx.save()
    on_disk = jobs.read_state(directory, job_id)
    assert [s.get("progress") for s in on_disk["steps"] if s["name"] == "preflight"] == [
        {"done": size, "total": size, "unit": "bytes"}]
    # the videos check uses what that read found: the file is not read a second time
    path.write_bytes(b"not a dump any more")
    videos = check_videos(ctx)
    assert "4 videos the dump references" in videos.detail, videos.detail


def test_scan_dump_alone_still_reads_a_file(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    path.write_bytes(gzip.compress(SQL))
    scan = scan_dump(path, {("annotations", "label")})
    assert scan.videos == VIDEOS and scan.nulls == {("annotations", "label"): 1}
