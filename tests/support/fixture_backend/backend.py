#!/usr/bin/env python3
"""A stand-in for Fovea's Node backend in the test stack (stdlib only).

GET  /api/health      {"status":"healthy",...} when `psql -c 'select 1'` against DATABASE_URL
                      succeeds, else 503 {"status":"unhealthy",...}
POST /api/auth/login  {"username","password"} checked against the users table
GET  /api/auth/me     the user behind the session cookie
POST /api/videos/sync the video reconcile, as the real backend does it (below)

Like Fovea's backend, it reconciles the `videos` table with the files under STORAGE_PATH
(/videos) at start-up when NODE_ENV is not "production", and on POST /api/videos/sync: every
`videos` row whose file it does not find is deleted, and the foreign keys' ON DELETE CASCADE
take the video's annotations, summaries and claims with it.
"""

import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

PORT = int(os.environ.get("PORT", "3001"))
SESSIONS = {}
LOCK = threading.Lock()


def pg_env():
    parts = urlsplit(os.environ.get("DATABASE_URL", ""))
    env = dict(os.environ)
    env.update(PGHOST=unquote(parts.hostname or "localhost"), PGPORT=str(parts.port or 5432),
               PGUSER=unquote(parts.username or ""), PGPASSWORD=unquote(parts.password or ""),
               PGDATABASE=unquote(parts.path.lstrip("/")), PGCONNECT_TIMEOUT="3")
    return env


def psql(sql, **variables):
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    for key, value in variables.items():
        cmd += ["-v", f"{key}={value}"]
    return subprocess.run(cmd, input=sql, capture_output=True, text=True, env=pg_env(), timeout=10)


def redis_ok():
    try:
        with socket.create_connection((os.environ.get("REDIS_HOST", "127.0.0.1"),
                                       int(os.environ.get("REDIS_PORT", "6379"))), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


STORAGE = os.environ.get("STORAGE_PATH", "/videos")
SKIP = ("thumbnails",)


def video_files():
    """File names of the videos under STORAGE (sidecars and thumbnails are not videos)."""
    found = set()
    for _directory, dirs, files in os.walk(STORAGE):
        dirs[:] = [d for d in dirs if d not in SKIP]
        for name in files:
            if not name.endswith(".info.json") and not name.startswith("."):
                found.add(name)
    return found


def _copy_text(value):
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def reconcile():
    """Delete the rows of videos whose file is gone; returns (deleted, error)."""
    names = sorted(video_files())
    sql = ("BEGIN;\nCREATE TEMP TABLE found (name text) ON COMMIT DROP;\nCOPY found FROM stdin;\n"
           + "".join(_copy_text(n) + "\n" for n in names) + "\\.\n"
           + "WITH gone AS (DELETE FROM videos WHERE filename NOT IN (SELECT name FROM found) RETURNING id) "
             "SELECT count(*) FROM gone;\nCOMMIT;\n")
    r = psql(sql)
    if r.returncode != 0:
        return None, r.stderr.strip()
    return int(r.stdout.split()[0]), ""


def reconcile_at_start(timeout=60.0):
    """Outside production: reconcile once the database answers with a videos table."""
    if os.environ.get("NODE_ENV", "production") == "production":
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = psql("SELECT to_regclass('public.videos') IS NOT NULL")
        if r.returncode == 0 and r.stdout.strip() == "t":
            deleted, error = reconcile()
            print(f"video sync at start: deleted {deleted} rows" if error == "" else f"video sync failed: {error}",
                  flush=True)
            return
        time.sleep(0.5)
    print("video sync at start: no database with a videos table", flush=True)


def verify(password, stored):
    try:
        scheme, salt, _ = stored.split("$", 2)
    except ValueError:
        return False
    digest = hashlib.sha256((salt + password).encode("utf-8")).hexdigest()
    return scheme == "sha256" and secrets.compare_digest(f"sha256${salt}${digest}", stored)


class Handler(BaseHTTPRequestHandler):
    server_version = "fovea-test-backend/1"

    def log_message(self, fmt, *args):  # container logs
        sys.stderr.write(f"{self.address_string()} {fmt % args}\n")

    def reply(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/api/health":
            try:
                r = psql("select 1")
                db_ok = r.returncode == 0 and r.stdout.strip() == "1"
            except subprocess.TimeoutExpired:
                db_ok = False
            body = {"status": "healthy" if db_ok else "unhealthy",
                    "database": "connected" if db_ok else "disconnected",
                    "redis": "connected" if redis_ok() else "disconnected"}
            return self.reply(200 if db_ok else 503, body)
        if path == "/api/auth/me":
            token = ""
            for part in self.headers.get("Cookie", "").split(";"):
                key, _, value = part.strip().partition("=")
                if key == "session":
                    token = value
            with LOCK:
                user = SESSIONS.get(token)
            if not user:
                return self.reply(401, {"error": "Not authenticated"})
            return self.reply(200, {"user": user})
        return self.reply(404, {"error": "Not found"})

    def do_POST(self):
        if self.path.split("?", 1)[0] == "/api/videos/sync":
            deleted, error = reconcile()
            if error:
                return self.reply(500, {"error": error})
            return self.reply(200, {"deleted": deleted})
        if self.path.split("?", 1)[0] != "/api/auth/login":
            return self.reply(404, {"error": "Not found"})
        try:
            length = int(self.headers.get("Content-Length", "0"))
            payload = json.loads(self.rfile.read(length) or b"{}")
            username, password = str(payload["username"]), str(payload["password"])
        except (ValueError, KeyError, TypeError):
            return self.reply(400, {"error": "username and password are required"})
        r = psql('SELECT id, username, "displayName", "isAdmin", "passwordHash" FROM users '
                 "WHERE username = :'u'", u=username)
        if r.returncode != 0:
            return self.reply(503, {"error": "database unavailable"})
        line = r.stdout.strip()
        if not line:
            return self.reply(401, {"error": "Invalid credentials"})
        uid, uname, display, is_admin, stored = line.split("|", 4)
        if not verify(password, stored):
            return self.reply(401, {"error": "Invalid credentials"})
        user = {"id": uid, "username": uname, "displayName": display, "isAdmin": is_admin == "t"}
        token = secrets.token_hex(24)
        with LOCK:
            SESSIONS[token] = user
        return self.reply(200, {"user": user}, [("Set-Cookie", f"session={token}; HttpOnly; Path=/")])


def main():
    reconcile_at_start()
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"backend listening on 127.0.0.1:{PORT}", flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
