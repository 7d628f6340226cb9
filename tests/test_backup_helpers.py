"""Helpers shared by the backup, verify and lock tests (real PostgreSQL, no mocks); no tests here."""

from __future__ import annotations

import gzip
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import tomli_w

from fovea_tui.config import settings_from_dict

DUMP_RE = re.compile(r"^fovea-\d{8}T\d{6}Z(-pre-restore)?\.sql\.gz$")
REPO = Path(__file__).resolve().parent.parent


def write_env(tmp_path: Path, database_url: str = "") -> tuple[Path, dict[str, str]]:
    """An install .env with secrets that must never show up anywhere."""
    values = {
        "DATABASE_URL": database_url or "postgresql://fovea:db-pw-" + secrets.token_hex(8) + "@postgres:5432/fovea",
        "POSTGRES_PASSWORD": "pg-pw-" + secrets.token_hex(8),
        "SESSION_SECRET": "sess-" + secrets.token_hex(16),
        "API_KEY_ENCRYPTION_KEY": "enc-" + secrets.token_hex(16),
        "ADMIN_PASSWORD": "adm-" + secrets.token_hex(8),
        "REDIS_HOST": "redis",
    }
    path = tmp_path / "install" / ".env"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}='{v}'\n" for k, v in values.items()))
    os.chmod(path, 0o600)
    return path, values


def direct_config(tmp_path: Path, url: str, env_file: Path, **sections) -> dict:
    data = {
        "install": {"env_file": str(env_file)},
        "database": {"mode": "direct", "url": url},
        "backups": {"dir": str(tmp_path / "backups")},
    }
    for section, values in sections.items():
        data.setdefault(section, {}).update(values)
    return data


def settings_and_config(tmp_path: Path, data: dict):
    """(Settings, path of the same settings as a TOML file for the CLI)."""
    cfg = tmp_path / "fovea-tui.toml"
    cfg.write_text(tomli_w.dumps(data))
    return settings_from_dict(data), cfg


def dump_files(directory: Path) -> list[str]:
    """Every file an operator would take for a dump, manifest or env copy."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir()
                  if p.is_file() and (p.name.endswith(".sql.gz") or p.name.endswith(".manifest.json")
                                      or p.name.endswith(".env")))


def visible_and_temp(directory: Path) -> list[str]:
    """All files directly in the backups directory (state dir excluded)."""
    if not directory.exists():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def run_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess (stdout and stderr as a user sees them)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("FOVEA_TUI_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "fovea_tui", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)


def gunzip_sql(path: Path) -> str:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return fh.read()


def restore_by_hand(dump: Path, bin_dir: Path, env: dict) -> subprocess.CompletedProcess:
    """The runbook's restore, literally: `gunzip -c FILE | psql`."""
    return subprocess.run(
        f"set -o pipefail; gunzip -c '{dump}' | '{bin_dir}/psql' -X -q -v ON_ERROR_STOP=1",
        shell=True, executable="/bin/bash", capture_output=True, text=True, env=env, timeout=300)


def table_counts(psql, db: str) -> dict[str, int]:
    tables = [t for t in psql("SELECT tablename FROM pg_tables WHERE schemaname='public' ORDER BY 1", db).split() if t]
    out = {}
    for t in tables:
        out[t] = int(psql(f'SELECT count(*) FROM public."{t}"', db).strip())
    return out


def load_json(text: str) -> dict:
    return json.loads(text)
