"""Videos back before the backend: the test stack's backend deletes the rows of videos it
cannot find when it starts (NODE_ENV not production), like Fovea's. A restore onto a volume
that lacks some videos must bring them back from `volume.target` first, or stop before
starting the backend; only a typed acceptance lets the backend delete them."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from test_restore import (  # noqa: F401
    fixture_dump,
    kill_runner_in_stop_step,
    place_dump,
    rows,
    run_cli,
    running,
    step_status,
)

from fovea_tui.config import save_settings
from fovea_tui.engine import restore as engine
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.infra import jobs
from fovea_tui.engine.volume.sync import run_sync

pytestmark = pytest.mark.docker

GONE = 3  # videos taken away from the volume


@pytest.fixture
def dev_stack(stack):
    """The stack with a backend that reconciles at start; the volume put back afterwards."""
    saved = {p.name: p.read_bytes() for p in stack.videos_dir.iterdir() if p.is_file()}
    stack.set_node_env("development")
    yield stack
    for name, data in saved.items():
        (stack.videos_dir / name).write_bytes(data)
    stack.set_node_env("production")


@pytest.fixture
def setup(dev_stack, fixture_dump, tmp_path):  # noqa: F811
    """Settings with a directory as volume.target holding a full copy of the volume, the dump
    placed, and GONE videos removed from the volume. Returns (settings, config, dump, gone)."""
    stack = dev_stack
    (tmp_path / "copy").mkdir()
    settings = stack.settings(tmp_path, volume={"target": str(tmp_path / "copy")})
    result = run_sync(settings)
    assert result.ok and result.uploaded >= len(stack.video_files), result.as_dict()
    dump = place_dump(fixture_dump, settings)
    gone = sorted(fn for fn, _, _ in stack.video_files)[:GONE]
    for name in gone:
        (stack.videos_dir / name).unlink()
    config = save_settings(settings, tmp_path / "fovea-tui.toml")
    return settings, config, dump, gone


def manifest_rows(dump: Path) -> dict[str, int]:
    return mf.read_for(dump).tables


def dependents_of(stack, names: list[str]) -> dict[str, int]:
    quoted = ",".join("'" + n + "'" for n in names)
    ids = f"(SELECT id FROM videos WHERE filename IN ({quoted}))"
    return {
        "annotations": int(stack.psql(f'SELECT count(*) FROM annotations WHERE "videoId" IN {ids}')),
        "summaries": int(stack.psql(f'SELECT count(*) FROM video_summaries WHERE "videoId" IN {ids}')),
        "claims": int(stack.psql(f'SELECT count(*) FROM claims c JOIN video_summaries s ON c."summaryId" = s.id '
                                 f'WHERE s."videoId" IN {ids}')),
    }


def video_sync(stack) -> dict:
    req = urllib.request.Request(stack.base_url + "/api/videos/sync", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_the_stand_in_deletes_rows_of_missing_videos_like_fovea(dev_stack):
    """What the restore guards against: a backend start with a file missing deletes its row,
    and the cascade takes its annotations, summaries and claims."""
    stack = dev_stack
    name = stack.video_files[0][0]
    deps = dependents_of(stack, [name])
    assert deps["annotations"] > 0 and deps["summaries"] > 0
    before = rows(stack, "annotations")
    (stack.videos_dir / name).unlink()
    stack.container("backend").restart(timeout=5)
    stack.wait_healthy(["backend"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and stack.psql(f"SELECT count(*) FROM videos WHERE filename = '{name}'").strip() != "0":
        time.sleep(0.2)
    assert stack.psql(f"SELECT count(*) FROM videos WHERE filename = '{name}'").strip() == "0"
    assert rows(stack, "annotations") == before - deps["annotations"]
    assert video_sync(stack) == {"deleted": 0}


def test_missing_videos_pulled_from_the_copy_before_the_backend(dev_stack, setup):
    stack = dev_stack
    settings, config, dump, gone = setup
    want = manifest_rows(dump)

    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    names = [s["name"] for s in result["steps"]]
    assert names.index("migrate") < names.index("videos") < names.index("start")
    assert step_status(result)["videos"] == "ok"
    assert f"pulled {GONE}" in result["steps"][names.index("videos")]["detail"]
    pre = next(c for c in result["preflight"] if c["name"] == "videos")
    assert pre["data"]["missing"] == GONE and pre["data"]["in_target"] == GONE, pre
    # the files are back, byte for byte, and nothing else was copied
    copy = Path(settings.volume.target)
    for name in gone:
        assert (stack.videos_dir / name).read_bytes() == (copy / name).read_bytes()
    # the backend started (and reconciled): every row the dump holds is still there
    assert running(stack, "backend")
    for table in ("videos", "annotations", "video_summaries", "claims"):
        assert rows(stack, table) == want[table], table
    assert video_sync(stack) == {"deleted": 0}
    assert result["videos"]["missing"] == 0 and "expected_deletions" not in result["videos"]


def test_missing_everywhere_holds_before_the_backend_then_accepted(dev_stack, setup):
    stack = dev_stack
    settings, config, dump, gone = setup
    for name in gone:
        (Path(settings.volume.target) / name).unlink()
    want = manifest_rows(dump)

    proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
    assert proc.returncode == 3, proc.stderr + proc.stdout
    result = json.loads(proc.stdout)
    assert result["status"] == "held"
    assert step_status(result)["videos"] == "failed"
    assert step_status(result)["start"] == "skipped"
    pre = next(c for c in result["preflight"] if c["name"] == "videos")
    assert pre["ok"] is False and pre["data"]["missing"] == GONE and pre["data"]["in_target"] == 0
    # the backend was not started; the database is the dump, whole
    assert not running(stack, "backend")
    for table in ("videos", "annotations", "video_summaries", "claims"):
        assert rows(stack, table) == want[table], table
    deps = dependents_of(stack, gone)
    message = result["message"]
    assert f"{GONE} of {want['videos']} referenced videos are missing" in message
    assert all(name in message for name in gone)
    assert (f"{deps['annotations']} annotations, {deps['summaries']} summaries and {deps['claims']} claims"
            in message)
    assert "--allow-missing-videos" in message and "--rollback" in message

    # the operator accepts the loss: the backend starts and deletes exactly what was named
    proc = run_cli(["--config", str(config), "restore", "--resume", result["job"], "--yes",
                    "--allow-missing-videos", "--json"])
    assert proc.returncode == 0, proc.stderr + proc.stdout
    done = json.loads(proc.stdout)
    assert done["videos"]["expected_deletions"] == {"videos": GONE, **deps}
    assert "expected to delete" in done["message"]
    assert running(stack, "backend")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and rows(stack, "videos") != want["videos"] - GONE:
        time.sleep(0.2)
    assert rows(stack, "videos") == want["videos"] - GONE
    assert rows(stack, "annotations") == want["annotations"] - deps["annotations"]
    assert rows(stack, "claims") == want["claims"] - deps["claims"]


def test_typed_acceptance_from_a_face(dev_stack, setup):
    """The wizard's path: the runner waits for the phrase; a wrong one holds, the right one goes on."""
    stack = dev_stack
    settings, config, dump, gone = setup
    for name in gone:
        (Path(settings.volume.target) / name).unlink()
    job_id = engine.start_restore(settings, str(dump), confirmed=False)

    def wait_for(awaiting: str) -> dict:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            data = jobs.load_job(settings, job_id)
            if data.get("awaiting") == awaiting:
                return data
            assert data.get("status") not in jobs.FINAL, data.get("message")
            time.sleep(0.2)
        raise AssertionError(f"the runner never waited for {awaiting}")

    wait_for("confirm")
    engine.confirm(settings, job_id, "fovea")
    data = wait_for("missing_videos")
    assert data["facts"]["videos"]["missing"] == GONE
    assert not running(stack, "backend")
    engine.accept_missing_videos(settings, job_id, engine.acceptance_phrase(GONE))
    final = jobs.follow(settings, job_id, lambda _d: None, timeout=180)
    result = engine.report(final)
    assert result["ok"], result["message"]
    assert "the operator typed 'delete 3'" in result["videos"]["accepted"]
    assert running(stack, "backend")


