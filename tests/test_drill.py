"""`fovea-tui drill`: a real backup and a real volume sync, restored into a scratch database.

One test per gap the drill exists to catch (no env copy off-site, a video missing off-site,
rows that differ from the manifest, a dump that does not restore), each failing with that
check named; and after every drill, pass or fail or Ctrl-C, no scratch database left.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_backup_helpers import direct_config, settings_and_config, write_env

from fovea_tui.cli.main import main
from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.pipeline import run_backup
from fovea_tui.engine.drill.report import latest_report
from fovea_tui.engine.drill.result import CHECK_ORDER, MANUAL_CHECKLIST
from fovea_tui.engine.drill.run import drill_status, run_drill, scratch_time
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops.status import collect_status
from fovea_tui.engine.progress import CancelToken
from fovea_tui.engine.volume.sync import run_sync
from fovea_tui.errors import Cancelled

# --------------------------------------------------------------------------- direct mode


@dataclass
class Install:
    db: object
    settings: Settings
    cfg: Path
    env_values: dict
    offsite: Path
    video_copy: Path
    volume: Path
    dump: Path

    def cli(self, *args: str) -> list[str]:
        return ["--config", str(self.cfg), *args]


def make_volume(volume: Path, rows: list[tuple[str, str, int]]) -> None:
    """Sparse files where the seeded `videos` rows say they are (STORAGE_PATH=/videos)."""
    for _filename, path, size in rows:
        target = volume / path.removeprefix("/videos/")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as fh:
            fh.truncate(size)


def video_rows(db) -> list[tuple[str, str, int]]:
    out = db.psql('SELECT filename, path, "fileSize" FROM videos ORDER BY filename')
    rows = []
    for line in out.splitlines():
        if line:
            filename, path, size = line.split("|")
            rows.append((filename, path, int(size)))
    return rows


def scratch_databases(psql) -> list[str]:
    out = psql("SELECT datname FROM pg_database WHERE datname LIKE 'fovea\\_drill\\_%' ORDER BY 1")
    return [line for line in out.split() if line]


@pytest.fixture
def install(fresh_direct_db, tmp_path, monkeypatch) -> Install:
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    env_file, values = write_env(tmp_path)
    volume = tmp_path / "videos"
    make_volume(volume, video_rows(fresh_direct_db))
    offsite, video_copy = tmp_path / "offsite", tmp_path / "video-copy"
    data = direct_config(tmp_path, fresh_direct_db.url, env_file, backups={"offsite": str(offsite)},
                         volume={"path": str(volume), "target": str(video_copy)}, drill={"interval_days": 30})
    settings, cfg = settings_and_config(tmp_path, data)
    video_copy.mkdir()
    backup = run_backup(settings)
    assert backup.offsite, "the backup reached the off-site directory"
    sync = run_sync(settings)
    assert sync.ok and sync.uploaded >= 10
    return Install(fresh_direct_db, settings, cfg, values, offsite, video_copy, volume, backup.path)


def cluster_psql(install: Install):
    return lambda sql: install.db.cluster.psql(sql, "postgres")


def run_json(capsys, install: Install, *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    code = main(install.cli("drill", "--json", *args))
    captured = capsys.readouterr()
    return code, json.loads(captured.out)


def checks_by_name(data: dict) -> dict[str, dict]:
    return {c["name"]: c for c in data["checks"]}


def test_direct_drill_passes_writes_reports_and_leaves_nothing(install, capsys):
    live_before = install.db.psql("SELECT count(*) FROM annotations")
    code, data = run_json(capsys, install)
    assert code == 0, data
    assert data["ok"] is True and data["dump"] == install.dump.name and data["source"] == "offsite"
    checks = checks_by_name(data)
    assert list(checks) == CHECK_ORDER
    assert all(c["ok"] and c["status"] == "ok" for c in data["checks"]), data["checks"]
    assert "SESSION_SECRET" in checks["env_copy"]["detail"] and "values not shown" in checks["env_copy"]["detail"]
    assert "all 10 referenced videos present" in checks["videos"]["detail"]
    assert data["rto_s"] > 0 and data["rpo_s"] >= 0
    assert scratch_time(data["scratch_database"]) is not None
    assert scratch_databases(cluster_psql(install)) == []
    assert install.db.psql("SELECT count(*) FROM annotations") == live_before

    # reports: JSON (what metrics and status read) and Markdown with the manual checklist
    report_json, report_md = Path(data["report"]["json"]), Path(data["report"]["markdown"])
    assert report_json.parent == install.settings.state_dir / "drills"
    assert json.loads(report_json.read_text())["ok"] is True
    md = report_md.read_text()
    for item in MANUAL_CHECKLIST:
        assert f"- [ ] {item}" in md
    assert "fovea-tui sync --pull" in md and f"fovea-tui restore {install.dump.name}" in md
    assert oct(report_json.stat().st_mode & 0o777) == "0o600"
    # nothing secret anywhere
    everything = json.dumps(data) + md
    for value in install.env_values.values():
        if len(value) > 6 and value not in ("postgres", "redis"):
            assert value not in everything
    assert install.db.password not in everything

    # status and metrics see it
    section = drill_status(install.settings)
    assert section["last"]["ok"] is True and section["ok"] is True and not section["alerts"]
    report = collect_status(install.settings)
    assert report.drill.last.dump == install.dump.name
    assert not [a for a in report.alerts if a.subject == "drill"]
    assert audit.read(install.settings, action="drill")[-1]["outcome"] == "ok"
    capsys.readouterr()
    assert main(install.cli("metrics")) == 0
    assert "fovea_drill_last_success 1" in capsys.readouterr().out


def test_text_mode_prints_the_result_then_the_guide(install, capsys):
    capsys.readouterr()
    assert main(install.cli("drill")) == 0
    out = capsys.readouterr().out
    assert "PASSED" in out and "recovery time (RTO)" in out
    guide_at = out.index("Full drill on a separate host")
    assert out.index("PASSED") < guide_at
    guide = out[guide_at:]
    assert "$ fovea-tui sync --pull" in guide
    assert f"$ fovea-tui restore {install.dump.name}" in guide
    env_copy = install.dump.name.replace(".sql.gz", ".env")
    assert f"cp {install.offsite / env_copy} {install.settings.install.env_file}" in guide
    assert "SESSION_SECRET" in guide and "DATABASE_URL" in guide

    # --guide alone runs nothing
    reports = sorted((install.settings.state_dir / "drills").glob("*.json"))
    assert main(install.cli("drill", "--guide")) == 0
    alone = capsys.readouterr().out
    assert "fovea-tui sync --pull" in alone and f"fovea-tui restore {install.dump.name}" in alone
    assert sorted((install.settings.state_dir / "drills").glob("*.json")) == reports


def test_no_env_copy_offsite_fails_env_copy(install, capsys):
    (install.offsite / install.dump.name.replace(".sql.gz", ".env")).unlink()
    code, data = run_json(capsys, install)
    assert code == 1 and data["ok"] is False
    assert data["failed"] == ["env_copy"]
    assert "no env copy" in checks_by_name(data)["env_copy"]["detail"]
    assert scratch_databases(cluster_psql(install)) == []
    section = drill_status(install.settings)
    assert section["last"]["ok"] is False
    assert any(a["level"] == "critical" and "env_copy" in a["message"] for a in section["alerts"])


def test_env_copy_without_session_secret_fails(install, capsys):
    env_copy = install.offsite / install.dump.name.replace(".sql.gz", ".env")
    env_copy.write_text("".join(line + "\n" for line in env_copy.read_text().splitlines()
                                if not line.startswith("SESSION_SECRET")))
    code, data = run_json(capsys, install)
    assert code == 1 and "env_copy" in data["failed"]
    detail = checks_by_name(data)["env_copy"]["detail"]
    assert "SESSION_SECRET" in detail and "missing" in detail


def test_video_missing_offsite_fails_videos(install, capsys):
    victim = sorted(p for p in install.video_copy.rglob("*.mp4"))[3]
    key = victim.relative_to(install.video_copy).as_posix()
    victim.unlink()
    code, data = run_json(capsys, install)
    assert code == 1 and data["failed"] == ["videos"]
    detail = checks_by_name(data)["videos"]["detail"]
    assert "1 of 10 referenced videos missing" in detail and key in detail
    assert scratch_databases(cluster_psql(install)) == []


def test_volume_never_backed_up_fails_videos(install, capsys, tmp_path):
    data = direct_config(tmp_path, install.db.url, Path(install.settings.install.env_file),
                         backups={"offsite": str(install.offsite)}, volume={"path": str(install.volume)})
    _, cfg = settings_and_config(tmp_path, data)
    capsys.readouterr()
    assert main(["--config", str(cfg), "drill", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert "videos" in out["failed"] and "volume.target is not set" in checks_by_name(out)["videos"]["detail"]


def test_rows_differing_from_the_manifest_fail_rows(install, capsys):
    for directory in (install.offsite, install.dump.parent):
        path = directory / (install.dump.name + mf.MANIFEST_SUFFIX)
        manifest = json.loads(path.read_text())
        manifest["tables"]["annotations"] += 5
        path.write_text(json.dumps(manifest, indent=2))
    code, data = run_json(capsys, install)
    assert code == 1 and data["failed"] == ["rows"]
    detail = checks_by_name(data)["rows"]["detail"]
    assert "annotations" in detail and "manifest says" in detail
    assert data["rto_s"] is None  # never a verified database
    assert scratch_databases(cluster_psql(install)) == []


def _crafted_broken_dump(install: Install) -> str:
    """A newer dump that is a whole gzip stream ending with pg_dump's completion line and
    matching its manifest, but whose SQL fails half-way."""
    sql = gzip.decompress(install.dump.read_bytes()).decode()
    marker = "-- PostgreSQL database dump complete"
    at = sql.rindex(marker)
    sql = sql[:at] + "INSERT INTO public.no_such_table VALUES (1);\n\n" + sql[at:]
    data = gzip.compress(sql.encode())
    created = datetime.now(UTC) + timedelta(minutes=5)
    name = mf.dump_name(created)
    manifest = json.loads(mf.manifest_path(install.dump).read_text())
    manifest.update(dump=name, created_at=created.isoformat(), size=len(data),
                    sha256=hashlib.sha256(data).hexdigest())
    env = install.dump.with_name(install.dump.name.replace(".sql.gz", ".env")).read_bytes()
    for directory in (install.offsite, install.dump.parent):
        (directory / name).write_bytes(data)
        (directory / (name + mf.MANIFEST_SUFFIX)).write_text(json.dumps(manifest))
        (directory / name.replace(".sql.gz", ".env")).write_bytes(env)
    return name


def test_a_dump_that_does_not_restore_fails_restore(install, capsys):
    name = _crafted_broken_dump(install)
    code, data = run_json(capsys, install)
    assert code == 1 and data["dump"] == name
    checks = checks_by_name(data)
    assert checks["dump"]["ok"] is True  # verified by checksum and completion line
    assert checks["restore"]["ok"] is False and "no_such_table" in checks["restore"]["detail"]
    assert checks["rows"]["status"] == "skipped" and checks["videos"]["status"] == "skipped"
    assert checks["cleanup"]["ok"] is True
    assert scratch_databases(cluster_psql(install)) == []
    assert install.db.psql("SELECT to_regclass('public.no_such_table')").strip() == ""


def test_cancel_drops_the_scratch_database_and_old_leftovers(install):
    psql = cluster_psql(install)
    psql("CREATE DATABASE fovea_drill_20200101_000000")
    recent = "fovea_drill_" + datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    psql(f"CREATE DATABASE {recent}")
    try:
        cancel = CancelToken()
        seen = []

        def on_check(check):
            seen.append(check.name)
            if check.name == "restore":
                assert len(scratch_databases(psql)) == 2  # the recent leftover and ours
                cancel.cancel("interrupted by signal SIGINT")

        with pytest.raises(Cancelled):
            run_drill(install.settings, cancel=cancel, on_check=on_check,
                      now=datetime.now(UTC) + timedelta(seconds=2))
        assert seen == ["dump", "restore"]
        # ours and the day-old leftover are gone; a younger one may be another drill's
        assert scratch_databases(psql) == [recent]
        assert latest_report(install.settings) is None
        assert audit.read(install.settings, action="drill")[-1]["outcome"] == "cancelled"
    finally:
        psql(f"DROP DATABASE IF EXISTS {recent}")


def test_no_dump_is_refused_and_bad_config_is_exit_2(tmp_path, capsys):
    env_file, _ = write_env(tmp_path)
    (tmp_path / "empty").mkdir()
    data = direct_config(tmp_path, "postgresql://fovea@127.0.0.1:9/fovea", env_file,
                         backups={"offsite": str(tmp_path / "empty")})
    _, cfg = settings_and_config(tmp_path, data)
    capsys.readouterr()
    assert main(["--config", str(cfg), "drill", "--json"]) == 3
    assert "no dump" in json.loads(capsys.readouterr().out)["error"]
    data["backups"]["offsite"] = "ftp://example/backups"
    _, cfg = settings_and_config(tmp_path, data)
    assert main(["--config", str(cfg), "drill", "--json"]) == 2
    assert "config key backups.offsite: unsupported URL scheme" in json.loads(capsys.readouterr().out)["error"]


# --------------------------------------------------------------------------- status, unit


def _report(settings: Settings, when: datetime, ok: bool, failed=()) -> None:
    directory = settings.state_dir / "drills"
    directory.mkdir(parents=True, exist_ok=True)
    checks = [{"name": n, "ok": n not in failed, "status": "failed" if n in failed else "ok", "detail": ""}
              for n in CHECK_ORDER]
    (directory / f"drill-{(when - timedelta(seconds=20)).strftime('%Y%m%dT%H%M%SZ')}.json").write_text(json.dumps(
        {"ok": ok, "dump": "fovea-20260101T020000Z.sql.gz", "rto_s": 12.5, "rpo_s": 3600, "checks": checks,
         "failed": list(failed), "started_at": (when - timedelta(seconds=20)).isoformat(),
         "finished_at": when.isoformat()}))


def test_status_alerts_never_failed_overdue(tmp_path):
    settings = Settings()
    settings.backups.dir = str(tmp_path / "backups")
    settings.drill.interval_days = 30
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)

    section = drill_status(settings, now)
    assert section["last"] is None and [a["message"] for a in section["alerts"]] == [
        "no restore drill on record: run `fovea-tui drill`"]

    _report(settings, now - timedelta(days=40), ok=True)
    section = drill_status(settings, now)
    assert section["overdue"] is True and section["last"]["ok"] is True
    assert [a["level"] for a in section["alerts"]] == ["warning"] and "40 days ago" in section["alerts"][0]["message"]

    _report(settings, now - timedelta(days=2), ok=False, failed=("videos",))
    section = drill_status(settings, now)
    assert section["overdue"] is False and section["last"]["failed"] == ["videos"]
    assert [a["level"] for a in section["alerts"]] == ["critical"] and "videos" in section["alerts"][0]["message"]
    assert "FAILED (videos)" in section["summary"]

    _report(settings, now - timedelta(days=1), ok=True)
    section = drill_status(settings, now)
    assert section["ok"] is True and section["alerts"] == [] and "passed" in section["summary"]
    assert section["due_at"].startswith("2026-06-30")


# --------------------------------------------------------------------------- docker mode


@pytest.mark.docker
@pytest.mark.s3
def test_docker_drill_passes_with_s3_offsite_and_video_copy(stack, tmp_path, s3, capsys):
    bucket = s3.make_bucket()
    settings = stack.settings(tmp_path, backups={"offsite": f"s3://{bucket}/db/"},
                              volume={"target": f"s3://{bucket}/videos/"},
                              s3={"endpoint_url": s3.endpoint_url, "region": s3.region})
    backup = run_backup(settings)
    assert backup.offsite
    assert run_sync(settings).ok
    live_before = stack.psql("SELECT count(*) FROM annotations").strip()
    running_before = {c.name for c in stack.client.containers.list(
        filters={"label": f"com.docker.compose.project={stack.project}"})}

    result = run_drill(settings)
    assert result.ok, [c.as_dict() for c in result.checks]
    assert result.dump == backup.name and result.source == "offsite"
    assert result.check("videos").extra["referenced"] == len(stack.video_files)
    assert scratch_databases(lambda sql: stack.psql(sql, db="postgres")) == []
    assert stack.psql("SELECT count(*) FROM annotations").strip() == live_before
    running_after = {c.name for c in stack.client.containers.list(
        filters={"label": f"com.docker.compose.project={stack.project}"})}
    assert running_after == running_before  # nothing stopped

    # a video deleted from the bucket is caught, and the scratch database still goes
    client = s3.client()
    key = f"videos/{stack.video_files[0][1]}"
    client.delete_object(Bucket=bucket, Key=key)
    result = run_drill(settings, now=datetime.now(UTC) + timedelta(seconds=2))
    assert result.failed == ["videos"] and stack.video_files[0][1] in result.check("videos").detail
    assert scratch_databases(lambda sql: stack.psql(sql, db="postgres")) == []


def test_a_failed_drill_pings_its_check_and_alerts_a_person(install, capsys):
    """The ping comes from the engine, so a drill run from the TUI pings as one from cron does."""
    from support.receivers import HttpReceiver

    from fovea_tui.config import load_file, save_settings

    receiver = HttpReceiver()
    try:
        settings = load_file(install.cfg)
        settings.notify.urls = [receiver.url("/apprise/drill-channel-token", scheme="json")]
        settings.monitor.drill_url = receiver.url("/ping/drill-check-0003")
        save_settings(settings, install.cfg)
        (install.offsite / install.dump.name.replace(".sql.gz", ".env")).unlink()
        code, data = run_json(capsys, install)
        assert code == 1
        paths = [r.path for r in receiver.requests]
        again_code, _ = run_json(capsys, install)  # the same day: the alert is not sent twice
        assert again_code == 1
    finally:
        receiver.close()
    assert paths == ["/ping/drill-check-0003/start", "/ping/drill-check-0003/1", "/apprise/drill-channel-token"]
    assert "FAILED: env_copy" in receiver.requests[1].text
    alert = json.loads(receiver.requests[2].body)
    assert "CRITICAL: restore drill of " in alert["title"] and "failed: env_copy" in alert["title"]
    assert "Next: run `fovea-tui drill`" in alert["message"]
    assert [p["event"] for p in data["monitor"]] == ["start", "exit"]
    assert [r.path for r in receiver.requests][3:] == ["/ping/drill-check-0003/start", "/ping/drill-check-0003/1"]


def test_a_dump_rewritten_after_its_check_fails_the_restore_check(install, capsys):
    """The drill proves that the bytes it verified restore: a dump rewritten between its
    check and its load (its mtime put back) fails the restore check, it does not pass it."""
    import os

    def on_check(check) -> None:
        if check.name == "dump":  # the copy the drill fetched from off-site, in its own folder
            fetched, = install.settings.state_dir.glob(f"drill-*/{install.dump.name}")
            st = fetched.stat()
            sql = gzip.decompress(fetched.read_bytes())
            tail = b"\n-- PostgreSQL database dump complete\n"
            fetched.write_bytes(gzip.compress(sql.replace(tail, b"\nSELECT 1;\n" + tail)))
            os.utime(fetched, ns=(st.st_atime_ns, st.st_mtime_ns))

    result = run_drill(install.settings, on_check=on_check)
    checks = {c.name: c for c in result.checks}
    assert checks["dump"].ok and not result.ok
    assert not checks["restore"].ok and "changed since it was verified" in checks["restore"].detail
    assert scratch_databases(cluster_psql(install)) == []
