"""Channels that reach a person, through Apprise to local servers only: json:// to an HTTP
server, mailto:// to an aiosmtpd SMTP server (the message read back), the once-a-day rule
with an injected clock, `fovea-tui notify test`, and every URL masked wherever it shows."""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support.receivers import HttpReceiver, SmtpReceiver, free_port

from fovea_tui.cli.main import main
from fovea_tui.config import render_toml, settings_from_dict
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops import notify
from fovea_tui.engine.ops.nightly import last_path, run_nightly

HOST = socket.gethostname()
JSON_PATH = "/apprise/hook-token-4242"


@pytest.fixture
def http():
    server = HttpReceiver()
    yield server
    server.close()


@pytest.fixture
def smtp():
    server = SmtpReceiver()
    yield server
    server.close()


@pytest.fixture
def utc_days(monkeypatch):
    """Calendar days in UTC, whatever zone the host is in."""
    monkeypatch.setenv("TZ", "UTC")
    import time

    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def make(tmp_path: Path, *, urls=(), webhooks=(), monitor=None, on_success=False, db_url=None):
    env = tmp_path / ".env"
    env.write_text("DATABASE_URL=postgresql://fovea:env-db-password-55@127.0.0.1:1/fovea\n"
                   "SESSION_SECRET=alerts-session-secret-xyz\n")
    env.chmod(0o600)
    data = {
        "install": {"env_file": str(env)},
        "database": {"mode": "direct", "url": db_url or f"postgresql://fovea:db-password-77@127.0.0.1:{free_port()}/x"},
        "backups": {"dir": str(tmp_path / "backups"), "offsite": ""},
        "volume": {"path": str(tmp_path / "videos"), "target": ""},
        "notify": {"urls": list(urls), "webhooks": list(webhooks), "on_success": on_success},
        "monitor": monitor or {},
    }
    settings = settings_from_dict(data)
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text(render_toml(settings))
    return settings, str(cfg)


def apprise_json(req) -> dict:
    return json.loads(req.body)


# ---------------------------------------------------------------- a failed run ----------

def test_a_failed_run_reaches_json_and_the_webhook_keeps_its_contract(tmp_path, http):
    hook = HttpReceiver()
    try:
        settings, _ = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")],
                           webhooks=[hook.url("/hooks/T0/B0/webhook-secret-1")])
        result = run_nightly(settings, now=lambda: datetime.now(UTC))
    finally:
        hook.close()
    assert result.outcome == "failed"
    # Apprise's json:// body: a title and a message a person reads
    (req,) = [r for r in http.requests if "nightly" in apprise_json(r)["title"]]
    doc = apprise_json(req)
    assert doc["title"] == f"fovea-tui nightly on {HOST}: FAILED"
    assert doc["type"] == "failure"
    assert "backup  failed" in doc["message"] and "prune   skipped" in doc["message"]
    assert "Next: run `fovea-tui backup` on " + HOST in doc["message"]
    assert "db-password-77" not in req.text
    # the webhook still gets the contract's JSON body
    (body,) = [json.loads(r.body) for r in hook.requests]
    assert body["event"] == "nightly" and body["ok"] is False and body["host"] == HOST
    assert {s["name"]: s["status"] for s in body["steps"]} == {"backup": "failed", "prune": "skipped",
                                                               "sync": "skipped"}
    assert [(n["channel"], n["ok"]) for n in result.notifications] == [("webhook", True), ("apprise", True)]


def test_a_good_run_is_quiet_unless_on_success(fresh_direct_db, tmp_path, http, monkeypatch):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    (tmp_path / "videos").mkdir()
    settings, _ = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")], db_url=fresh_direct_db.url)
    assert run_nightly(settings).ok
    nightly_messages = [r for r in http.requests if "nightly" in apprise_json(r)["title"]]
    assert nightly_messages == []
    settings.notify.on_success = True
    assert run_nightly(settings).ok
    (req,) = [r for r in http.requests if "nightly" in apprise_json(r)["title"]]
    assert apprise_json(req)["title"] == f"fovea-tui nightly on {HOST}: OK"


