"""The install's .env: parsed with python-dotenv, every value a secret, copied at 0600."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

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


def without_password(url: str) -> str:
    """`url` with its password (in the authority or as `?password=`) taken out: what may be
    written to disk in its place. A value that does not parse as a URL is dropped whole."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
        user = parts.username
    except ValueError:
        return ""
    netloc = (f"{parts.netloc.rpartition('@')[0].partition(':')[0]}@" if user is not None else "") + host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# libpq's connection parameters that have an environment variable, with the oldest client
# major version that knows it (an unknown variable is silently ignored by an older libpq, so
# the version is checked before a client is used). See libpq's "Environment Variables".
LIBPQ_ENV: dict[str, tuple[str, int]] = {
    "sslmode": ("PGSSLMODE", 0), "requiressl": ("PGREQUIRESSL", 0), "sslcert": ("PGSSLCERT", 0),
    "sslkey": ("PGSSLKEY", 0), "sslrootcert": ("PGSSLROOTCERT", 0), "sslcrl": ("PGSSLCRL", 0),
    "sslcompression": ("PGSSLCOMPRESSION", 0), "application_name": ("PGAPPNAME", 0),
    "connect_timeout": ("PGCONNECT_TIMEOUT", 0), "options": ("PGOPTIONS", 0),
    "client_encoding": ("PGCLIENTENCODING", 0), "hostaddr": ("PGHOSTADDR", 0), "passfile": ("PGPASSFILE", 0),
    "service": ("PGSERVICE", 0), "krbsrvname": ("PGKRBSRVNAME", 0), "gsslib": ("PGGSSLIB", 0),
    "target_session_attrs": ("PGTARGETSESSIONATTRS", 10), "gssencmode": ("PGGSSENCMODE", 12),
    "channel_binding": ("PGCHANNELBINDING", 13), "ssl_min_protocol_version": ("PGSSLMINPROTOCOLVERSION", 13),
    "ssl_max_protocol_version": ("PGSSLMAXPROTOCOLVERSION", 13), "sslcrldir": ("PGSSLCRLDIR", 14),
    "sslsni": ("PGSSLSNI", 14), "require_auth": ("PGREQUIREAUTH", 16), "sslcertmode": ("PGSSLCERTMODE", 16),
    "load_balance_hosts": ("PGLOADBALANCEHOSTS", 16), "gssdelegation": ("PGGSSDELEGATION", 16),
    "sslnegotiation": ("PGSSLNEGOTIATION", 17),
}
# libpq parameters without an environment variable: connection tuning that changes nothing
# about what the connection requires (its security), so dropping them is harmless.
LIBPQ_TUNING = frozenset({"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
                          "tcp_user_timeout", "fallback_application_name"})
# Prisma's own parameters (Fovea's DATABASE_URL is Prisma's): its pool and schema, not libpq's.
PRISMA_ONLY = frozenset({"schema", "connection_limit", "pool_timeout", "pgbouncer", "socket_timeout",
                         "statement_cache_size", "sslaccept", "sslidentity", "max_connection_lifetime",
                         "max_idle_connection_lifetime"})
_SSL_REQUIRED = ("require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class DatabaseURL:
    """A parsed postgresql:// URL. The password never appears in repr or str.

    `params` are the libpq parameters of its query string (sslmode, sslrootcert, ...); the
    client tools get them as libpq environment variables (`client_env`)."""

    host: str
    port: int
    user: str
    database: str
    password: str = field(repr=False, default="")
    params: tuple[tuple[str, str], ...] = ()
    source: str = field(default="DATABASE_URL", compare=False)

    @classmethod
    def parse(cls, url: str, *, source: str = "DATABASE_URL") -> DatabaseURL:
        try:
            parts = urlsplit(url)
            port = parts.port or 5432
            query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
        except ValueError:
            raise ConfigError(f"{source} is not a valid postgresql:// URL", key=source) from None
        if parts.scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"{source} is not a postgresql:// URL", key=source)
        password = unquote(parts.password or "")
        masking.register(password, url)
        host = unquote(parts.hostname or "")
        user = unquote(parts.username or "")
        database = unquote(parts.path.lstrip("/"))
        params: dict[str, str] = {}
        for key, value in query:
            if key == "host":  # Unix socket directories arrive as ?host=/path (libpq style)
                host = value
            elif key == "port":
                if not value.isdigit():
                    raise ConfigError(f"{source}: port={value!r} is not a number", key=source)
                port = int(value)
            elif key == "user":
                user = value
            elif key == "password":
                masking.register(value)
                password = value
            elif key == "dbname":
                database = value
            elif key == "sslpassword":
                masking.register(value)
                raise ConfigError(f"{source} sets sslpassword, which cannot reach pg_dump and psql without "
                                  "putting it on a command line", key=source,
                                  hint="use a client key without a passphrase, readable only by this user")
            elif key in LIBPQ_ENV:
                params[key] = value
            elif key not in LIBPQ_TUNING and key not in PRISMA_ONLY:
                raise ConfigError(f"{source} has the query parameter {key!r}, which libpq does not know",
                                  key=source, hint="libpq's parameters are listed under 'Parameter Key Words'")
        return cls(host=host or "localhost", port=port, user=user, database=database, password=password,
                   params=tuple(sorted(params.items())), source=source)

    def __str__(self) -> str:
        auth = f"{self.user}:{masking.MASK}@" if self.password else f"{self.user}@"
        return f"postgresql://{auth}{self.host}:{self.port}/{self.database}"

    @property
    def needs_ssl(self) -> str | None:
        """The parameter that makes SSL mandatory ("sslmode=require"), or None."""
        values = dict(self.params)
        if values.get("sslmode") in _SSL_REQUIRED:
            return f"sslmode={values['sslmode']}"
        if values.get("requiressl") == "1" and "sslmode" not in values:
            return "requiressl=1"
        if values.get("sslnegotiation") == "direct":
            return "sslnegotiation=direct"
        return None

    @property
    def client_needs(self) -> tuple[int, str] | None:
        """(the oldest client major that understands every parameter, the parameter that asks
        for it), or None when any client will do."""
        best: tuple[int, str] | None = None
        for key, value in self.params:
            major = LIBPQ_ENV[key][1]
            if key == "target_session_attrs" and value not in ("any", "read-write"):
                major = 14
            if major and (best is None or major > best[0]):
                best = (major, key)
        return best

    def client_env(self) -> dict[str, str]:
        """libpq environment for client tools: the password travels here, never in argv."""
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
               "PGDATABASE": self.database}
        if self.password:
            env["PGPASSWORD"] = self.password
        for key, value in self.params:
            env[LIBPQ_ENV[key][0]] = value
        return env


class EnvFile:
    """The values of an install's env file. Treat each one as a secret."""

    def __init__(self, path: Path, values: dict[str, str]) -> None:
        self.path = path
        self._values = values
        masking.register(*(v for k, v in values.items() if is_scrubbed(k, v)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> EnvFile:
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
