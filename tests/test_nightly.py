"""run-nightly against a real PostgreSQL (direct mode), real directories and real failures:
an unreachable database, an off-site path that cannot be created, an empty retention policy,
a volume that is not there. Webhooks are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from fovea_tui.cli.main import main
from fovea_tui.config import render_toml, settings_from_dict
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops.nightly import read_last, run_nightly


def make_settings(tmp_path: Path, db_url: str, *, offsite: str | None = None, target: str | None = "",
                  webhooks: list[str] | None = None, on_success: bool = False, retention=None,
                  volume: Path | None = None):
    env = tmp_path / ".env"
    env.write_text(f"DATABASE_URL={db_url}\nSESSION_SECRET=nightly-session-secret-xyz\n"
                   "API_KEY_ENCRYPTION_KEY=nightly-api-key-encryption-xyz\n")
    env.chmod(0o600)
    videos = volume if volume is not None else tmp_path / "videos"
    if volume is None:
        (videos / "thumbs").mkdir(parents=True, exist_ok=True)
        (videos / "a.mp4").write_bytes(b"a" * 5000)
        (videos / "thumbs" / "a.jpg").write_bytes(b"j" * 300)
    data = {
        "install": {"env_file": str(env)},
        "database": {"mode": "direct", "url": db_url},
        "backups": {"dir": str(tmp_path / "backups"),
                    "offsite": str(tmp_path / "offsite") if offsite is None else offsite},
        "volume": {"path": str(videos), "target": str(tmp_path / "mirror") if target == "" else (target or "")},
        "notify": {"webhooks": webhooks or [], "on_success": on_success},
    }
    if target is None:
        data["volume"]["target"] = ""
    elif target == "":
        (tmp_path / "mirror").mkdir(exist_ok=True)
    if retention:
        data["retention"] = retention
    settings = settings_from_dict(data)
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text(render_toml(settings))
    return settings, str(cfg)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hook:
    """A webhook receiver on 127.0.0.1 that records every JSON body it is sent."""

    def __init__(self, status: int = 200) -> None:
        received = self.received = []
        code = status

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                received.append({"path": self.path, "body": json.loads(self.rfile.read(length)),
                                 "type": self.headers.get("Content-Type")})
                self.send_response(code)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str = "/hooks/T000/B000/s3cr3t-token?key=abc") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook():
    h = Hook()
    yield h
    h.close()


@pytest.fixture(autouse=True)
def _pg_bin(monkeypatch, request):
    if "fresh_direct_db" in request.fixturenames:
        db = request.getfixturevalue("fresh_direct_db")
        monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(db.bin_dir))


def run_cli(capsys, cfg: str) -> tuple[int, dict, str]:
    code = main(["--config", cfg, "run-nightly", "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out), err


def steps(doc: dict) -> dict[str, str]:
    return {s["name"]: s["status"] for s in doc["steps"]}


def test_all_steps_succeed_and_the_run_is_recorded(fresh_direct_db, tmp_path, capsys, hook):
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, webhooks=[hook.url()], on_success=True)
    code, doc, err = run_cli(capsys, cfg)
    assert code == 0, [(s["name"], s["status"], s["detail"]) for s in doc["steps"]]
    assert doc["ok"] is True and doc["outcome"] == "ok"
    assert steps(doc) == {"backup": "ok", "prune": "ok", "sync": "ok"}
    assert [s["name"] for s in doc["steps"]] == ["backup", "prune", "sync"]
    backup = doc["steps"][0]["result"]
    assert Path(backup["path"]).is_file() and backup["size"] > 0
    assert (tmp_path / "offsite" / Path(backup["path"]).name).is_file()
    assert (tmp_path / "mirror" / "thumbs" / "a.jpg").read_bytes() == b"j" * 300
    # the record: nightly-last.json and one audit line
    last = read_last(settings)
    assert last["outcome"] == "ok" and last["started_at"] <= last["finished_at"]
    assert [s["status"] for s in last["steps"]] == ["ok", "ok", "ok"]
    entries = audit.read(settings, action="nightly")
    assert entries[-1]["outcome"] == "ok"
    assert [s["name"] for s in entries[-1]["details"]["steps"]] == ["backup", "prune", "sync"]
    # on_success: the webhook got the summary, and nothing secret
    assert len(hook.received) == 1
    body = hook.received[0]["body"]
    assert hook.received[0]["type"] == "application/json"
    assert body["event"] == "nightly" and body["ok"] is True
    assert [s["status"] for s in body["steps"]] == ["ok", "ok", "ok"]
    raw = json.dumps(body)
    assert fresh_direct_db.password not in raw and "nightly-session-secret-xyz" not in raw
    assert doc["notifications"][0]["ok"] is True
    assert "s3cr3t-token" not in doc["notifications"][0]["url"]
    assert "s3cr3t-token" not in err


def test_failing_backup_skips_prune_but_still_syncs(tmp_path, capsys, hook):
    port = closed_port()
    url = f"postgresql://fovea:db-pass-4711@127.0.0.1:{port}/fovea"
    settings, cfg = make_settings(tmp_path, url, webhooks=[hook.url()])
    backups = tmp_path / "backups"
    backups.mkdir()
    older = backups / "fovea-2020-01-01.sql.gz"
    older.write_bytes(b"legacy")  # a dump prune might otherwise judge; it must stay
    code, doc, err = run_cli(capsys, cfg)
    assert code == 1
    assert doc["ok"] is False and doc["outcome"] == "failed"
    assert steps(doc) == {"backup": "failed", "prune": "skipped", "sync": "ok"}
    assert "backup failed" in doc["steps"][1]["detail"]
    assert older.exists()
    assert (tmp_path / "mirror" / "a.mp4").exists()
    assert read_last(settings)["outcome"] == "failed"
    # failure notification (without on_success) carries the failed step, not the password
    assert len(hook.received) == 1
    body = hook.received[0]["body"]
    assert body["ok"] is False and body["steps"][0]["status"] == "failed"
    assert "db-pass-4711" not in json.dumps(body) and "db-pass-4711" not in json.dumps(doc)
    assert audit.read(settings, action="nightly")[-1]["outcome"] == "failed"


def test_offsite_failure_fails_the_backup_step(fresh_direct_db, tmp_path, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the off-site directory's parent should be")
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, offsite=str(blocker / "offsite"))
    code, doc, _ = run_cli(capsys, cfg)
    assert code == 1
    assert steps(doc) == {"backup": "failed", "prune": "skipped", "sync": "ok"}
    # the local dump is there (OffsiteFailed carries it), it is just not off-site
    assert doc["steps"][0]["result"]["path"]
    assert Path(doc["steps"][0]["result"]["path"]).is_file()


def test_refused_prune_fails_the_run_but_sync_still_runs(fresh_direct_db, tmp_path, capsys):
    empty_policy = {k: 0 for k in ("keep_last", "keep_hourly", "keep_daily", "keep_weekly",
                                   "keep_monthly", "keep_yearly")}
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, retention=empty_policy)
    code, doc, _ = run_cli(capsys, cfg)
    assert code == 1
    assert steps(doc) == {"backup": "ok", "prune": "failed", "sync": "ok"}
    assert "empty" in doc["steps"][1]["detail"]
    assert Path(doc["steps"][0]["result"]["path"]).is_file()  # nothing was deleted


def test_missing_volume_target_fails_the_sync_step(fresh_direct_db, tmp_path, capsys):
    """A target never used is made (0700) by the first run; once used, a missing one is a disk
    that is not mounted: the sync step fails instead of filling an empty directory."""
    usb = tmp_path / "unmounted-usb"
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, target=str(usb))
    code, doc, _ = run_cli(capsys, cfg)
    assert code == 0 and steps(doc)["sync"] == "ok"
    assert (usb / "a.mp4").is_file() and stat.S_IMODE(usb.stat().st_mode) == 0o700
    shutil.rmtree(usb)  # the disk is unmounted
    code, doc, _ = run_cli(capsys, cfg)
    assert code == 1
    assert steps(doc) == {"backup": "ok", "prune": "ok", "sync": "failed"}
    assert "is gone now: is its disk mounted?" in doc["steps"][2]["detail"]
    assert not usb.exists()
    assert audit.read(settings, action="nightly")[-1]["details"]["steps"][2]["status"] == "failed"


def test_missing_volume_fails_the_sync_step(fresh_direct_db, tmp_path, capsys):
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, volume=tmp_path / "no-such-volume")
    code, doc, _ = run_cli(capsys, cfg)
    assert code == 1
    assert steps(doc)["sync"] == "failed"


def test_sync_is_skipped_with_a_note_when_no_target(fresh_direct_db, tmp_path, capsys):
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, target=None)
    code, doc, _ = run_cli(capsys, cfg)
    assert code == 0
    assert steps(doc) == {"backup": "ok", "prune": "ok", "sync": "skipped"}
    assert "volume.target" in doc["steps"][2]["detail"]


def test_a_dead_webhook_never_fails_the_run(fresh_direct_db, tmp_path, capsys):
    dead = f"http://127.0.0.1:{closed_port()}/hook/very-secret-path?token=zzz-secret"
    settings, _ = make_settings(tmp_path, fresh_direct_db.url, target=None, webhooks=[dead], on_success=True)
    result = run_nightly(settings, notify_options={"backoff_initial": 0.01, "backoff_max": 0.02})
    assert result.ok
    (outcome,) = result.notifications
    assert outcome["ok"] is False and outcome["attempts"] == 3
    assert "very-secret-path" not in outcome["url"] and "zzz-secret" not in outcome["url"]
    assert read_last(settings)["outcome"] == "ok"
    failures = audit.read(settings, action="notify")
    assert failures and failures[-1]["outcome"] == "failed"
    assert "very-secret-path" not in json.dumps(failures)


def test_dead_webhook_through_the_cli_exit_code_and_masked_warning(fresh_direct_db, tmp_path, capsys):
    dead = f"http://127.0.0.1:{closed_port()}/hook/very-secret-path"
    settings, cfg = make_settings(tmp_path, fresh_direct_db.url, target=None, webhooks=[dead], on_success=True)
    code, doc, err = run_cli(capsys, cfg)
    assert code == 0
    assert doc["notifications"][0]["ok"] is False
    assert "warning: webhook http://127.0.0.1:" in err
    assert "very-secret-path" not in err and "very-secret-path" not in json.dumps(doc)


def test_a_second_nightly_run_is_refused_while_one_holds_the_lock(tmp_path, capsys):
    from fovea_tui.engine.infra.locks import acquire

    settings, cfg = make_settings(tmp_path, "postgresql://u:p@127.0.0.1:1/x", target=None)
    held, release = threading.Event(), threading.Event()

    def holder():
        with acquire(settings, "nightly", purpose="nightly run"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        assert main(["--config", cfg, "run-nightly"]) == 3
    finally:
        release.set()
        t.join(10)
    assert "nightly lock is held" in capsys.readouterr().err
