"""Pre-flight names what pending migrations drop or rewrite (information, never a refusal),
and reads the dump's videos and NULL counts without restoring it."""

from __future__ import annotations

import gzip

from fovea_tui.engine.backups.dumpscan import copy_field, scan_dump, unquote_ident
from fovea_tui.engine.restore.preflight import destructive_statements
from fovea_tui.engine.volume.storage import video_key
from fovea_tui.sandbox import NEXT_MIGRATION, SCHEMA_MIGRATIONS


def described(sql: str) -> list[str]:
    return [d.describe() for d in destructive_statements(sql)]


def test_fovea_style_summary_rewrite_is_named():
    """Prisma's drop-and-recreate of video_summaries.summary (migration 20251104174027)."""
    sql = ('-- AlterTable\nALTER TABLE "video_summaries" DROP COLUMN "summary",\n'
           'ADD COLUMN     "summary" JSONB NOT NULL DEFAULT \'{}\';\n')
    assert described(sql) == ["DROP COLUMN video_summaries.summary"]


def test_quoted_and_unquoted_identifiers_alike():
    sql = """
    alter table Claims drop column IF EXISTS Old_Text cascade;
    ALTER TABLE ONLY public."MixedCase" ALTER COLUMN "Score" SET DATA TYPE integer USING "Score"::integer;
    ALTER TABLE IF EXISTS public.videos ALTER "title" TYPE varchar(80), ALTER COLUMN duration SET NOT NULL;
    DROP TABLE IF EXISTS "import_history", public.world_state CASCADE;
    /* DROP TABLE commented_out; */ -- DROP TABLE also_commented;
    ALTER TABLE "a" DROP CONSTRAINT "a_fkey";
    INSERT INTO t VALUES ('DROP TABLE in a string; ALTER TABLE x DROP COLUMN y');
    """
    assert described(sql) == [
        "DROP COLUMN claims.old_text",
        "ALTER COLUMN MixedCase.Score TYPE integer",
        "ALTER COLUMN videos.title TYPE varchar(80)",
        "SET NOT NULL on videos.duration",
        "DROP TABLE import_history",
        "DROP TABLE world_state",
    ]


def test_additive_migrations_discard_nothing():
    for _, sql in SCHEMA_MIGRATIONS + [NEXT_MIGRATION]:
        assert described(sql) == []


def test_dump_scan_reads_videos_and_nulls(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    path.write_bytes(gzip.compress(
        b'COPY public.videos (id, filename, path, "fileSize") FROM stdin;\n'
        b"v1\ta.mp4\t/videos/a.mp4\t10\n"
        b"v2\tb\\tc.mp4\t/videos/sub/b\\tc.mp4\t\\N\n"
        b"\\.\n"
        b'COPY public."video_summaries" (id, "visualAnalysis") FROM stdin;\n'
        b"s1\t\\N\ns2\tseen\ns3\t\\N\n\\.\n"))
    scan = scan_dump(path, {("video_summaries", "visualAnalysis")})
    assert scan.videos == [("a.mp4", "/videos/a.mp4"), ("b\tc.mp4", "/videos/sub/b\tc.mp4")]
    assert scan.nulls == {("video_summaries", "visualAnalysis"): 2}
    assert video_key("/videos/sub/b\tc.mp4", "b\tc.mp4", "/videos") == "sub/b\tc.mp4"
    assert copy_field("\\N") is None and copy_field("a\\\\b") == "a\\b"
    assert unquote_ident('"A""b"') == 'A"b' and unquote_ident("AbC") == "abc"


def test_dump_without_videos_data(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    path.write_bytes(gzip.compress(b"CREATE TABLE x (id int);\n"))
    assert scan_dump(path).videos is None


def test_hostile_video_paths_are_never_found_outside_the_volume(tmp_path):
    from fovea_tui.engine.volume.storage import VideoRow, VideoStorage, missing_from

    volume = tmp_path / "videos"
    volume.mkdir()
    (tmp_path / "secret.mp4").write_bytes(b"x")
    (volume / "ok.mp4").write_bytes(b"y")
    rows = [VideoRow("1", "ok.mp4", "ok.mp4", 1),
            VideoRow("2", "secret.mp4", video_key("/videos/../secret.mp4", "", "/videos"), 1)]
    assert rows[1].key == "../secret.mp4"
    assert [r.id for r in missing_from(VideoStorage("local", volume), rows)] == ["2"]
