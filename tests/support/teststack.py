"""A compose-labelled Fovea stack made of real processes in real containers, for tests.

No registry is reachable, so the image is an empty imported tarball and every container
bind-mounts the host's /usr, /lib, /lib64, /bin, /sbin and /etc read-only (plus pgserver's
PostgreSQL 16 install at the same path). Containers use host networking and are reached on
127.0.0.1 or through `docker exec`. Labels and names are what docker compose v2 writes, so
the code under test finds this stack exactly the way it finds a real one.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import socket
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from fovea_tui.sandbox import (
    NEXT_MIGRATION,
    SCHEMA_MIGRATIONS,
    make_video_files,
    record_migrations_sql,
    schema_sql,
    seed_sql,
)

from .services import free_port, sql_ident

BASE_IMAGE_REPO = "fovea-tui-test-base"
BASE_IMAGE = f"{BASE_IMAGE_REPO}:latest"
HOST_RO_DIRS = ["/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"]
FIXTURE_BACKEND = Path(__file__).with_name("fixture_backend")
COMPOSE_VERSION = "2.29.7"
SERVICES = ["postgres", "redis", "backend", "frontend", "model-service"]
REDIS_QUEUES = {
    "bull:video-summarization:wait": ["101", "102", "103"],
    "bull:claim-extraction:active": ["201"],
}
SEED_TEMPLATE_DB = "fovea_seed_template"
FRONTEND_STOP_GRACE_S = 1   # the SIGTERM-deaf frontend's stop_grace_period
MODEL_READY_S = 1           # the model service's "weights loaded" delay


def ensure_base_image(client) -> str:
    """Import an empty tarball as the base image, once."""
    import docker

    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w"):
        pass
    client.api.import_image_from_data(buf.getvalue(), repository=BASE_IMAGE_REPO, tag="latest")
    client.images.get(BASE_IMAGE)
    return BASE_IMAGE


def exec_stdin(client, container_id: str, cmd: list[str], data: bytes = b"", *, user: str = "",
               environment: dict | None = None, timeout: float = 300) -> tuple[int, bytes, bytes]:
    """docker exec with `data` streamed to stdin; returns (exit code, stdout, stderr)."""
    ex = client.api.exec_create(container_id, cmd, stdin=True, stdout=True, stderr=True, tty=False,
                                user=user, environment=environment)
    sock = client.api.exec_start(ex["Id"], socket=True)
    raw = getattr(sock, "_sock", sock)
    raw.settimeout(timeout)

    def writer() -> None:
        try:
            if data:
                raw.sendall(data)
        except OSError:
            pass
        finally:
            try:
                raw.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    streams = {1: bytearray(), 2: bytearray()}
    buf = bytearray()
    while True:
        chunk = raw.recv(1 << 16)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 8:
            size = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + size:
                break
            streams.setdefault(buf[0], bytearray()).extend(buf[8:8 + size])
            del buf[:8 + size]
    t.join(5)
    try:
        sock.close()
    except Exception:  # noqa: BLE001
        pass
    deadline = time.monotonic() + 10
    while True:
        info = client.api.exec_inspect(ex["Id"])
        if not info.get("Running") or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    return info.get("ExitCode") if info.get("ExitCode") is not None else -1, bytes(streams[1]), bytes(streams[2])


def remove_orphaned_stacks(client) -> None:
    """Remove test stacks left by a session that died: their working dir is gone.

    Stacks of sessions still running (other engineers, other xdist workers) keep their
    working dir, so they are left alone.
    """
    for c in client.containers.list(all=True, filters={"label": "com.docker.compose.project"}):
        project = c.labels.get("com.docker.compose.project", "")
        workdir = c.labels.get("com.docker.compose.project.working_dir", "")
        if project.startswith("fovea-test-") and workdir and not os.path.exists(workdir):
            try:
                c.remove(force=True, v=True)
            except Exception:  # noqa: BLE001
                pass


def _dotenv_quote(value: str) -> str:
    """Single-quoted .env value that python-dotenv reads back verbatim."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


