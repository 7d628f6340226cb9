"""Local stand-ins for what alerts reach: an HTTP server (a Healthchecks check, an Uptime
Kuma push monitor, an Apprise json:// endpoint) and an SMTP server (aiosmtpd) that keep
every request or message they get, so a test reads back what a person would see."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str          # without the query
    query: dict[str, list[str]]
    body: bytes
    content_type: str
    at: float          # time.monotonic() when it arrived

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class HttpReceiver:
    """Answers every request with `status` after `delay` seconds and records it."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.requests: list[Request] = []
        self.status = status
        self.delay = delay
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                outer.requests.append(Request(self.command, parts.path, parse_qs(parts.query), body,
                                              self.headers.get("Content-Type", ""), time.monotonic()))
                if outer.delay:
                    time.sleep(outer.delay)
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                except OSError:
                    pass

            do_GET = do_POST = do_HEAD = _handle  # noqa: N815

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.requests

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SmtpReceiver:
    """aiosmtpd on 127.0.0.1 keeping every message it accepts, parsed."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        outer = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):  # noqa: N802
                outer.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
                outer.messages.append(message_from_bytes(envelope.original_content or envelope.content,
                                                         policy=policy.default))
                return "250 OK"

        self.port = free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self, to: str = "ops@example.org", sender: str = "fovea@example.org") -> str:
        return f"mailto://127.0.0.1:{self.port}?from={sender}&to={to}"

    def close(self) -> None:
        self.controller.stop()
