"""Dump histories on disk for inventory, prune and screen tests: real gzip dumps that end
with pg_dump's completion line, manifests written by the engine's manifest module, env
copies at 0600, and real verification results in the verification cache."""

from __future__ import annotations

import gzip
import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fovea_tui.config import BackupSettings, RetentionSettings, S3Settings, Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.verify import verify_many

TABLES = {"users": 3, "videos": 12, "annotations": 140, "_prisma_migrations": 2}
MIGRATIONS = ["20250101000000_init", "20250301000000_claims"]
ENV_TEXT = "DATABASE_URL=postgresql://fovea:secret@postgres:5432/fovea\nSESSION_SECRET=s3cr3t\n"


def dump_bytes(tables: dict[str, int] = TABLES, *, complete: bool = True, padding: int = 0) -> bytes:
    lines = ["--", "-- PostgreSQL database dump", "--", "SET client_encoding = 'UTF8';"]
    for table, rows in tables.items():
        lines.append(f"COPY public.{table} (id) FROM stdin;")
        lines += [str(i) for i in range(1, rows + 1)]
        lines.append("\\.")
    if padding:
        lines.append("-- " + "x" * padding)
    if complete:
        lines += ["", "--", "-- PostgreSQL database dump complete", "--", ""]
    return gzip.compress("\n".join(lines).encode(), mtime=0)


def stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


class History:
    """Builds dumps in `directory` for `settings` (whose backups.dir is `directory`)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dir = settings.backups_dir
        self.dir.mkdir(parents=True, exist_ok=True)

    def add(self, when: datetime | str, *, safety: bool = False, manifest: bool = True, env: bool = True,
            verify: bool = True, data: bytes | None = None, tables: dict[str, int] = TABLES,
            warnings: list[str] | None = None) -> Path:
        if isinstance(when, str):
            name = when
        else:
            name = f"fovea-{stamp(when)}{'-pre-restore' if safety else ''}.sql.gz"
        data = dump_bytes(tables) if data is None else data
        path = self.dir / name
        path.write_bytes(data)
        env_info = None
        parsed_name = mf.parse_dump_name(name)
        if env and not (parsed_name and parsed_name.legacy):  # legacy cron dumps have no env copy
            env_path = mf.env_copy_path(path)
            fd = os.open(env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(ENV_TEXT)
            env_info = {"name": env_path.name, "sha256": hashlib.sha256(ENV_TEXT.encode()).hexdigest()}
        if manifest:
            parsed = mf.parse_dump_name(name)
            created = parsed.time if parsed else datetime(2026, 1, 1, tzinfo=UTC)
            m = mf.Manifest(
                created_at=created.isoformat(), database="fovea", server_version="16.4",
                pg_dump_version="16.4", size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                tables=dict(tables), prisma_migrations=list(MIGRATIONS), env_file=env_info, duration_s=0.5,
                tool_version="test", kind="pre-restore" if safety else "regular", warnings=list(warnings or []),
                dump=name,
            )
            mf.write(m, mf.manifest_path(path))
        if verify:
            verify_many(self.settings, [str(path)])
        return path

    def daily(self, start: datetime, days: int, **kw) -> list[Path]:
        """One dump per day at 02:00 UTC, oldest first."""
        return [self.add(start + timedelta(days=i), **kw) for i in range(days)]

    def hourly_bare(self, newest: datetime, count: int) -> None:
        """`count` identical dumps an hour apart, back from `newest`: no manifest, no env copy,
        not verified (quick to write by the thousand)."""
        data = dump_bytes()
        for i in range(count):
            (self.dir / f"fovea-{stamp(newest - timedelta(hours=i))}.sql.gz").write_bytes(data)


def make_settings(tmp_path: Path, *, offsite: str = "", endpoint_url: str = "", keep_daily: int = 14,
                  keep_weekly: int = 8, timezone_name: str = "UTC", backups_dir: str | Path | None = None,
                  **retention) -> Settings:
    return Settings(
        backups=BackupSettings(dir=str(backups_dir or (tmp_path / "backups")), offsite=offsite),
        retention=RetentionSettings(keep_daily=keep_daily, keep_weekly=keep_weekly, timezone=timezone_name,
                                    **retention),
        s3=S3Settings(endpoint_url=endpoint_url, region="us-east-1" if endpoint_url else ""),
    )


def mirror(settings: Settings, store, names: list[str] | None = None) -> None:
    """Upload every file of the local backups (or only `names` and their siblings) to `store`."""
    for path in sorted(settings.backups_dir.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        if names is not None and not any(path.name.startswith(mf.DumpName(n, datetime.now(), "", False).stem)
                                         for n in names):
            continue
        store.put_file(path, path.name)