_PG_ENTRYPOINT = r"""
set -eu
chmod 1777 /tmp  # a restarted container's tmpfs may come back without the mode
mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    umask 077
    printf '%s' "$POSTGRES_PASSWORD" > /tmp/.pwfile
    chown postgres /tmp/.pwfile
    setpriv --reuid=postgres --regid=postgres --init-groups \
        initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile=/tmp/.pwfile \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C --no-sync >/dev/null
    rm -f /tmp/.pwfile
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups \
    postgres -D "$PGDATA" -p "$PGPORT" -k /tmp -c listen_addresses=127.0.0.1 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off
"""

_SLEEPER = "trap 'exit 0' TERM INT; sleep infinity & wait"
# A Node process as PID 1 installs no SIGTERM handler, and the kernel delivers no signal
# without one to PID 1: `docker stop` waits its whole grace period, then SIGKILLs.
DEAF_TO_SIGTERM = ["/bin/sleep", "infinity"]


def seconds(value: float) -> int:
    """Docker's healthcheck and StopTimeout durations: nanoseconds for health, whole s for stop."""
    return int(value * 1_000_000_000)


def healthcheck(test: list[str], *, interval: float, retries: int, start_period: float, timeout: float = 5) -> dict:
    """A compose `healthcheck:` block as the Docker API takes it."""
    return {"test": test, "interval": seconds(interval), "timeout": seconds(timeout), "retries": retries,
            "start_period": seconds(start_period)}


def slow_service(ready_after: float) -> tuple[list[str], list[str]]:
    """(command, healthcheck test) of a service that turns healthy `ready_after` seconds after
    it starts, as a model service loading its weights does."""
    return (["/bin/sh", "-c", f"rm -f /tmp/ready; trap 'exit 0' TERM; (sleep {ready_after}; touch /tmp/ready) & "
                              "sleep infinity & wait"],
            ["CMD", "/usr/bin/test", "-e", "/tmp/ready"])


@dataclass
class Ports:
    pg: int
    redis: int
    backend: int


