"""Webhooks against real HTTP servers on 127.0.0.1: delivery, retries, give-up, masking."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fovea_tui import masking
from fovea_tui.config import settings_from_dict
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops import notify

FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}


class Server:
    """Answers POSTs with the next status of `script` (the last one repeats)."""

    def __init__(self, script=(200,), delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.bodies.append(json.loads(body))
                outer.headers.append(dict(self.headers))
                if delay:
                    time.sleep(delay)
                status = script[min(len(outer.bodies), len(script)) - 1]
                try:
                    self.send_response(status)
                    self.end_headers()
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path="/services/T1/B2/tok-abcdef?sig=xyz") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def server_factory():
    made = []

    def make(*a, **kw):
        s = Server(*a, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook/secret-path"


def test_delivers_json(server_factory):
    srv = server_factory()
    d = notify.post_json(srv.url(), {"event": "nightly", "ok": True}, **FAST)
    assert d.ok and d.attempts == 1 and d.status == 200
    assert srv.bodies == [{"event": "nightly", "ok": True}]
    assert srv.headers[0]["Content-Type"] == "application/json"
    assert srv.headers[0]["User-Agent"].startswith("fovea-tui/")
    assert "tok-abcdef" not in d.url and "sig=xyz" not in d.url


def test_retries_server_errors_then_succeeds(server_factory):
    srv = server_factory(script=(503, 500, 200))
    d = notify.post_json(srv.url(), {"n": 1}, **FAST)
    assert d.ok and d.attempts == 3 and len(srv.bodies) == 3


def test_gives_up_after_three_attempts(server_factory):
    srv = server_factory(script=(502,))
    d = notify.post_json(srv.url(), {"n": 1}, **FAST)
    assert not d.ok and d.attempts == 3 and d.status == 502 and len(srv.bodies) == 3


def test_client_errors_are_not_retried(server_factory):
    srv = server_factory(script=(404,))
    d = notify.post_json(srv.url(), {"n": 1}, **FAST)
    assert not d.ok and d.attempts == 1 and d.status == 404 and "404" in d.error


def test_closed_port_fails_quickly_and_never_raises():
    url = closed_port_url()
    started = time.monotonic()
    d = notify.post_json(url, {"n": 1}, **FAST)
    assert not d.ok and d.attempts == 3
    assert time.monotonic() - started < 5
    assert "secret-path" not in d.url and "secret-path" not in d.error


def test_a_hanging_webhook_times_out(server_factory):
    srv = server_factory(delay=2.0)
    started = time.monotonic()
    d = notify.post_json(srv.url(), {"n": 1}, timeout=0.3, attempts=1)
    assert not d.ok and time.monotonic() - started < 1.8
    assert d.error


def test_backoff_is_exponential_and_capped(server_factory):
    srv = server_factory(script=(500,))
    started = time.monotonic()
    notify.post_json(srv.url(), {}, attempts=3, backoff_initial=0.2, backoff_max=0.25)
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 2.0  # waited 0.2 then 0.25 (capped, not 0.4)


@pytest.mark.parametrize("url, shown", [
    ("https://hooks.slack.com/services/T0/B0/XXXX", "https://hooks.slack.com/" + masking.MASK),
    ("https://ntfy.sh/my-topic?auth=abc", "https://ntfy.sh/" + masking.MASK),
    ("http://user:pass@example.org:8080/x", "http://example.org:8080/" + masking.MASK),
    ("https://example.org", "https://example.org/"),
    ("http://[::1]:9000/a", "http://[::1]:9000/" + masking.MASK),
    # Apprise URLs where a token sits in the host's place: nothing of it shown
    ("tgram://123456789:AAbbCCdd/4242", "tgram://" + masking.MASK),
    ("discord://1122334455/webhook-token", "discord://" + masking.MASK),
    ("pover://user-key@app-token", "pover://" + masking.MASK),
    ("ntfy://my-private-topic", "ntfy://" + masking.MASK),
    ("mailtos://me:app-password@smtp.example.org?to=ops@example.org", "mailtos://smtp.example.org/" + masking.MASK),
    ("no scheme at all", masking.MASK),
])
def test_mask_url(url, shown):
    assert notify.mask_url(url) == shown


def test_payload_is_scrubbed_and_failures_warned_and_audited(server_factory, tmp_path):
    masking.register("registered-secret-value-77")
    srv = server_factory()
    dead = closed_port_url()
    settings = settings_from_dict({"backups": {"dir": str(tmp_path / "b")},
                                   "notify": {"webhooks": [srv.url(), dead]}})
    warnings: list[str] = []
    text = "db postgresql://fovea:hunter22@db/x failed; registered-secret-value-77"
    outcomes = notify.deliver(settings, notify.Message(text, text, payload={"event": "nightly", "text": text}),
                              warn=warnings.append, **FAST)
    assert [o["ok"] for o in outcomes] == [True, False]
    body = json.dumps(srv.bodies[0])
    assert "hunter22" not in body and "registered-secret-value-77" not in body
    assert len(warnings) == 1 and "secret-path" not in warnings[0] and "127.0.0.1" in warnings[0]
    (entry,) = audit.read(settings, action="notify")
    assert entry["outcome"] == "failed" and "secret-path" not in json.dumps(entry)


def test_a_backoff_never_carries_a_call_past_its_budget():
    """A first attempt that times out at 0.6 s leaves 0.4 s of a 1 s budget: a 0.5 s backoff
    would end past it, so there is no second attempt (there was one, ending at 1.2 s or later)."""
    hanging = Server(delay=30)
    try:
        d = notify.http_call(hanging.url("/hook"), b"{}", timeout=0.6, budget=1.0, backoff_initial=0.5, backoff_max=0.5)
    finally:
        hanging.close()
    assert not d.ok and d.attempts == 1
    assert d.duration_s < 1.1