def test_video_check_reads_the_app_bucket(stack, fixture_dump, tmp_path, s3):  # noqa: F811
    """VIDEO_STORAGE_TYPE=s3: the rows are compared with the app's bucket, and what the copy
    (volume.target, on the same S3 server) holds of the missing ones is copied back into it."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3.endpoint_url, region_name="us-east-1")
    app, copy = s3.make_bucket(), s3.make_bucket()
    names = sorted(fn for fn, _, _ in stack.video_files)
    for name in names:
        data = (stack.videos_dir / name).read_bytes()
        client.put_object(Bucket=copy, Key=f"videos/{name}", Body=data)
        if name not in names[:2]:
            client.put_object(Bucket=app, Key=name, Body=data)
    original = stack.env_file.read_text()
    stack.env_file.write_text(original.replace("VIDEO_STORAGE_TYPE='local'", "VIDEO_STORAGE_TYPE='s3'")
                              .replace("S3_BUCKET=''", f"S3_BUCKET='{app}'")
                              .replace("S3_ENDPOINT=''", f"S3_ENDPOINT='{s3.endpoint_url}'"))
    try:
        settings = stack.settings(tmp_path, volume={"target": f"s3://{copy}/videos/"},
                                  s3={"endpoint_url": s3.endpoint_url, "region": "us-east-1"})
        dump = place_dump(fixture_dump, settings)
        job_id = engine.start_restore(settings, str(dump), confirmed=True, detach=False)
        result = engine.report({**engine.run_inline(settings, job_id), "alive": False})
    finally:
        stack.env_file.write_text(original)
    assert result["ok"], result["message"]
    pre = next(c for c in result["preflight"] if c["name"] == "videos")
    assert pre["data"]["missing"] == 2 and pre["data"]["in_target"] == 2 and pre["data"]["storage"] == f"s3://{app}/"
    assert result["videos"]["pulled"] == 2 and result["videos"]["missing"] == 0
    for name in names[:2]:
        assert client.get_object(Bucket=app, Key=name)["Body"].read() == (stack.videos_dir / name).read_bytes()


DISCARDING = ("20250501000000_discards", """\
-- AlterTable
ALTER TABLE "video_summaries" DROP COLUMN "visualAnalysis";
alter table annotations alter column confidence type real;
UPDATE "videos" SET "description" = '' WHERE "description" IS NULL;
ALTER TABLE "videos" ALTER COLUMN "description" SET NOT NULL, ALTER COLUMN "title" SET NOT NULL;
""")


def test_preflight_names_what_pending_migrations_discard(stack, fixture_dump, tmp_path):  # noqa: F811
    """Information for the operator, never a refusal: the restore applies the migration."""
    name, sql = DISCARDING
    folder = stack.app_dir / "prisma" / "migrations" / name
    folder.mkdir()
    (folder / "migration.sql").write_text(sql)
    nulls = int(stack.psql('SELECT count(*) FROM videos WHERE "description" IS NULL'))
    assert nulls > 0 and stack.psql('SELECT count(*) FROM videos WHERE "title" IS NULL').strip() == "0"
    try:
        settings = stack.settings(tmp_path)
        dump = place_dump(fixture_dump, settings)
        job_id = engine.start_restore(settings, str(dump), confirmed=True, detach=False)
        result = engine.report({**engine.run_inline(settings, job_id), "alive": False})
    finally:
        shutil.rmtree(folder)
    assert result["ok"], result["message"]
    check = next(c for c in result["preflight"] if c["name"] == "migrations")
    assert check["ok"] and not check["fatal"]
    assert [d["statement"] for d in check["data"]["discards"][name]] == [
        "DROP COLUMN video_summaries.visualAnalysis",
        "ALTER COLUMN annotations.confidence TYPE real",
        f"SET NOT NULL on videos.description ({nulls} NULLs in the dump)",
    ]  # title has no NULLs: nothing to discard
    assert f"{name}: DROP COLUMN video_summaries.visualAnalysis" in check["detail"]
    assert name in stack.psql("SELECT migration_name FROM _prisma_migrations").split()


def test_runner_killed_mid_restore_then_resumed(dev_stack, setup):
    """kill -9 while the runner stops the stack: the backend stays stopped (nothing can
    reconcile), and a resume pulls the files and starts it with every row intact."""
    stack = dev_stack
    settings, config, dump, gone = setup
    want = manifest_rows(dump)
    job_id = kill_runner_in_stop_step(stack, settings, dump.name)
    assert jobs.effective_status(jobs.load_job(settings, job_id)) == "interrupted"
    assert not running(stack, "backend")
    for table in ("videos", "annotations"):
        assert rows(stack, table) == want[table]

    proc = run_cli(["--config", str(config), "restore", "--resume", job_id, "--yes", "--json"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert step_status(result)["videos"] == "ok" and result["videos"]["pulled"] == GONE
    assert all((stack.videos_dir / name).is_file() for name in gone)
    assert running(stack, "backend")
    for table in ("videos", "annotations", "video_summaries", "claims"):
        assert rows(stack, table) == want[table], table