def test_a_run_mailed_through_smtp_reads_back(tmp_path, smtp):
    settings, _ = make(tmp_path, urls=[smtp.url()])
    result = run_nightly(settings)
    assert [n["ok"] for n in result.notifications] == [True]
    assert smtp.envelopes[0] == ("fovea@example.org", ["ops@example.org"])
    msg = smtp.messages[0]
    assert msg["Subject"] == f"fovea-tui nightly on {HOST}: FAILED"
    text = msg.get_body(preferencelist=("plain",)).get_content()
    assert f"fovea-tui nightly run on {HOST}: FAILED" in text
    assert "Next: run `fovea-tui backup`" in text
    assert "db-password-77" not in msg.as_string()


def test_a_dead_channel_never_fails_the_run_and_is_masked_everywhere(tmp_path, capsys):
    dead = f"json://127.0.0.1:{free_port()}/apprise/dead-channel-secret-9"
    form_port = free_port()
    form = f"form://alice:form-password-31@127.0.0.1:{form_port}/private-topic-31"
    settings, cfg = make(tmp_path, urls=[dead, form])
    code = main(["--config", cfg, "run-nightly", "--json"])
    out, err = capsys.readouterr()
    assert code == 1  # the run failed (its database), not because of the channels
    doc = json.loads(out)
    assert [(n["channel"], n["ok"]) for n in doc["notifications"]] == [("apprise", False), ("apprise", False)]
    assert [n["url"] for n in doc["notifications"]] == [f"json://127.0.0.1:{dead.split(':')[2].split('/')[0]}/••••••",
                                                        f"form://127.0.0.1:{form_port}/••••••"]
    assert "warning: apprise json://127.0.0.1:" in err
    everything = out + err + audit.audit_path(settings).read_text() + last_path(settings).read_text()
    for secret in ("dead-channel-secret-9", "private-topic-31", "form-password-31", "alice"):
        assert secret not in everything
    failures = audit.read(settings, action="notify")
    # the run's message and the digest of its new status alerts: each channel tried twice
    assert [f["details"]["channel"] for f in failures] == ["apprise"] * 4


# ---------------------------------------------------------------- once a day ------------

def test_an_alert_is_sent_at_most_once_a_day(tmp_path, http, utc_days):
    settings, _ = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")])
    stuck = notify.Alert("critical", "database:critical:unreachable", "database unreachable", "run `fovea-tui status`")
    morning = datetime(2026, 3, 2, 2, 30, tzinfo=UTC)

    first = notify.send_alerts(settings, [stuck], now=morning)
    assert first.sent == [stuck.key]
    doc = apprise_json(http.requests[0])
    assert doc["title"] == f"fovea-tui on {HOST}: CRITICAL: database unreachable"
    assert doc["message"].startswith("CRITICAL: database unreachable\nNext: run `fovea-tui status`")
    assert f"Host: {HOST}." in doc["message"]

    for later in (timedelta(minutes=5), timedelta(hours=12), timedelta(hours=21, minutes=29)):
        again = notify.send_alerts(settings, [stuck], now=morning + later)
        assert again.sent == [] and again.held_back == [stuck.key]
    assert len(http.requests) == 1

    other = notify.Alert("critical", "backups:critical:corrupt", "newest dump is corrupt")
    both = notify.send_alerts(settings, [stuck, other], now=morning + timedelta(hours=21))
    assert both.sent == [other.key] and both.held_back == [stuck.key]

    after_midnight = notify.send_alerts(settings, [stuck, other], now=morning + timedelta(hours=22))
    assert after_midnight.sent == [stuck.key, other.key]
    assert len(http.requests) == 3
    digest = apprise_json(http.requests[2])
    assert digest["title"] == f"fovea-tui on {HOST}: 2 alerts (2 critical)"
    assert "CRITICAL: database unreachable" in digest["message"] and "CRITICAL: newest dump is corrupt" in digest["message"]
    assert [e["outcome"] for e in audit.read(settings, action="alerts")] == [
        "sent", "held_back", "held_back", "held_back", "sent", "sent"]


def test_an_alert_no_channel_took_is_tried_again(tmp_path, utc_days):
    port = free_port()
    settings, _ = make(tmp_path, urls=[f"json://127.0.0.1:{port}/apprise/late-channel"])
    alert = notify.Alert("critical", "drill:critical", "last restore drill failed")
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    assert notify.send_alerts(settings, [alert], now=now).sent == []
    server = HttpReceiver()
    try:
        settings.notify.urls = [server.url("/apprise/late-channel", scheme="json")]
        assert notify.send_alerts(settings, [alert], now=now + timedelta(minutes=10)).sent == [alert.key]
    finally:
        server.close()


