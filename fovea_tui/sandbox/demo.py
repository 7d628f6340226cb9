"""The sandbox install behind `fovea-tui demo` and `make demo`.

Under ./.demo (or $FOVEA_TUI_DEMO_DIR): a PostgreSQL 16 + pgvector cluster from the
pgserver wheel holding Fovea-shaped data, a video volume of a few hundred small blobs, an
env file (0600, fake secrets), four months of dump history (real gzip dumps with
manifests, a few legacy cron dumps, one truncated dump, one pre-restore safety dump), an
off-site directory, an audit log, and a fovea-tui.toml in direct mode pointing at all of
it. Re-running reuses everything; only the database's socket address is refreshed.

No Docker involved: `build` returns a description of the install (`DemoInstall`); the
`demo` command opens the TUI on it with Docker switched off, so it never shows (or touches)
the operator's real containers. Nothing here imports the faces.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fovea_tui import __version__
from fovea_tui.errors import OperationFailed

DEMO_DIR_ENV = "FOVEA_TUI_DEMO_DIR"
DB_NAME = "fovea"
DB_USER = "fovea"
FAKE_PASSWORD = "demo-password-not-a-secret"
VIDEO_COUNT = 240
STATE_FILE = "demo.json"
# For a fovea-tui started as another process on the demo (benchmarks, tests): a DOCKER_HOST
# that points at nothing, so its stack reads "not managed".
NO_DOCKER = "unix:///nonexistent/fovea-tui-demo-has-no-docker.sock"


@dataclass
class DemoInstall:
    root: Path
    config: Path
    anchor: datetime          # "now" when the history was written; screenshots use it
    server: object = None     # the pgserver handle: keep it alive while the demo runs

    @property
    def backups(self) -> Path:
        return self.root / "backups"


def demo_root() -> Path:
    return Path(os.environ.get(DEMO_DIR_ENV) or ".demo").resolve()


def _say(log: Callable[[str], None] | None, text: str) -> None:
    if log:
        log(text)


# --------------------------------------------------------------------------- database


def _pg_bin() -> Path:
    try:
        import pgserver
    except ImportError:
        raise OperationFailed("the demo needs the pgserver wheel (PostgreSQL 16 + pgvector)",
                              hint="pip install 'fovea-tui[demo]', or run `make demo`") from None
    return Path(pgserver.__file__).parent / "pginstall" / "bin"


def _start_server(pgdata: Path):
    import pgserver

    pgdata.mkdir(parents=True, exist_ok=True)
    return pgserver.get_server(pgdata, cleanup_mode="stop")


def _socket_dir(server) -> str:
    info = server.get_postmaster_info()
    return str(info.socket_dir)


def _psql(server, sql: str, *, user: str = "postgres", db: str = "postgres") -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=_socket_dir(server), PGUSER=user, PGDATABASE=db)
    result = subprocess.run([str(_pg_bin() / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"],
                            input=sql, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise OperationFailed(f"demo database setup failed: {result.stderr.strip()[:400]}")
    return result.stdout


def _seed_database(server, videos: list[tuple[str, str, int]]) -> None:
    from fovea_tui.sandbox import record_migrations_sql, schema_sql, seed_sql

    exists = _psql(server, f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}';").strip()
    if exists:
        return
    _psql(server, f"CREATE ROLE {DB_USER} LOGIN SUPERUSER PASSWORD '{FAKE_PASSWORD}';"
          if not _psql(server, f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}';").strip() else "SELECT 1;")
    _psql(server, f"CREATE DATABASE {DB_NAME} OWNER {DB_USER};")
    rows = [(name, f"/videos/{rel}", size) for name, rel, size in videos]
    script = schema_sql() + record_migrations_sql() + seed_sql(2, rows, 0, admin_password="admin")
    _psql(server, "BEGIN;\n" + script + "\nCOMMIT;\n", user=DB_USER, db=DB_NAME)


def _dump(server, dest: Path) -> tuple[dict[str, int], str, str, float]:
    """One real pg_dump, gzipped: (rows per table, server version, pg_dump version, seconds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(PGHOST=_socket_dir(server), PGUSER=DB_USER, PGDATABASE=DB_NAME)
    started = time.monotonic()
    proc = subprocess.run([str(_pg_bin() / "pg_dump"), "--no-owner", DB_NAME], capture_output=True, env=env)
    if proc.returncode != 0:
        raise OperationFailed(f"demo pg_dump failed: {proc.stderr.decode(errors='replace')[:400]}")
    sql = proc.stdout
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6) as fh:
        fh.write(sql)
    os.replace(tmp, dest)
    tables: dict[str, int] = {}
    current, count = None, 0
    for line in sql.split(b"\n"):
        if current is None:
            match = re.match(rb'^COPY (?:public\.)?"?([^"\s(]+)"? ', line)
            if match:
                current, count = match.group(1).decode(), 0
        elif line == b"\\.":
            tables[current] = count
            current = None
        else:
            count += 1
    version = subprocess.run([str(_pg_bin() / "pg_dump"), "--version"], capture_output=True, text=True).stdout
    server_version = _psql(server, "SHOW server_version;", user=DB_USER, db=DB_NAME).strip()
    return tables, server_version, version.strip().rsplit(" ", 1)[-1], time.monotonic() - started


