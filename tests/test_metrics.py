"""`fovea-tui metrics`: parsed with prometheus_client's own parser, carrying the figures of a
real backup (direct-mode PostgreSQL), a real sync, a nightly run; and served over 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fovea_tui.cli.main import main
from fovea_tui.config import render_toml, settings_from_dict
from fovea_tui.engine.ops import metrics
from fovea_tui.engine.ops.nightly import run_nightly

REPO = Path(__file__).resolve().parents[1]


def parse(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} from the exposition text."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_config(tmp_path: Path, db_url: str = "postgresql://u:p@127.0.0.1:1/x") -> tuple:
    videos = tmp_path / "videos"
    videos.mkdir(exist_ok=True)
    for i in range(3):
        (videos / f"v{i}.mp4").write_bytes(os.urandom(1000 * (i + 1)))
    (tmp_path / "mirror").mkdir(exist_ok=True)
    env = tmp_path / ".env"
    env.write_text(f"DATABASE_URL={db_url}\nSESSION_SECRET=metrics-session-secret\n")
    env.chmod(0o600)
    settings = settings_from_dict({
        "install": {"env_file": str(env)},
        "database": {"mode": "direct", "url": db_url},
        "backups": {"dir": str(tmp_path / "backups")},
        "volume": {"path": str(videos), "target": str(tmp_path / "mirror")},
        "drill": {"interval_days": 30},
    })
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text(render_toml(settings))
    return settings, str(cfg)


def test_metrics_carry_the_figures_of_a_real_nightly_run(fresh_direct_db, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    settings, cfg = make_config(tmp_path, fresh_direct_db.url)
    result = run_nightly(settings)
    assert result.ok, result.summary()
    assert main(["--config", cfg, "verify"]) == 0
    # a drill report where the drill engineer's code puts them
    drills = settings.state_dir / "drills"
    drills.mkdir(parents=True)
    (drills / "drill-20260101T000000Z.json").write_text(json.dumps(
        {"ok": True, "dump": "x", "rto_s": 42.5, "checks": [{"name": "a", "ok": True}],
         "finished_at": "2026-01-01T00:10:00+00:00"}))
    capsys.readouterr()

    assert main(["--config", cfg, "metrics"]) == 0
    text = capsys.readouterr().out
    s = parse(text)
    backup = result.step("backup").result
    manifest = json.loads(Path(backup["manifest"]).read_text())
    assert value(s, "fovea_backup_last_size_bytes") == backup["size"] == manifest["size"]
    assert value(s, "fovea_backup_last_duration_seconds") == pytest.approx(manifest["duration_s"])
    created = datetime.fromisoformat(manifest["created_at"].replace("Z", "+00:00")).timestamp()
    assert value(s, "fovea_backup_last_timestamp_seconds") == pytest.approx(created, abs=1)
    assert value(s, "fovea_backup_last_success") == 1
    assert value(s, "fovea_backup_last_rows") == sum(manifest["tables"].values())
    assert value(s, "fovea_dumps", status="verified") == 1
    assert value(s, "fovea_dumps", status="corrupt") == 0
    assert 0 <= value(s, "fovea_newest_verified_dump_age_seconds") < 600
    sync = result.step("sync").result
    assert value(s, "fovea_sync_last_files") == sync["uploaded"] == 3
    assert value(s, "fovea_sync_last_bytes") == sync["bytes"] == 6000
    assert value(s, "fovea_sync_last_timestamp_seconds") == pytest.approx(time.time(), abs=600)
    assert value(s, "fovea_sync_last_full_listing_timestamp_seconds") == pytest.approx(time.time(), abs=600)
    assert value(s, "fovea_drill_last_success") == 1
    assert value(s, "fovea_drill_last_timestamp_seconds") == datetime(2026, 1, 1, 0, 10, tzinfo=UTC).timestamp()
    assert value(s, "fovea_drill_last_rto_seconds") == 42.5
    assert value(s, "fovea_drill_interval_seconds") == 30 * 86400
    assert value(s, "fovea_nightly_last_success") == 1
    assert value(s, "fovea_nightly_last_step_success", step="prune", status="ok") == 1
    for source in metrics.SOURCES:
        assert value(s, "fovea_metrics_source_up", source=source) == 1
    assert fresh_direct_db.password not in text


def test_a_failed_backup_and_a_corrupt_dump_show(tmp_path, capsys):
    settings, cfg = make_config(tmp_path)  # the database port is closed
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "fovea-20260101T000000Z.sql.gz").write_bytes(b"")  # 0 bytes: corrupt
    (backups / "fovea-2026-01-02.sql.gz").write_bytes(b"\x1f\x8b legacy")  # unverified
    assert main(["--config", cfg, "run-nightly"]) == 1
    capsys.readouterr()
    assert main(["--config", cfg, "metrics"]) == 0
    s = parse(capsys.readouterr().out)
    assert value(s, "fovea_backup_last_success") == 0
    assert value(s, "fovea_nightly_last_success") == 0
    assert value(s, "fovea_dumps", status="corrupt") == 1
    assert value(s, "fovea_dumps", status="unverified") == 1
    assert ("fovea_newest_verified_dump_age_seconds", ()) not in s  # unknown: absent, not 0


def test_empty_install_still_parses(tmp_path, capsys):
    _, cfg = make_config(tmp_path)
    assert main(["--config", cfg, "metrics"]) == 0
    s = parse(capsys.readouterr().out)
    assert value(s, "fovea_dumps", status="verified") == 0
    assert ("fovea_backup_last_timestamp_seconds", ()) not in s
    assert value(s, "fovea_drill_interval_seconds") == 30 * 86400


def test_exposition_escapes_labels():
    m = metrics.Metric("fovea_x", "help with \\ and\nnewline")
    m.add(1.5, name='a "quoted" \\ value\n')
    m.add(float("inf"), name="inf")
    families = list(text_string_to_metric_families(metrics.exposition([m])))
    (fam,) = families
    assert fam.documentation == "help with \\ and\nnewline"
    assert {s.labels["name"]: s.value for s in fam.samples} == {'a "quoted" \\ value\n': 1.5, "inf": float("inf")}


# ---------------------------------------------------------------- --serve --------------

@pytest.mark.parametrize("bad", ["localhost", "127.0.0.1:", ":9188", "127.0.0.1:99999", "127.0.0.1:0",
                                 "a b:80", "127.0.0.1:91x8", "[::1:9188"])
def test_malformed_bind_address_is_exit_2(tmp_path, capsys, bad):
    _, cfg = make_config(tmp_path)
    assert main(["--config", cfg, "metrics", "--serve", bad]) == 2
    assert "--serve" in capsys.readouterr().err


def test_bind_address_parsing():
    assert metrics.parse_bind("127.0.0.1:9188") == ("127.0.0.1", 9188)
    assert metrics.parse_bind("[::1]:9188") == ("::1", 9188)
    assert metrics.parse_bind("localhost:80") == ("localhost", 80)


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, "", ""


def test_serve_scrapes_fresh_figures_over_127_0_0_1(tmp_path):
    settings, cfg = make_config(tmp_path)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fovea_tui", "--config", cfg, "metrics", "--serve",
                             f"127.0.0.1:{port}"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, ctype, body = get(f"http://127.0.0.1:{port}/metrics")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "metrics server did not come up"
                time.sleep(0.1)
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        s = parse(body)
        assert value(s, "fovea_dumps", status="corrupt") == 0
        # refreshed per scrape: a new (empty, so corrupt) dump shows on the next one
        backups = tmp_path / "backups"
        backups.mkdir(exist_ok=True)
        (backups / "fovea-20260301T000000Z.sql.gz").write_bytes(b"")
        s = parse(get(f"http://127.0.0.1:{port}/metrics")[2])
        assert value(s, "fovea_dumps", status="corrupt") == 1
        assert get(f"http://127.0.0.1:{port}/elsewhere")[0] == 404
        # the address is taken: a second server fails with exit 1, not a traceback
        second = subprocess.run([sys.executable, "-m", "fovea_tui", "--config", cfg, "metrics", "--serve",
                                 f"127.0.0.1:{port}"], cwd=REPO, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "cannot serve metrics" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err
    assert "Traceback" not in err