def test_the_alert_state_is_private_atomic_and_survives_a_broken_file(tmp_path, http, utc_days):
    settings, _ = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")])
    alert = notify.Alert("critical", "stack:critical:down", "stack down")
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    old = os.umask(0)
    try:
        notify.send_alerts(settings, [alert], now=now)
    finally:
        os.umask(old)
    state = notify.alerts_path(settings)
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text()) == {alert.key: "2026-03-02T09:00:00+00:00"}
    assert [p.name for p in state.parent.iterdir() if p.name.startswith(".")] == []  # no temp file left
    state.write_text('{"stack:critical:down": ')  # a crash mid-write by some other tool
    assert notify.send_alerts(settings, [alert], now=now + timedelta(hours=1)).sent == [alert.key]
    assert json.loads(state.read_text())[alert.key] == "2026-03-02T10:00:00+00:00"


def test_old_entries_are_forgotten(tmp_path, http, utc_days):
    settings, _ = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")])
    now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    notify.send_alerts(settings, [notify.Alert("critical", "old", "old")], now=now)
    notify.send_alerts(settings, [notify.Alert("critical", "new", "new")], now=now + timedelta(days=5))
    assert set(json.loads(notify.alerts_path(settings).read_text())) == {"new"}


def test_status_alerts_worth_a_phone(tmp_path):
    status_alerts = [
        {"level": "critical", "subject": "database", "message": "database unreachable: timeout after 5 s"},
        {"level": "warning", "subject": "disk", "message": "less than 10% free"},
        {"level": "warning", "subject": "drill", "message": "last restore drill was 97 days ago"},
        {"level": "critical", "subject": "backups", "message": "3 corrupt dumps"},
    ]
    chosen = notify.alerts_from_status(status_alerts)
    assert [a.key for a in chosen] == ["database:critical:database unreachable: timeout after # s", "drill:warning",
                                       "backups:critical:# corrupt dumps"]
    assert "fovea-tui drill" in chosen[1].next_step
    # a count that moves is still the same alert
    again = notify.alerts_from_status([{"level": "critical", "subject": "backups", "message": "4 corrupt dumps"}])
    assert again[0].key == chosen[2].key
    # a failed drill or restore is sent as it ends; status reporting it later is the same alert
    later = notify.alerts_from_status([
        {"level": "critical", "subject": "drill", "message": "last restore drill (2026-03-01) failed: rows"},
        {"level": "critical", "subject": "restore", "message": "the last restore failed at step load"}])
    assert [a.key for a in later] == ["drill:critical", "restore:critical"]


def test_status_from_cron_sends_new_alerts_once(tmp_path, http, capsys, utc_days):
    settings, cfg = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")])
    main(["--config", cfg, "status", "--json"])
    (first,) = [apprise_json(r) for r in http.requests]
    assert first["title"].startswith(f"fovea-tui on {HOST}: ") and " alerts (" in first["title"]
    assert "CRITICAL: database unreachable" in first["message"]
    assert "WARNING: no restore drill on record" in first["message"]
    assert "Next: run `fovea-tui drill`" in first["message"]
    assert "db-password-77" not in first["message"]
    main(["--config", cfg, "status", "--json"])
    assert len(http.requests) == 1  # the same alerts, the same day: held back
    capsys.readouterr()
    assert audit.read(settings, action="alerts")[-1]["outcome"] == "held_back"


# ---------------------------------------------------------------- notify test -----------

def test_notify_test_reaches_every_channel_and_ping(tmp_path, http, smtp, capsys):
    settings, cfg = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json"), smtp.url()],
                         webhooks=[http.url("/hooks/webhook-token-1")],
                         monitor={"ping_url": http.url("/ping/test-check-uuid"),
                                  "drill_url": http.url("/ping/drill-check-uuid")})
    code = main(["--config", cfg, "notify", "test"])
    out, err = capsys.readouterr()
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"notify test from {HOST}: all 5 delivered"
    port = http.port
    assert lines[1:] == [
        f"  webhook       http://127.0.0.1:{port}/••••••: delivered",
        f"  apprise       json://127.0.0.1:{port}/••••••: delivered",
        f"  apprise       mailto://127.0.0.1:{smtp.port}/••••••: delivered",
        f"  ping success  http://127.0.0.1:{port}/••••••: delivered",
        f"  ping success  http://127.0.0.1:{port}/••••••: delivered",
    ]
    by_path = {r.path: r for r in http.requests}
    assert json.loads(by_path["/hooks/webhook-token-1"].body)["event"] == "test"
    assert apprise_json(by_path[JSON_PATH])["title"] == f"fovea-tui on {HOST}: test message"
    assert "notify test" in by_path["/ping/test-check-uuid"].text
    assert "/ping/drill-check-uuid" in by_path
    assert not any(p.endswith("/start") for p in by_path)  # a lone start would leave the check waiting
    assert smtp.messages[0]["Subject"] == f"fovea-tui on {HOST}: test message"