# --------------------------------------------------------------------------- history


def history_times(anchor: datetime) -> list[datetime]:
    """When the demo's dumps were taken: enough for every retention bucket to hold one."""
    anchor = anchor.replace(minute=0, second=0, microsecond=0)
    times: set[datetime] = set()
    for hours in range(1, 13, 3):                 # a few hourly ones today
        times.add(anchor - timedelta(hours=hours, minutes=-7))
    night = anchor.replace(hour=2, minute=15)
    if night > anchor:
        night -= timedelta(days=1)
    for day in range(0, 21):                      # three weeks of nightly dumps
        times.add(night - timedelta(days=day))
    for week in range(3, 12):                     # then Sundays
        sunday = night - timedelta(days=(night.weekday() + 1) % 7 + 7 * week)
        times.add(sunday)
    for month in range(3, 5):                     # then the first of the month
        first = (night.replace(day=1) - timedelta(days=31 * month)).replace(day=1)
        times.add(first)
    return sorted(times)


def _manifest(dump: Path, created: datetime, tables: dict[str, int], server_version: str,
              pg_dump_version: str, env_copy: Path, duration: float) -> dict:
    data = dump.read_bytes()
    return {
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "database": DB_NAME,
        "server_version": server_version,
        "pg_dump_version": pg_dump_version,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "tables": tables,
        "prisma_migrations": [],
        "env_file": {"name": env_copy.name, "sha256": hashlib.sha256(env_copy.read_bytes()).hexdigest()},
        "duration_s": round(duration, 3),
        "tool_version": __version__,
        "demo": True,
    }


def _touch(path: Path, when: datetime) -> None:
    ts = when.timestamp()
    os.utime(path, (ts, ts))


