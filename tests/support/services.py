"""Real services for the tests: a Docker engine, a throwaway PostgreSQL 16 cluster, moto's S3.

Policy for every service: when it cannot be provided, skip the test with the reason, except
under CI=true, where the test fails with a clear message (never a silent skip in CI).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from fovea_tui.sandbox import record_migrations_sql, schema_sql, seed_sql

# Special characters on purpose: URL-encoding, shell quoting, .env quoting and SQL
# literals all get exercised.
PG_PASSWORD = "p@ss:w/rd#%&\"' $x"


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> None:
    """Skip, or fail under CI=true. Never returns."""
    if in_ci():
        pytest.fail(f"required test service unavailable (CI=true, so this is a failure): {reason}",
                    pytrace=False)
    pytest.skip(reason)


def local_psql_pids(database: str, *flags: bytes) -> list[int]:
    """psql processes on this host connected to `database` (by their argv), with every flag
    of `flags` among their arguments."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                argv = fh.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"/psql") and database.encode() in argv and all(f in argv for f in flags):
            pids.append(int(entry.name))
    return pids


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


# --------------------------------------------------------------------------- docker


def docker_client_or_fail():
    """A docker SDK client talking to a live engine, or skip/fail per the policy."""
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - the docker SDK is a runtime dependency
        unavailable(f"the docker Python SDK is not importable: {exc}")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure means "no engine"
        unavailable(f"no Docker engine answers ({exc.__class__.__name__}: {exc}); "
                    "run scripts/ensure-services.sh")
    return client


# --------------------------------------------------------------------------- postgres


def pg_install_dir() -> Path | None:
    """pgserver's bundled PostgreSQL 16 (+ pgvector) install prefix, if the wheel is there."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    prefix = Path(list(spec.submodule_search_locations)[0]) / "pginstall"
    return prefix if (prefix / "bin" / "postgres").exists() else None


def pg_bin_dir_or_fail() -> Path:
    prefix = pg_install_dir()
    if prefix is None:
        unavailable("the pgserver wheel (PostgreSQL 16 + pgvector) is not installed")
    return prefix / "bin"


def _run_as() -> tuple[int, int] | None:
    """(uid, gid) of the OS user that runs postgres when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "pgserver"):
        try:
            pw = pwd.getpwnam(name)
            return pw.pw_uid, pw.pw_gid
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "pgserver"], check=True, capture_output=True)
    pw = pwd.getpwnam("pgserver")
    return pw.pw_uid, pw.pw_gid


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_ident(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


class PgCluster:
    """A throwaway PostgreSQL 16 cluster from pgserver's binaries, on 127.0.0.1:<port>.

    TCP needs a password (scram-sha-256); the Unix socket in `socket_dir` trusts local
    users, which is how `psql()` reaches it as the superuser `postgres`.
    """

    def __init__(self, bin_dir: Path, *, password: str = PG_PASSWORD, user: str = "fovea",
                 database: str = "fovea") -> None:
        self.bin_dir = Path(bin_dir)
        self.password = password
        self.user = user
        self.database = database
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="fovea-pg-"))
        self.data_dir = self.base / "data"
        self.socket_dir = self.base
        self.log_file = self.base / "postgres.log"
        self._ids = _run_as()
        self.template = f"{database}_seed_template"
        self._lock = threading.Lock()

    # -- lifecycle
    def _as_owner(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        if self._ids:
            kw.setdefault("user", self._ids[0])
            kw.setdefault("group", self._ids[1])
            kw.setdefault("extra_groups", [])
        return subprocess.run(cmd, capture_output=True, text=True, cwd=self.base, **kw)

    def start(self) -> PgCluster:
        if self._ids:
            os.chown(self.base, *self._ids)
        if not (self.data_dir / "PG_VERSION").exists():
            r = self._as_owner([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8",
                                "--locale=C", "--no-sync"])
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed: {r.stderr.strip()}")
        opts = (f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=50")
        r = self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                            "-o", opts, "-w", "-t", "60", "start"])
        if r.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise RuntimeError(f"postgres did not start: {r.stderr.strip()}\n{log}")
        return self

    def stop(self) -> None:
        self._as_owner([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w",
                        "stop"])

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    # -- access
    @property
    def url(self) -> str:
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@127.0.0.1:{self.port}/{quote(self.database, safe='')}")

    def url_for(self, database: str) -> str:
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@127.0.0.1:{self.port}/{quote(database, safe='')}")

    def env(self, user: str = "postgres") -> dict[str, str]:
        """libpq environment for the superuser over the local socket."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST=str(self.socket_dir), PGPORT=str(self.port), PGUSER=user)
        return env

    def tcp_env(self) -> dict[str, str]:
        """libpq environment for the app role over TCP with its password (never in argv)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(PGHOST="127.0.0.1", PGPORT=str(self.port), PGUSER=self.user,
                   PGPASSWORD=self.password, PGDATABASE=self.database)
        return env

    def psql(self, sql: str, db: str | None = None, *, user: str = "postgres", check: bool = True) -> str:
        """Run SQL (stdin) with psql -At as `user` (default the superuser); returns stdout."""
        cmd = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-d", db or self.database]
        r = subprocess.run(cmd, input=sql, capture_output=True, text=True, env=self.env(user))
        if check and r.returncode != 0:
            raise RuntimeError(f"psql failed ({r.returncode}): {r.stderr.strip()}")
        return r.stdout

    # -- databases
    def bootstrap(self, *, scale: int = 1, videos=None, seed: int = 0, admin_password: str = "admin") -> None:
        """Role, seeded template database, and the app database cloned from it."""
        self.psql(
            f"CREATE ROLE {sql_ident(self.user)} LOGIN SUPERUSER PASSWORD {sql_literal(self.password)};",
            db="postgres")
        self.psql(f"CREATE DATABASE {sql_ident(self.template)} OWNER {sql_ident(self.user)};", db="postgres")
        script = schema_sql() + record_migrations_sql() + seed_sql(scale, videos, seed,
                                                                   admin_password=admin_password)
        # As the app role, so every object is owned by it like in a real install.
        self.psql("BEGIN;\n" + script + "\nCOMMIT;\n", db=self.template, user=self.user)
        self.psql(f"ALTER DATABASE {sql_ident(self.template)} WITH IS_TEMPLATE true;", db="postgres")
        self.create_database(self.database)

    def create_database(self, name: str, *, seeded: bool = True) -> str:
        """A new database owned by the app role; a copy of the seeded one unless seeded=False."""
        template = f" TEMPLATE {sql_ident(self.template)}" if seeded else ""
        with self._lock:  # CREATE DATABASE ... TEMPLATE needs the template free of sessions
            self.psql(f"CREATE DATABASE {sql_ident(name)} OWNER {sql_ident(self.user)}{template};",
                      db="postgres")
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {sql_ident(name)} WITH (FORCE);", db="postgres")

    def unique_name(self, prefix: str = "fovea_t") -> str:
        return f"{prefix}_{uuid.uuid4().hex[:10]}"