def test_notify_test_json_and_exit_code_when_one_fails(tmp_path, http, capsys):
    dead = f"http://127.0.0.1:{free_port()}/ping/dead-check-secret"
    settings, cfg = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")], monitor={"ping_url": dead})
    code = main(["--config", cfg, "notify", "test", "--json"])
    out, err = capsys.readouterr()
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["host"] == HOST
    assert [(d["channel"], d["ok"]) for d in doc["deliveries"]] == [("apprise", True), ("ping", False)]
    assert doc["deliveries"][1]["error"] and doc["deliveries"][1]["attempts"] >= 1
    assert "dead-check-secret" not in out + err


def test_notify_test_with_nothing_configured_names_the_key(tmp_path, capsys):
    settings, cfg = make(tmp_path)
    assert main(["--config", cfg, "notify", "test"]) == 2
    assert "notify.urls" in capsys.readouterr().err


# ---------------------------------------------------------------- config ----------------

@pytest.mark.parametrize("toml, key", [
    ('[notify]\nurls = ["nosuchservice://x/y"]\n', "notify.urls"),
    ('[notify]\nurls = "json://127.0.0.1/x"\n', "notify.urls"),
    ('[monitor]\nping_url = "ftp://hc.example.org/x"\n', "monitor.ping_url"),
    ('[monitor]\nsync_url = "not a url"\n', "monitor.sync_url"),
    ('[monitor]\nprune_url = "https://hc-ping.com/x"\n', "monitor.prune_url"),
])
def test_bad_notify_and_monitor_keys_exit_2_naming_the_key(tmp_path, capsys, toml, key):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    assert main(["--config", str(cfg), "notify", "test"]) == 2
    err = capsys.readouterr().err
    assert key in err and "Traceback" not in err


def test_a_bad_apprise_url_is_named_by_position_not_shown(tmp_path, capsys):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[notify]\nurls = ["json://127.0.0.1/ok", "tgram://only-half-a-secret-token"]\n')
    assert main(["--config", str(cfg), "notify", "test"]) == 2
    err = capsys.readouterr().err
    assert "entry 2 (tgram://...)" in err and "only-half-a-secret-token" not in err


def test_two_senders_at_once_send_an_alert_once(tmp_path, utc_days):
    """The nightly run and a `status` from cron may check at the same moment."""
    import threading

    slow = HttpReceiver(delay=0.5)
    try:
        settings, _ = make(tmp_path, urls=[slow.url(JSON_PATH, scheme="json")])
        alert = notify.Alert("critical", "stack:critical:down", "stack down")
        now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        outcomes = []
        threads = [threading.Thread(target=lambda: outcomes.append(notify.send_alerts(settings, [alert], now=now)))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        slow.close()
    assert len(slow.requests) == 1
    assert sorted(len(o.sent) for o in outcomes) == [0, 0, 1]


def test_a_read_only_state_dir_costs_the_alert_state_not_the_caller(tmp_path, http, utc_days):
    import subprocess

    from support.services import unavailable

    settings, _ = make(tmp_path, urls=[http.url(JSON_PATH, scheme="json")])
    settings.state_dir.mkdir(parents=True)
    ro = tmp_path / "ro"
    ro.mkdir()
    r = subprocess.run(["mount", "--bind", "-o", "ro", str(settings.backups_dir), str(ro)], capture_output=True)
    if r.returncode != 0:
        unavailable(f"cannot bind-mount read-only here: {r.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True, capture_output=True)
        settings.backups.dir = str(ro)
        outcome = notify.send_alerts(settings, [notify.Alert("critical", "k", "t")])
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
    # Better twice than never: the alert goes out, and the state that could not be kept is said.
    assert outcome.sent == ["k"] and "Read-only file system" in outcome.error
    assert len(http.requests) == 1