def _write_history(server, root: Path, env_file: Path, anchor: datetime, log) -> None:
    backups = root / "backups"
    offsite = root / "offsite"
    backups.mkdir(parents=True, exist_ok=True)
    offsite.mkdir(parents=True, exist_ok=True)
    state = backups / ".fovea-tui"
    state.mkdir(parents=True, exist_ok=True)
    seed = root / "seed-dump.sql.gz"
    _say(log, "taking one real dump with pg_dump…")
    tables, server_version, pg_dump_version, duration = _dump(server, seed)
    migrations = _psql(server, 'SELECT migration_name FROM "_prisma_migrations" ORDER BY 1;',
                       user=DB_USER, db=DB_NAME).split()
    audit: list[dict] = []
    times = history_times(anchor)
    _say(log, f"writing {len(times)} dumps spread over four months…")
    for i, when in enumerate(times):
        stamp = when.strftime("%Y%m%dT%H%M%SZ")
        dump = backups / f"fovea-{stamp}.sql.gz"
        env_copy = backups / f"fovea-{stamp}.env"
        shutil.copyfile(seed, dump)
        shutil.copyfile(env_file, env_copy)
        os.chmod(env_copy, 0o600)
        manifest = _manifest(dump, when, tables, server_version, pg_dump_version, env_copy, duration)
        manifest["prisma_migrations"] = migrations
        manifest_path = backups / f"{dump.name}.manifest.json"
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
        for path in (dump, env_copy, manifest_path):
            _touch(path, when)
        if i >= len(times) - 10:  # the newest ten are off-site too
            for path in (dump, env_copy, manifest_path):
                shutil.copy2(path, offsite / path.name)
        audit.append({"time": when.isoformat(), "action": "backup", "outcome": "ok",
                      "details": {"dump": dump.name, "size": manifest["size"], "offsite": i >= len(times) - 10}})
    # The runbook's cron line, before fovea-tui: no manifest, no env copy.
    for days in (118, 117, 116):
        when = (anchor - timedelta(days=days)).replace(hour=3, minute=0, second=0, microsecond=0)
        legacy = backups / f"fovea-{when:%Y-%m-%d}.sql.gz"
        shutil.copyfile(seed, legacy)
        _touch(legacy, when)
    # A dump cut short (disk full, a killed cron job): corrupt, never offered for restore.
    when = (anchor - timedelta(days=4)).replace(hour=14, minute=30, second=0, microsecond=0)
    corrupt = backups / f"fovea-{when:%Y%m%dT%H%M%SZ}.sql.gz"
    data = seed.read_bytes()
    corrupt.write_bytes(data[: max(64, len(data) // 3)])
    _touch(corrupt, when)
    audit.append({"time": when.isoformat(), "action": "backup", "outcome": "failed",
                  "details": {"dump": corrupt.name, "error": "pg_dump was killed (demo: a truncated dump)"}})
    # A safety dump taken before a restore: outside the retention policy.
    when = (anchor - timedelta(days=30)).replace(hour=11, minute=5, second=0, microsecond=0)
    safety = backups / f"fovea-{when:%Y%m%dT%H%M%SZ}-pre-restore.sql.gz"
    shutil.copyfile(seed, safety)
    _touch(safety, when)
    audit.append({"time": when.isoformat(), "action": "restore", "outcome": "ok",
                  "details": {"dump": "a dump of the day before", "safety_dump": safety.name}})
    for days in (7, 14):
        when = (anchor - timedelta(days=days)).replace(hour=2, minute=40, second=0, microsecond=0)
        audit.append({"time": when.isoformat(), "action": "prune", "outcome": "ok",
                      "details": {"kept": 24, "forgot": 2}})
    audit.sort(key=lambda e: e["time"])
    with (state / "audit.jsonl").open("w") as fh:
        for entry in audit:
            fh.write(json.dumps(entry) + "\n")
    seed.unlink()


# --------------------------------------------------------------------------- what fovea-tui would have left


HELD_BACK = 12              # videos uploaded since the last sync: the Volume screen's "pending"
SYNCED_HOURS_AGO = 5


def _settle(root: Path, config: Path, anchor: datetime, log) -> None:
    """Run the engine where a few nights of fovea-tui would have: verify the dumps it wrote
    (the truncated one comes out corrupt; the legacy cron dumps were never read, so they stay
    unverified), and sync the volume to its copy once, before the newest videos arrived."""
    from fovea_tui.config import load_file
    from fovea_tui.engine.backups import manifest as mf
    from fovea_tui.engine.backups.verify import verify_many
    from fovea_tui.engine.volume.sync import SUMMARY_FILE, run_sync

    settings = load_file(config)
    dumps = [str(path) for path, name in mf.list_dumps(settings.backups_dir) if not name.legacy]
    _say(log, f"verifying {len(dumps)} dumps…")
    verify_many(settings, dumps)

    videos = Path(settings.volume.path)
    held = root / ".held-back-videos"  # outside the volume, same filesystem: renames only
    held.mkdir(exist_ok=True)
    newest = sorted((p for p in videos.iterdir() if p.is_file()), key=lambda p: p.name)[-HELD_BACK:]
    for path in newest:
        os.replace(path, held / path.name)
    try:
        _say(log, f"syncing the volume to {settings.volume.target} (all but the {HELD_BACK} newest videos)…")
        result = run_sync(settings)
    finally:
        for path in held.iterdir():
            os.replace(path, videos / path.name)
        held.rmdir()
    # The files' times agree with the backdated sync: `status` counts the files written since
    # the last sync began as pending, which should be the held-back videos only.
    synced_at = anchor - timedelta(hours=SYNCED_HOURS_AGO)
    arrived_later = set(newest)
    for path in videos.rglob("*"):
        if path.is_file():
            ts = synced_at + timedelta(hours=1 if path in arrived_later else -1)
            os.utime(path, (ts.timestamp(), ts.timestamp()))
    summary = settings.state_dir / SUMMARY_FILE
    when = synced_at.isoformat()
    data = json.loads(summary.read_text())
    data.update(time=when, started_at=when, last_ok=when)
    summary.write_text(json.dumps(data, indent=2))
    audit = settings.state_dir / "audit.jsonl"
    entries = [json.loads(line) for line in audit.read_text().splitlines() if line.strip()]
    entries.append({"time": when, "action": "sync", "outcome": "ok",
                    "details": {"uploaded": result.uploaded, "skipped": result.skipped, "bytes": result.bytes}})
    entries.sort(key=lambda e: e["time"])
    audit.write_text("".join(json.dumps(e) + "\n" for e in entries))


# --------------------------------------------------------------------------- files


def _env_text(socket_dir: str) -> str:
    return "\n".join([
        "# Fovea demo install: every value here is fake.",
        f"DATABASE_URL=postgresql://{DB_USER}:{FAKE_PASSWORD}@/{DB_NAME}?host={socket_dir}",
        f"POSTGRES_PASSWORD={FAKE_PASSWORD}",
        "SESSION_SECRET=demo-session-secret-0123456789abcdef",
        "API_KEY_ENCRYPTION_KEY=demo-api-key-encryption-key-0123456789",
        "ADMIN_PASSWORD=admin",
        "REDIS_HOST=redis",
        "REDIS_PORT=6379",
        "STORAGE_PATH=/videos",
        "THUMBNAIL_PATH=/videos/thumbnails",
        "VIDEO_STORAGE_TYPE=local",
        "",
    ])


def _write_env(path: Path, socket_dir: str) -> None:
    text = _env_text(socket_dir)
    if path.exists() and path.read_text() == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def _write_config(root: Path) -> Path:
    from fovea_tui.config import Settings, save_settings

    settings = Settings()
    settings.install.compose_project = "fovea"
    settings.install.env_file = str(root / "install" / ".env")
    settings.database.mode = "direct"
    settings.database.url = ""  # DATABASE_URL from the env file
    settings.backups.dir = str(root / "backups")
    settings.backups.offsite = str(root / "offsite")
    settings.retention.keep_last = 3
    settings.retention.keep_hourly = 6
    settings.retention.keep_daily = 14
    settings.retention.keep_weekly = 8
    settings.retention.keep_monthly = 6
    settings.retention.keep_yearly = 2
    settings.retention.timezone = "UTC"
    settings.volume.path = str(root / "videos")
    settings.volume.target = str(root / "videos-copy")
    settings.stack.health_url = "http://127.0.0.1:9/api/health"
    path = root / "fovea-tui.toml"
    save_settings(settings, path)
    return path


# --------------------------------------------------------------------------- build


def build(root: Path | None = None, *, log: Callable[[str], None] | None = None) -> DemoInstall:
    """Create (or reuse) the sandbox and return it with its database running."""
    root = (root or demo_root()).resolve()
    root.mkdir(parents=True, exist_ok=True)
    _pg_bin()
    state_path = root / STATE_FILE
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    _say(log, f"demo install in {root}")
    _say(log, "starting PostgreSQL 16 (pgserver)…")
    server = _start_server(root / "pg")
    socket_dir = _socket_dir(server)
    env_file = root / "install" / ".env"
    _write_env(env_file, socket_dir)

    videos_dir = root / "videos"
    if not (root / ".videos-complete").exists():  # the marker lives outside the volume
        _say(log, f"writing {VIDEO_COUNT} video blobs…")
        from fovea_tui.sandbox import make_video_files

        videos = make_video_files(videos_dir, VIDEO_COUNT, min_size=2048, max_size=48 * 1024, seed=7)
        (root / "videos.json").write_text(json.dumps(videos))
        (root / ".videos-complete").write_text("")
    videos = [tuple(v) for v in json.loads((root / "videos.json").read_text())]
    (root / "videos-copy").mkdir(exist_ok=True)

    _say(log, "seeding the Fovea database…")
    _seed_database(server, videos)  # no-op when the database exists

    if not state.get("anchor"):
        anchor = datetime.now(UTC).replace(microsecond=0)
        _write_history(server, root, env_file, anchor, log)
        state["anchor"] = anchor.isoformat()
        state_path.write_text(json.dumps(state, indent=2) + "\n")
    config = _write_config(root)
    held = root / ".held-back-videos"
    if held.is_dir():  # a build killed mid-sync: put the videos back before anything else
        for path in held.iterdir():
            os.replace(path, videos_dir / path.name)
    if not state.get("settled"):  # once per sandbox (also for one built before this step existed)
        _settle(root, config, datetime.fromisoformat(state["anchor"]), log)
        state["settled"] = True
        state_path.write_text(json.dumps(state, indent=2) + "\n")
    _say(log, f"config: {config}")
    return DemoInstall(root=root, config=config, anchor=datetime.fromisoformat(state["anchor"]), server=server)