class TestStack:
    __test__ = False  # not a pytest test class

    def __init__(self, client, pg_install: Path, *, videos: int = 20, seed: int = 0) -> None:
        self.client = client
        self.pg_install = Path(pg_install)
        self.pg_bin = self.pg_install / "bin"
        self.project = f"fovea-test-{secrets.token_hex(3)}"
        self.ports = Ports(pg=free_port(), redis=free_port(), backend=free_port())
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.project}-"))
        self.pgdata = self.workdir / "pgdata"
        self.videos_dir = self.workdir / "videos"
        self.app_dir = self.workdir / "app"
        self.env_file = self.workdir / ".env"
        self.n_videos = videos
        self.seed = seed
        self.password = "St@ck:p/w#%&\"' " + secrets.token_urlsafe(6)
        self.admin_password = "adm!n-" + secrets.token_urlsafe(9)
        self.env: dict[str, str] = {}
        self.video_files: list[tuple[str, str, int]] = []
        self._containers: dict[str, object] = {}
        self._specs: dict[str, dict] = {}

    # ------------------------------------------------------------------ facts
    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.backend}/api/health"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.backend}"

    migrate_command = ["python3", "/app/migrate.py"]
    pending_migration = NEXT_MIGRATION[0]
    applied_migrations = [name for name, _ in SCHEMA_MIGRATIONS]

    @property
    def database_url_host(self) -> str:
        """DATABASE_URL as seen from this host (and from the host-networked containers)."""
        return (f"postgresql://fovea:{quote(self.password, safe='')}@127.0.0.1:{self.ports.pg}/fovea")

    def container_name(self, service: str) -> str:
        return f"{self.project}-{service}-1"

    def container(self, service: str):
        c = self.client.containers.get(self.container_name(service))
        return c

    def labels(self, service: str, depends_on: str = "") -> dict[str, str]:
        return {
            "com.docker.compose.project": self.project,
            "com.docker.compose.service": service,
            "com.docker.compose.container-number": "1",
            "com.docker.compose.oneoff": "False",
            "com.docker.compose.project.working_dir": str(self.workdir),
            "com.docker.compose.project.config_files": str(self.workdir / "docker-compose.yml"),
            "com.docker.compose.depends_on": depends_on,
            "com.docker.compose.version": COMPOSE_VERSION,
            "com.docker.compose.image": BASE_IMAGE,
        }

    # ------------------------------------------------------------------ build
    def _write_files(self) -> None:
        self.video_files = make_video_files(self.videos_dir, self.n_videos, 2048, 48 * 1024, seed=self.seed)
        migrations = self.app_dir / "prisma" / "migrations"
        migrations.mkdir(parents=True)
        for name, sql in SCHEMA_MIGRATIONS + [NEXT_MIGRATION]:
            (migrations / name).mkdir()
            (migrations / name / "migration.sql").write_text(sql, encoding="utf-8")
        (migrations / "migration_lock.toml").write_text('provider = "postgresql"\n')
        for f in ("backend.py", "migrate.py"):
            shutil.copy(FIXTURE_BACKEND / f, self.app_dir / f)
        self.env = {
            "NODE_ENV": "production",
            "POSTGRES_USER": "fovea",
            "POSTGRES_DB": "fovea",
            "POSTGRES_PASSWORD": self.password,
            "DATABASE_URL": f"postgresql://fovea:{quote(self.password, safe='')}@postgres:5432/fovea",
            "SESSION_SECRET": secrets.token_hex(32),
            "API_KEY_ENCRYPTION_KEY": secrets.token_hex(32),
            "ADMIN_PASSWORD": self.admin_password,
            "REDIS_HOST": "redis",
            "REDIS_PORT": str(self.ports.redis),
            "STORAGE_PATH": "/videos",
            "THUMBNAIL_PATH": "/videos/thumbnails",
            "VIDEO_STORAGE_TYPE": "local",
            "S3_BUCKET": "",
            "S3_REGION": "us-east-1",
            "S3_ENDPOINT": "",
            "FRONTEND_URL": "http://localhost:3000",
            "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(12),
        }
        lines = ["# Fovea test stack (generated)"]
        lines += [f"{k}={_dotenv_quote(v)}" for k, v in self.env.items()]
        fd = os.open(self.env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        (self.workdir / "docker-compose.yml").write_text(
            "# stand-in: the test stack is created through the Docker API with compose labels\n"
            "name: " + self.project + "\nservices: {}\n")
        self.pgdata.mkdir()

    def _mounts(self, extra: list | None = None) -> list:
        from docker.types import Mount

        mounts = [Mount(target=d, source=d, type="bind", read_only=True)
                  for d in HOST_RO_DIRS if os.path.exists(d)]
        # pgserver's binaries find their bundled shared libraries (auditwheel's
        # `pgserver.libs`, beside the package) through an $ORIGIN-relative rpath.
        for path in (self.pg_install, self.pg_install.parent.parent / "pgserver.libs"):
            if path.exists():
                mounts.append(Mount(target=str(path), source=str(path), type="bind", read_only=True))
        return mounts + (extra or [])

    def _create(self, service: str, command: list[str], *, environment: dict | None = None,
                healthcheck: dict | None = None, depends_on: str = "", extra_mounts: list | None = None,
                stop_signal: str = "SIGTERM", working_dir: str = "/", stop_timeout: int | None = None) -> None:
        """One service's container, as compose creates it from the service's block; the spec is
        kept so `changed()` can recreate the service with some of it replaced."""
        spec = dict(command=command, environment=environment, healthcheck=healthcheck, depends_on=depends_on,
                    extra_mounts=extra_mounts, stop_signal=stop_signal, working_dir=working_dir,
                    stop_timeout=stop_timeout)
        self._specs[service] = spec
        env = {"PATH": f"{self.pg_bin}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": "/tmp",
               "LANG": "C.UTF-8"}
        env.update(environment or {})
        api = self.client.api  # the low-level call: the high-level one has no stop_timeout
        host_config = api.create_host_config(mounts=self._mounts(extra_mounts), network_mode="host",
                                             tmpfs={"/tmp": "mode=1777", "/run": "mode=755"})
        created = api.create_container(
            BASE_IMAGE, command=command, name=self.container_name(service), labels=self.labels(service, depends_on),
            environment=env, host_config=host_config, stop_signal=stop_signal, working_dir=working_dir,
            hostname=service, healthcheck=healthcheck or None,
            stop_timeout=stop_timeout)  # compose's stop_grace_period
        self._containers[service] = self.client.containers.get(created["Id"])

    @contextlib.contextmanager
    def changed(self, service: str, **changes):
        """The service recreated with some of its spec replaced (as an edited compose file and
        `docker compose up` would), running when it was; put back as it was afterwards (running
        when it then runs: the `stack` fixture starts whatever a test left stopped)."""
        original = dict(self._specs[service])
        self._recreate(service, {**original, **changes})
        try:
            yield self.container(service)
        finally:
            self._recreate(service, original)

    def _recreate(self, service: str, spec: dict) -> None:
        c = self.container(service)
        c.reload()
        was_running = c.status == "running"
        c.remove(force=True)
        spec = dict(spec)
        self._create(service, spec.pop("command"), **spec)
        if was_running:
            self.container(service).start()

    def _create_all(self) -> None:
        from docker.types import Mount

        p = self.ports
        pg_env = {"PGDATA": "/var/lib/postgresql/data", "PGHOST": "/tmp", "PGPORT": str(p.pg),
                  "POSTGRES_USER": "fovea", "POSTGRES_DB": "fovea", "POSTGRES_PASSWORD": self.password}
        # Fovea's compose file, its timings shortened for tests: healthchecks with a start
        # period, an interval and retries; depends_on conditions in compose's label.
        self._create(
            "postgres", ["/bin/sh", "-c", _PG_ENTRYPOINT], environment=pg_env, stop_signal="SIGINT",
            healthcheck=healthcheck(["CMD", str(self.pg_bin / "pg_isready"), "-q", "-h", "/tmp", "-p", str(p.pg),
                                     "-U", "fovea", "-d", "postgres"], interval=0.5, retries=10, start_period=30),
            extra_mounts=[Mount(target="/var/lib/postgresql/data", source=str(self.pgdata), type="bind")])
        self._create(
            "redis", ["/usr/bin/redis-server", "--port", str(p.redis), "--bind", "127.0.0.1", "--save", "",
                      "--appendonly", "no", "--dir", "/tmp", "--protected-mode", "no", "--loglevel", "warning"],
            healthcheck=healthcheck(["CMD", "/usr/bin/redis-cli", "-p", str(p.redis), "ping"],
                                    interval=0.5, retries=10, start_period=10))
        self._create_backend()
        # a Node PID 1 that ignores SIGTERM, with a short stop_grace_period
        self._create("frontend", DEAF_TO_SIGTERM, depends_on="backend:service_started:false",
                     stop_timeout=FRONTEND_STOP_GRACE_S)
        command, test = slow_service(MODEL_READY_S)
        self._create("model-service", command,
                     healthcheck=healthcheck(test, interval=0.5, retries=3, start_period=60),
                     extra_mounts=[Mount(target="/videos", source=str(self.videos_dir), type="bind")])

    def _create_backend(self) -> None:
        from docker.types import Mount

        p = self.ports
        backend_env = {k: v for k, v in self.env.items()}
        backend_env.update(DATABASE_URL=self.database_url_host, REDIS_HOST="127.0.0.1",
                           REDIS_PORT=str(p.redis), PORT=str(p.backend), PYTHONDONTWRITEBYTECODE="1")
        videos_mount = Mount(target="/videos", source=str(self.videos_dir), type="bind")
        self._create(
            "backend", ["/usr/bin/python3", "/app/backend.py"], environment=backend_env, working_dir="/app",
            depends_on="postgres:service_healthy:false,redis:service_healthy:false",
            healthcheck=healthcheck(["CMD", "/usr/bin/python3", "-c",
                                     "import urllib.request; urllib.request.urlopen("
                                     f"'http://127.0.0.1:{p.backend}/api/health', timeout=3)"],
                                    interval=1, retries=3, start_period=20, timeout=10),
            extra_mounts=[Mount(target="/app", source=str(self.app_dir), type="bind", read_only=True),
                          videos_mount])

    def set_node_env(self, value: str) -> None:
        """Recreate the backend container with NODE_ENV=`value` (outside "production" it deletes
        the rows of missing videos when it starts, like Fovea's backend); left stopped when it was."""
        if self.env.get("NODE_ENV") == value:
            return
        c = self.container("backend")
        c.reload()
        was_running = c.status == "running"
        c.remove(force=True)
        self.env["NODE_ENV"] = value
        self._create_backend()
        if was_running:
            self.container("backend").start()
            self.wait_healthy(["backend"])

    def start(self) -> TestStack:
        ensure_base_image(self.client)
        remove_orphaned_stacks(self.client)
        self._write_files()
        self._create_all()
        # Start everything at once: the backend answers 503 until the database is loaded,
        # which is what a real backend does while postgres comes up.
        threads = [threading.Thread(target=self.container(s).start) for s in SERVICES]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.wait_pg_ready()
        self._load_database()
        self.wait_redis_ready()
        self.seed_redis()
        self.wait_healthy()
        return self

    def close(self) -> None:
        def remove(c) -> None:
            try:
                c.remove(force=True, v=True)
            except Exception:  # noqa: BLE001
                pass

        try:
            found = self.client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={self.project}"})
        except Exception:  # noqa: BLE001
            found = []
        threads = [threading.Thread(target=remove, args=(c,)) for c in found]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------------ readiness
    def exec(self, service: str, cmd: list[str], data: bytes = b"", **kw) -> tuple[int, bytes, bytes]:
        return exec_stdin(self.client, self.container_name(service), cmd, data, **kw)

    def wait_pg_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        c = self.container("postgres")
        while time.monotonic() < deadline:
            c.reload()
            if c.status in ("exited", "dead"):
                break
            rc, _, _ = self.exec("postgres", ["pg_isready", "-q", "-U", "fovea", "-d", "postgres"])
            if rc == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres in {self.project} not ready:\n{self.logs('postgres')}")

    def wait_redis_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.ports.redis), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"redis in {self.project} not ready:\n{self.logs('redis')}")

    def health_status(self, service: str) -> str | None:
        c = self.container(service)
        c.reload()
        health = c.attrs.get("State", {}).get("Health")
        return health.get("Status") if health else None

    def wait_healthy(self, services: list[str] | None = None, timeout: float = 90) -> None:
        """Every service with a healthcheck healthy, every other one running."""
        services = services or SERVICES
        deadline = time.monotonic() + timeout
        pending = list(services)
        while pending and time.monotonic() < deadline:
            for service in list(pending):
                c = self.container(service)
                c.reload()
                state = c.attrs["State"]
                health = state.get("Health")
                if state.get("Running") and (health is None or health.get("Status") == "healthy"):
                    pending.remove(service)
            if pending:
                time.sleep(0.1)
        if pending:
            details = "\n".join(f"--- {s}: {self.container(s).attrs['State']}\n{self.logs(s)}" for s in pending)
            raise RuntimeError(f"services not healthy in {self.project}: {pending}\n{details}")

    def logs(self, service: str) -> str:
        try:
            return self.container(service).logs(tail=50).decode(errors="replace")
        except Exception as exc:  # noqa: BLE001
            return f"(no logs: {exc})"

    def health(self, timeout: float = 5) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.health_url, timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def ensure_running(self) -> None:
        """Start whatever a test left stopped (in compose start order), then wait for health."""
        started = False
        for service in SERVICES:
            c = self.container(service)
            c.reload()
            if c.status != "running":
                c.start()
                started = True
                if service == "postgres":
                    self.wait_pg_ready()
                elif service == "redis":
                    self.wait_redis_ready()
                    self.seed_redis()
        if started:
            self.wait_healthy()

    # ------------------------------------------------------------------ data
    def psql(self, sql: str, db: str = "fovea", *, check: bool = True) -> str:
        """SQL through `docker exec <postgres> psql -U fovea` (stdin); returns stdout (-At)."""
        rc, out, err = self.exec("postgres", ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                                              "-U", "fovea", "-d", db], sql.encode())
        if check and rc != 0:
            raise RuntimeError(f"psql in {self.container_name('postgres')} failed ({rc}): {err.decode().strip()}")
        return out.decode()

    def seed_script(self) -> str:
        videos = [(fn, f"/videos/{rel}", size) for fn, rel, size in self.video_files]
        return (schema_sql() + record_migrations_sql()
                + seed_sql(1, videos, self.seed, admin_password=self.admin_password))

    def _load_database(self) -> None:
        """First start: a seeded template database, then `fovea` cloned from it (one exec)."""
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{SEED_TEMPLATE_DB}'", db="postgres")
        if exists.strip():
            return self.reset_database()
        self.psql(
            f"CREATE DATABASE {SEED_TEMPLATE_DB} OWNER fovea;\n"
            f"\\connect {SEED_TEMPLATE_DB}\n"
            "BEGIN;\n" + self.seed_script() + "\nCOMMIT;\n"
            "\\connect postgres\n"
            f"ALTER DATABASE {SEED_TEMPLATE_DB} WITH IS_TEMPLATE true;\n"
            "DROP DATABASE IF EXISTS fovea WITH (FORCE);\n"
            f"CREATE DATABASE fovea OWNER fovea TEMPLATE {SEED_TEMPLATE_DB};\n",
            db="postgres")

    def reset_database(self) -> None:
        """Drop and recreate `fovea` in the seeded state (from a template in the same cluster)."""
        c = self.container("postgres")
        c.reload()
        if c.status != "running":
            c.start()
        self.wait_pg_ready()
        self.psql("DROP DATABASE IF EXISTS fovea WITH (FORCE);\n"
                  f"CREATE DATABASE fovea OWNER fovea TEMPLATE {SEED_TEMPLATE_DB};\n", db="postgres")

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {sql_ident(name)} WITH (FORCE)", db="postgres")

    def redis_cli(self, *args: str) -> str:
        rc, out, err = self.exec("redis", ["redis-cli", "-p", str(self.ports.redis), *args])
        if rc != 0:
            raise RuntimeError(f"redis-cli failed: {err.decode()}")
        return out.decode()

    def seed_redis(self) -> None:
        for key, values in REDIS_QUEUES.items():
            self.redis_cli("DEL", key)
            self.redis_cli("RPUSH", key, *values)

    # ------------------------------------------------------------------ settings
    def settings(self, tmp_path, **overrides):
        """fovea_tui Settings in docker mode wired to this stack.

        Overrides are per section: settings(tmp, backups={"offsite": "s3://b/p/"}).
        """
        from fovea_tui.config import settings_from_dict

        data = {
            "install": {"compose_project": self.project, "env_file": str(self.env_file)},
            "database": {"mode": "docker", "service": "postgres", "name": "fovea", "user": "fovea"},
            "backups": {"dir": str(Path(tmp_path) / "backups")},
            "volume": {"path": str(self.videos_dir)},
            "stack": {"backend_service": "backend", "migrate_command": list(self.migrate_command),
                      "health_url": self.health_url},
        }
        for section, values in overrides.items():
            if not isinstance(values, dict):
                raise TypeError(f"override {section}= must be a dict of keys for [{section}]")
            data.setdefault(section, {}).update(values)
        return settings_from_dict(data)
