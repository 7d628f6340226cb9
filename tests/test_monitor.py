"""The dead-man's switch against a local HTTP server standing in for Healthchecks (and an
Uptime Kuma push monitor): which calls, in which order, with which bodies, and that a
monitor that is down or hangs neither fails nor holds up the run."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from support.receivers import HttpReceiver, free_port

from fovea_tui.cli.main import main
from fovea_tui.config import render_toml, settings_from_dict
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops import monitor
from fovea_tui.engine.ops.nightly import last_path, run_nightly

CHECK = "/ping/5c1e1f3a-8d7b-4a55-9e0f-secret-check"
HOST = socket.gethostname()


@pytest.fixture
def hc():
    server = HttpReceiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def _pg_bin(monkeypatch, request):
    if "fresh_direct_db" in request.fixturenames:
        monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(request.getfixturevalue("fresh_direct_db").bin_dir))


def write_config(tmp_path: Path, db_url: str, monitor_keys: dict, **sections) -> tuple[object, str]:
    env = tmp_path / ".env"
    env.write_text(f"DATABASE_URL={db_url}\nSESSION_SECRET=monitor-session-secret-xyz\n"
                   "API_KEY_ENCRYPTION_KEY=monitor-api-key-encryption-xyz\n")
    env.chmod(0o600)
    (tmp_path / "videos").mkdir(exist_ok=True)
    (tmp_path / "videos" / "a.mp4").write_bytes(b"a" * 3000)
    data = {
        "install": {"env_file": str(env)},
        "database": {"mode": "direct", "url": db_url},
        "backups": {"dir": str(tmp_path / "backups"), "offsite": ""},
        "volume": {"path": str(tmp_path / "videos"), "target": ""},
        "monitor": monitor_keys,
        **sections,
    }
    settings = settings_from_dict(data)
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text(render_toml(settings))
    return settings, str(cfg)


def dead_db() -> str:
    return f"postgresql://fovea:db-password-zz9@127.0.0.1:{free_port()}/fovea"


def run_cli(capsys, cfg: str, *argv: str) -> tuple[int, dict, str]:
    code = main(["--config", cfg, *argv, "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def test_a_good_night_pings_start_then_success_with_what_ran(fresh_direct_db, tmp_path, hc, capsys):
    settings, cfg = write_config(tmp_path, fresh_direct_db.url, {"ping_url": hc.url(CHECK)})
    code, doc, err = run_cli(capsys, cfg, "run-nightly")
    assert code == 0
    assert hc.paths() == [CHECK + "/start", CHECK]
    start, end = hc.requests
    assert start.method == end.method == "POST" and start.content_type.startswith("text/plain")
    # one run id pairs the start with its end (Healthchecks times overlapping runs apart)
    assert start.query["rid"] == end.query["rid"] and len(start.query["rid"][0]) == 36
    assert f"fovea-tui nightly started on {HOST}" in start.text
    assert end.text.startswith(f"fovea-tui nightly on {HOST}: OK")
    assert "backup  ok" in end.text and "bytes" in end.text and "sync    skipped" in end.text
    for secret in ("monitor-session-secret-xyz", fresh_direct_db.url.split("@")[0]):
        assert secret not in start.text + end.text
    assert [(p["event"], p["ok"]) for p in doc["monitor"]] == [("start", True), ("success", True)]
    assert all(p["url"] == f"http://127.0.0.1:{hc.port}/••••••" for p in doc["monitor"])
    (entry,) = audit.read(settings, action="monitor")
    assert entry["outcome"] == "ok" and entry["details"]["job"] == "nightly"
    assert [p["event"] for p in entry["details"]["pings"]] == ["start", "success"]


def test_a_failed_night_pings_its_exit_code_and_reason(tmp_path, hc, capsys):
    settings, cfg = write_config(tmp_path, dead_db(), {"ping_url": hc.url(CHECK)})
    code, doc, _ = run_cli(capsys, cfg, "run-nightly")
    assert code == 1
    # Healthchecks (a /ping/ URL) takes the exit code in place of /fail.
    assert hc.paths() == [CHECK + "/start", CHECK + "/1"]
    body = hc.requests[1].text
    assert body.startswith(f"fovea-tui nightly on {HOST}: FAILED (exit code 1)")
    assert "backup  failed" in body and "prune   skipped" in body
    assert "db-password-zz9" not in body
    assert doc["monitor"][1]["event"] == "exit" and doc["monitor"][1]["exit_code"] == 1


def test_a_service_without_exit_codes_gets_fail(tmp_path, hc):
    settings, _ = write_config(tmp_path, dead_db(), {"ping_url": hc.url("/generic/abcdef0123")})
    result = run_nightly(settings)
    assert not result.ok
    assert hc.paths() == ["/generic/abcdef0123/start", "/generic/abcdef0123/fail"]
    assert all("rid" not in r.query for r in hc.requests)  # only Healthchecks is known to take it


def test_a_monitor_that_is_down_neither_fails_nor_holds_up_the_run(fresh_direct_db, tmp_path, capsys):
    url = f"http://127.0.0.1:{free_port()}/ping/down-check-token-77"
    settings, cfg = write_config(tmp_path, fresh_direct_db.url, {"ping_url": url})
    code, doc, err = run_cli(capsys, cfg, "run-nightly")
    assert code == 0 and doc["ok"] is True
    assert [(p["event"], p["ok"]) for p in doc["monitor"]] == [("start", False), ("success", False)]
    assert all(p["duration_s"] < monitor.PING_BUDGET_S + 0.5 for p in doc["monitor"])
    assert "monitor ping start to http://127.0.0.1:" in err
    assert "down-check-token-77" not in err + json.dumps(doc)
    assert "down-check-token-77" not in audit.audit_path(settings).read_text()
    assert "down-check-token-77" not in last_path(settings).read_text()
    (entry,) = audit.read(settings, action="monitor")
    assert entry["outcome"] == "failed"


def test_a_hanging_monitor_costs_a_few_seconds_at_most(tmp_path):
    hanging = HttpReceiver(delay=30)
    try:
        settings, _ = write_config(tmp_path, dead_db(), {"ping_url": hanging.url(CHECK)})
        started = time.monotonic()
        result = run_nightly(settings)
        elapsed = time.monotonic() - started
    finally:
        hanging.close()
    assert result.outcome == "failed"  # the database, not the monitor
    assert [p["ok"] for p in result.monitor] == [False, False]
    assert all(p["duration_s"] <= monitor.PING_BUDGET_S + 0.5 for p in result.monitor)
    assert elapsed < 2 * monitor.PING_BUDGET_S + 5


def test_a_monitor_error_is_retried_within_the_budget(tmp_path):
    flaky = HttpReceiver(status=503)
    try:
        settings, _ = write_config(tmp_path, dead_db(), {"ping_url": flaky.url(CHECK)})
        watch = monitor.Watch.for_job(settings, "nightly")
        watch.start()
    finally:
        flaky.close()
    (ping,) = watch.pings
    assert not ping.delivery.ok and ping.delivery.status == 503 and ping.delivery.attempts == 3
    assert len(flaky.requests) == 3


def test_a_job_url_overrides_the_run_url_for_its_step(fresh_direct_db, tmp_path, hc):
    settings, _ = write_config(tmp_path, fresh_direct_db.url,
                               {"ping_url": hc.url(CHECK), "backup_url": hc.url("/ping/backup-check-0001")})
    result = run_nightly(settings)
    assert result.ok
    assert hc.paths() == [CHECK + "/start", "/ping/backup-check-0001/start", "/ping/backup-check-0001",
                          CHECK]
    backup_end = hc.requests[2].text
    assert backup_end.startswith(f"fovea-tui backup on {HOST}: OK") and ".sql.gz" in backup_end
    assert [p["job"] for p in result.monitor] == ["nightly", "nightly", "backup", "backup"]


def test_backup_alone_pings_the_run_url_when_it_has_none_of_its_own(fresh_direct_db, tmp_path, hc, capsys):
    settings, cfg = write_config(tmp_path, fresh_direct_db.url, {"ping_url": hc.url(CHECK)})
    code, doc, _ = run_cli(capsys, cfg, "backup")
    assert code == 0
    assert hc.paths() == [CHECK + "/start", CHECK]
    assert "fovea-tui backup on" in hc.requests[1].text and Path(doc["path"]).name in hc.requests[1].text
    assert [p["event"] for p in doc["monitor"]] == ["start", "success"]


def test_backup_alone_that_fails_pings_its_exit_code(tmp_path, hc, capsys):
    settings, cfg = write_config(tmp_path, dead_db(), {"backup_url": hc.url("/ping/only-backup-0002")})
    code, doc, err = run_cli(capsys, cfg, "backup")
    assert code == 1
    assert hc.paths() == ["/ping/only-backup-0002/start", "/ping/only-backup-0002/1"]
    assert "db-password-zz9" not in hc.requests[1].text


def test_uptime_kuma_push_gets_one_get_with_status_and_message(tmp_path):
    kuma = HttpReceiver()
    try:
        settings, _ = write_config(tmp_path, dead_db(),
                                   {"ping_url": kuma.url("/api/push/KumaPushToken9?status=up&msg=OK&ping=")})
        run_nightly(settings)
    finally:
        kuma.close()
    (req,) = kuma.requests  # no start call: a push monitor has none
    assert req.method == "GET" and req.path == "/api/push/KumaPushToken9"
    assert req.query["status"] == ["down"]
    assert req.query["msg"][0].startswith(f"fovea-tui nightly on {HOST}: FAILED")


def test_the_state_files_stay_private_under_umask_000(fresh_direct_db, tmp_path, hc):
    old = os.umask(0)
    try:
        settings, _ = write_config(tmp_path, fresh_direct_db.url, {"ping_url": hc.url(CHECK)})
        run_nightly(settings)
    finally:
        os.umask(old)
    assert last_path(settings).stat().st_mode & 0o777 == 0o600
    assert audit.audit_path(settings).stat().st_mode & 0o777 == 0o600


def test_sync_pings_its_own_check_and_a_dry_run_or_pull_pings_nothing(tmp_path, hc, capsys):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    settings, _ = write_config(tmp_path, dead_db(), {"sync_url": hc.url("/ping/sync-check-0004")})
    settings.volume.target = str(mirror)
    cfg = tmp_path / "sync.toml"
    cfg.write_text(render_toml(settings))
    for argv in (["sync", "--dry-run"], ["sync", "--pull", "--to", str(tmp_path / "pulled")]):
        code, doc, _ = run_cli(capsys, str(cfg), *argv)
        assert code == 0 and doc["monitor"] == []
    assert hc.requests == []
    code, doc, _ = run_cli(capsys, str(cfg), "sync")
    assert code == 0 and doc["uploaded"] == 1
    assert hc.paths() == ["/ping/sync-check-0004/start", "/ping/sync-check-0004"]
    assert "1 uploaded" in hc.requests[1].text and "0 errors" in hc.requests[1].text
    shutil.rmtree(tmp_path / "videos")  # the volume is not mounted tonight
    code, doc, err = run_cli(capsys, str(cfg), "sync")
    assert code != 0
    assert hc.paths()[2:] == ["/ping/sync-check-0004/start", f"/ping/sync-check-0004/{code}"]
    assert "FAILED" in hc.requests[-1].text and str(tmp_path / "videos") in hc.requests[-1].text


def test_the_calls_each_service_takes():
    """What goes where, without the network: Cronitor and hc-ping.com are not reached from tests."""
    from urllib.parse import parse_qs, urlsplit

    cronitor = "https://cronitor.link/p/api-key-1/nightly-fovea"
    start = monitor.plan_call(cronitor, "start", "fovea-tui nightly started", run_id="r-1")
    end = monitor.plan_call(cronitor, "fail", "FAILED\nbackup failed", exit_code=1, run_id="r-1")
    assert start.body is None and end.body is None  # GETs
    q_start, q_end = (parse_qs(urlsplit(c.url).query) for c in (start, end))
    assert q_start["state"] == ["run"] and q_end["state"] == ["fail"] and q_end["status_code"] == ["1"]
    assert q_start["series"] == q_end["series"] == ["r-1"] and q_end["host"] == [HOST]
    assert q_end["message"] == ["FAILED\nbackup failed"]
    ok = monitor.plan_call(cronitor, "success", "OK", exit_code=0)
    assert parse_qs(urlsplit(ok.url).query)["state"] == ["complete"]

    hc_cloud = "https://hc-ping.com/ping-key-1/fovea-nightly"
    assert urlsplit(monitor.plan_call(hc_cloud, "fail", "x", exit_code=3).url).path == "/ping-key-1/fovea-nightly/3"
    assert monitor.plan_call(hc_cloud, "fail", "x", exit_code=3).event == "exit"
    generic = "https://status.example.org/heartbeat/abc?token=t"
    assert monitor.plan_call(generic, "start", "x").url == "https://status.example.org/heartbeat/abc/start?token=t"
    assert monitor.plan_call(generic, "fail", "x", exit_code=2).url == "https://status.example.org/heartbeat/abc/fail?token=t"
    assert monitor.plan_call("https://kuma.example.org/api/push/tok?status=up&msg=OK&ping=", "start", "x") is None