# --------------------------------------------------------------------------- S3


class S3Server:
    """moto's S3 server on 127.0.0.1:<port>; stop() and start() simulate an outage.

    moto keeps its state per process, so buckets and objects survive a stop/start (like
    a real store coming back). Use unique bucket names per test.
    """

    region = "us-east-1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._server = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> S3Server:
        """Serve on 127.0.0.1:<port> (the same port after a stop()). Idempotent."""
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        with self._lock:
            if self._server is not None:
                return self
            # What ThreadedMotoServer does, except that a bind error is raised here rather
            # than lost in the thread (which would leave start() waiting forever).
            last: Exception | None = None
            for _ in range(50):
                try:
                    server = make_server("127.0.0.1", self.port, DomainDispatcherApplication(create_backend_app),
                                         threaded=True, request_handler=MotoRequestHandler)
                    break
                except OSError as exc:  # pragma: no cover - timing dependent
                    last = exc
                    time.sleep(0.1)
            else:  # pragma: no cover
                raise RuntimeError(f"moto could not bind 127.0.0.1:{self.port}: {last}")
            self._server = server
            self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                            name=f"moto-s3-{self.port}", daemon=True)
            self._thread.start()
        if not wait_port(self.port, 10):
            raise RuntimeError("moto server did not come up")
        return self

    def stop(self) -> None:
        """Stop answering: the listening socket is closed, so clients get connection refused.

        Requests already being served finish on their own threads.
        """
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(10)

    def client(self, **kw):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id="testing", aws_secret_access_key="testing", **kw)

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"fovea-test-{uuid.uuid4().hex[:10]}"
        self.client().create_bucket(Bucket=name)
        return name

    def reset(self) -> None:
        """Forget every bucket (moto's reset API)."""
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST"),
                               timeout=10).read()


FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
