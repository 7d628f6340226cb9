"""A tiny HTTP proxy on 127.0.0.1 in front of moto's S3 server that injects faults.

Real HTTP all the way: boto3 talks to this proxy as its endpoint, the proxy forwards every
request to moto unless a rule matches, in which case it answers 500/503 with an S3 error
document, sleeps first (a slow store), or drops the connection half-way.

    proxy = FaultProxy(s3.endpoint_url).start()
    proxy.add("PUT", "fovea-", status=503, times=2)     # the next two matching PUTs get a 503
    proxy.add("GET", "list-type=2", delay=3.0)          # every matching listing is slow
    proxy.add("GET", ".sql.gz", drop_after=1000)        # cut a download after 1000 bytes
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_ERROR_BODY = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
               "<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>")
_CODES = {403: "AccessDenied", 500: "InternalError", 503: "SlowDown"}


@dataclass
class Rule:
    method: str | None
    contains: str
    status: int | None = None
    delay: float = 0.0
    drop_after: int | None = None
    times: int | None = None  # None: every time
    call: Callable[[], None] | None = None  # run when the rule fires (stop the store...)
    path_end: str | None = None  # the path (query left out) ends with this
    hits: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.path_end is not None and not target.split("?", 1)[0].endswith(self.path_end):
            return False
        return (self.method is None or self.method == method) and self.contains in target


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.rules: list[Rule] = []
        self.seen: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def endpoint_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, method: str | None, contains: str = "", **kw) -> Rule:
        rule = Rule(method, contains, **kw)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def _pick(self, method: str, target: str) -> Rule | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, target):
                    rule.hits += 1
                    return rule
        return None

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = bytearray()
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass
                            return bytes(data)
                        data += self.rfile.read(size)
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                method, target = self.command, self.path
                body = self._body()
                rule = proxy._pick(method, target)
                if rule is not None and rule.call is not None:
                    rule.call()
                if rule is not None and rule.delay:
                    time.sleep(rule.delay)
                if rule is not None and rule.status:
                    with proxy._lock:
                        proxy.seen.append((method, target, rule.status))
                    text = _ERROR_BODY.format(code=_CODES.get(rule.status, "InternalError")).encode()
                    self.send_response(rule.status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(text)))
                    self.end_headers()
                    if method != "HEAD":  # a HEAD answer has no body; one would corrupt the connection
                        self.wfile.write(text)
                    return
                headers = {k: v for k, v in self.headers.items()
                           if k.lower() not in ("transfer-encoding", "content-length", "connection")}
                headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(method, target, body=body, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                except OSError:  # the store behind is down: so is this connection
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                finally:
                    conn.close()
                with proxy._lock:
                    proxy.seen.append((method, target, resp.status))
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "date", "server"):
                        self.send_header(k, v)
                length = resp.getheader("Content-Length") if method == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if rule is not None and rule.drop_after is not None:
                    self.wfile.write(data[: rule.drop_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request, client_address) -> None:  # a client that hung up: fine
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                         name="s3-fault-proxy", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
