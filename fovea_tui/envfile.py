"""The install's .env: parsed with python-dotenv, every value a secret, copied at 0600."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dotenv import dotenv_values

from fovea_tui import masking
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.errors import ConfigError

# Keys a restore or a drill cannot do without (FOVEA.md's env file).
CRITICAL_KEYS = ("DATABASE_URL", "SESSION_SECRET", "API_KEY_ENCRYPTION_KEY")

# Which values are scrubbed from ordinary text (errors, a tool's stderr, logs). On screen
# every value is masked; but scrubbing "fovea" or "/videos" out of every message would
# mangle file names and paths, so plain configuration is exempt unless it is long enough
# to be a random token. Keys that name a credential are always scrubbed.
PLAIN_KEYS = frozenset({
    "REDIS_HOST", "REDIS_PORT", "STORAGE_PATH", "THUMBNAIL_PATH", "VIDEO_STORAGE_TYPE",
    "S3_REGION", "S3_BUCKET", "S3_ENDPOINT", "NODE_ENV", "PORT", "LOG_LEVEL",
    "POSTGRES_USER", "POSTGRES_DB", "POSTGRES_HOST", "POSTGRES_PORT",
})
_CREDENTIAL_WORDS = ("PASSWORD", "PASS", "SECRET", "KEY", "TOKEN", "URL", "DSN", "CREDENTIAL", "AUTH", "PRIVATE")
_TOKEN_LENGTH = 12


def is_scrubbed(key: str, value: str) -> bool:
    """Whether `value` of `key` is removed from any text fovea-tui prints or writes."""
    upper = key.upper()
    if any(word in upper for word in _CREDENTIAL_WORDS):
        return True
    return upper not in PLAIN_KEYS and len(value) >= _TOKEN_LENGTH


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed postgresql:// URL. The password never appears in repr or str."""

    host: str
    port: int
    user: str
    database: str
    password: str = field(repr=False, default="")

    @classmethod
    def parse(cls, url: str, *, source: str = "DATABASE_URL") -> "DatabaseURL":
        try:
            parts = urlsplit(url)
            port = parts.port or 5432
        except ValueError:
            raise ConfigError(f"{source} is not a valid postgresql:// URL", key=source) from None
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"{source} is not a postgresql:// URL", key=source)
        password = unquote(parts.password or "")
        masking.register(password, url)
        host = unquote(parts.hostname or "")
        database = unquote(parts.path.lstrip("/"))
        # Unix socket directories arrive as ?host=/path (libpq style).
        for pair in parts.query.split("&"):
            if pair.startswith("host="):
                host = unquote(pair[5:])
        return cls(host=host or "localhost", port=port, user=unquote(parts.username or ""),
                   database=database, password=password)

    def __str__(self) -> str:
        auth = f"{self.user}:{masking.MASK}@" if self.password else f"{self.user}@"
        return f"postgresql://{auth}{self.host}:{self.port}/{self.database}"

    def client_env(self) -> dict[str, str]:
        """libpq environment for client tools: the password travels here, never in argv."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
               "PGDATABASE": self.database}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


class EnvFile:
    """The values of an install's env file. Treat each one as a secret."""

    def __init__(self, path: Path, values: dict[str, str]) -> None:
        self.path = path
        self._values = values
        masking.register(*(v for k, v in values.items() if is_scrubbed(k, v)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "EnvFile":
        path = Path(path)
        try:
            with path.open("r", encoding="utf-8") as fh:
                fh.read()
        except FileNotFoundError:
            raise ConfigError(
                f"env file {path} does not exist",
                key="install.env_file",
                hint="set install.env_file to the .env beside the compose file",
            ) from None
        except PermissionError:
            raise ConfigError(f"env file {path} is not readable by this user", key="install.env_file",
                              hint="run fovea-tui as the user that owns the install (often root)") from None
        except UnicodeDecodeError:
            raise ConfigError(f"env file {path} is not UTF-8 text", key="install.env_file") from None
        except IsADirectoryError:
            raise ConfigError(f"env file {path} is a directory", key="install.env_file") from None
        raw = dotenv_values(path, interpolate=False)
        values = {k: (v or "") for k, v in raw.items() if k}
        return cls(path, values)

    def keys(self) -> list[str]:
        return list(self._values)

    def get(self, key: str, default: str = "") -> str:
        return self._values.get(key, default)

    def has(self, key: str) -> bool:
        return bool(self._values.get(key))

    def masked(self) -> dict[str, str]:
        return {k: masking.mask(v) for k, v in self._values.items()}

    def missing_critical(self) -> list[str]:
        return [k for k in CRITICAL_KEYS if not self.has(k)]

    def database_url(self) -> DatabaseURL | None:
        url = self.get("DATABASE_URL")
        return DatabaseURL.parse(url) if url else None

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def copy_to(self, dest: Path) -> Path:
        """Copy the file byte for byte to `dest`, created 0600 from the first byte."""
        return write_atomic(dest, self.path.read_bytes())

    def __repr__(self) -> str:
        return f"EnvFile({str(self.path)!r}, {len(self._values)} keys)"
