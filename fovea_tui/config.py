"""Settings: the contract's TOML keys as dataclasses, found, validated, loaded and saved.

Every key has a default, so an empty file (or none at all) is a valid configuration.
Unknown keys and wrong types are errors that name the key, because a typo in a backup
tool's config must never silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import tomli_w

from fovea_tui import masking
from fovea_tui.engine.infra.files import ensure_private_dir, write_atomic
from fovea_tui.errors import ConfigError

CONFIG_ENV_VAR = "FOVEA_TUI_CONFIG"


@dataclass
class InstallSettings:
    compose_project: str = "fovea"
    env_file: str = "/opt/fovea/.env"


@dataclass
class DatabaseSettings:
    mode: str = "docker"
    service: str = "postgres"
    name: str = "fovea"
    user: str = "fovea"
    url: str = ""


@dataclass
class BackupSettings:
    dir: str = "/var/backups/fovea"
    offsite: str = ""


@dataclass
class RetentionSettings:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 14
    keep_weekly: int = 8
    keep_monthly: int = 0
    keep_yearly: int = 0
    timezone: str = ""


@dataclass
class VolumeSettings:
    path: str = "/var/lib/fovea/videos"
    target: str = ""
    delete: bool = False
    max_delete_percent: int = 10
    full_listing_hours: int = 24


@dataclass
class S3Settings:
    endpoint_url: str = ""
    region: str = ""


@dataclass
class StackSettings:
    backend_service: str = "backend"
    migrate_command: list[str] = field(default_factory=lambda: ["npx", "prisma", "migrate", "deploy"])
    health_url: str = "http://127.0.0.1:3001/api/health"
    # Services that delete `videos` rows whose file they cannot find when they start (Fovea's
    # backend): a restore starts them only once every referenced video is back.
    reconcile_services: list[str] = field(default_factory=lambda: ["backend"])
    # Services besides backend_service that use the database: after a restore only these can
    # fail it (by exiting, or by Docker declaring them unhealthy); any other service that is
    # slow to become healthy is reported as still starting, never rolled back for.
    database_clients: list[str] = field(default_factory=list)
    # Seconds between SIGTERM and SIGKILL when stopping a service that sets no
    # stop_grace_period of its own (compose's default: 10).
    stop_timeout_s: int = 10


@dataclass
class RestoreSettings:
    # Hours the database renamed aside by a restore is kept once its safety dump is written
    # and verified (0: dropped at once).
    keep_renamed_hours: int = 0


@dataclass
class DrillSettings:
    interval_days: int = 90


@dataclass
class NotifySettings:
    webhooks: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    on_success: bool = False


@dataclass
class EncryptionSettings:
    recipients: list[str] = field(default_factory=list)
    identity_file: str = ""


@dataclass
class MonitorSettings:
    """Dead-man's switch URLs: `ping_url` for `run-nightly`; a job's own URL, when set,
    replaces it for that job (alone, or as a step of the nightly run)."""

    ping_url: str = ""
    backup_url: str = ""
    sync_url: str = ""
    drill_url: str = ""


@dataclass
class Settings:
    install: InstallSettings = field(default_factory=InstallSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    backups: BackupSettings = field(default_factory=BackupSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    volume: VolumeSettings = field(default_factory=VolumeSettings)
    s3: S3Settings = field(default_factory=S3Settings)
    stack: StackSettings = field(default_factory=StackSettings)
    restore: RestoreSettings = field(default_factory=RestoreSettings)
    drill: DrillSettings = field(default_factory=DrillSettings)
    notify: NotifySettings = field(default_factory=NotifySettings)
    encryption: EncryptionSettings = field(default_factory=EncryptionSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    # Where these settings came from (None: built-in defaults). Not a TOML key.
    source: Path | None = field(default=None, compare=False, repr=False)

    @property
    def backups_dir(self) -> Path:
        return Path(self.backups.dir)

    @property
    def state_dir(self) -> Path:
        """Locks, the audit log, job state and reports: beside the backups, so cron and a
        person at the terminal share them."""
        return self.backups_dir / ".fovea-tui"

    def to_toml_dict(self) -> dict[str, dict[str, Any]]:
        return {
            f.name: dataclasses.asdict(getattr(self, f.name))
            for f in fields(self)
            if f.name != "source"
        }


SECTIONS: dict[str, type] = {
    name: cls for name, cls in get_type_hints(Settings).items() if name != "source"
}

_CHOICES = {
    ("database", "mode"): ("docker", "direct"),
}

# Whole numbers with a sensible range: an absurd value (a typo of a few zeros) is refused at
# load rather than overflowing a date computation in the middle of a run.
_RANGES = {
    ("volume", "max_delete_percent"): (0, 100),
    ("volume", "full_listing_hours"): (0, 24 * 366),
    ("drill", "interval_days"): (1, 3660),
    ("restore", "keep_renamed_hours"): (0, 24 * 366),
    ("stack", "stop_timeout_s"): (1, 3600),
}

# compose's rule for a service name.
_SERVICE_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")

# Nesting deeper than any real config: tomllib recurses per level and would overflow.
_MAX_NESTING = 64


def _check_value(key: str, value: Any, expected: Any) -> Any:
    origin = get_origin(expected)
    if origin is list:
        (item_type,) = get_args(expected)
        if not isinstance(value, list) or not all(isinstance(v, item_type) for v in value):
            raise ConfigError(
                f"config key {key} must be a list of {item_type.__name__}s",
                key=key,
            )
        return list(value)
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key} must be true or false", key=key)
        return value
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {key} must be a whole number", key=key)
        if value < 0:
            raise ConfigError(f"config key {key} must not be negative", key=key)
        return value
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key} must be a string", key=key)
        return value
    raise AssertionError(f"unhandled type for {key}")  # pragma: no cover - programming error


def _validate_semantics(settings: Settings) -> None:
    for (section, name), allowed in _CHOICES.items():
        value = getattr(getattr(settings, section), name)
        if value not in allowed:
            raise ConfigError(
                f"config key {section}.{name} is {value!r}; expected one of {', '.join(allowed)}",
                key=f"{section}.{name}",
            )
    for (section, name), (low, high) in _RANGES.items():
        value = getattr(getattr(settings, section), name)
        if not low <= value <= high:
            raise ConfigError(f"config key {section}.{name} must be between {low} and {high} (it is {value})",
                              key=f"{section}.{name}")
    _check_absolute("backups.dir", settings.backups.dir)
    for key, value in (("backups.offsite", settings.backups.offsite), ("volume.target", settings.volume.target)):
        if value and "://" not in value:
            _check_absolute(key, value)
    if settings.s3.endpoint_url:
        _check_http_url("s3.endpoint_url", settings.s3.endpoint_url)
    if not settings.stack.migrate_command:
        raise ConfigError("config key stack.migrate_command must not be empty", key="stack.migrate_command")
    for name in settings.stack.database_clients:
        if not _SERVICE_NAME.fullmatch(name):
            raise ConfigError(f"config key stack.database_clients holds {name[:40]!r}, which is not a compose "
                              "service name", key="stack.database_clients",
                              hint='list service names as `docker compose ps` shows them, e.g. ["worker"]')
    for key, value in (("backups.offsite", settings.backups.offsite), ("volume.target", settings.volume.target)):
        if value.startswith("s3://") and len(value) <= len("s3://"):
            raise ConfigError(f"config key {key} names no bucket", key=key)
    if settings.retention.timezone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(settings.retention.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"config key retention.timezone: unknown time zone {settings.retention.timezone!r}",
                key="retention.timezone",
                hint="use an IANA name such as Europe/Berlin, or leave it empty for the host's zone",
            ) from None
    for url in settings.notify.webhooks:
        if not url.startswith(("http://", "https://")):
            raise ConfigError("config key notify.webhooks holds an entry that is not an http(s) URL", key="notify.webhooks")
    if settings.encryption.recipients:
        from fovea_tui.engine.backups.age_keys import parse_recipients

        parse_recipients(settings.encryption.recipients)  # ConfigError naming encryption.recipients[i]
    for name, url in vars(settings.monitor).items():
        if url and not _is_http_url(url):
            raise ConfigError(f"config key monitor.{name} is not an http(s) URL with a host", key=f"monitor.{name}",
                              hint="the ping URL your Healthchecks, Uptime Kuma or Cronitor check shows")
    if settings.notify.urls:
        _check_apprise_urls(settings.notify.urls)
    for url in (*settings.notify.webhooks, *settings.notify.urls, *vars(settings.monitor).values()):
        masking.register_url(url)


def _is_http_url(url: str) -> bool:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        return parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 1) > 0
    except ValueError:
        return False


@cache
def load_apprise() -> ModuleType:
    """Apprise (the notification library behind `notify.urls`), imported once and only when
    URLs are set, with its log records kept out of ours: they may name a service's URL, and
    each delivery's records are read back from its result instead."""
    import apprise

    logging.getLogger("apprise").propagate = False
    return apprise


def _check_apprise_urls(urls: list[str]) -> None:
    """Every entry must be a URL Apprise can load; the message names the entry by position
    and scheme only, since the rest of it is a credential."""
    apprise = load_apprise()
    for index, url in enumerate(urls, start=1):
        if apprise.Apprise.instantiate(url) is None:
            scheme = url.split("://", 1)[0] if "://" in url else "?"
            raise ConfigError(
                f"config key notify.urls: entry {index} ({scheme}://...) is not a notification URL Apprise can use",
                key="notify.urls",
                hint="see the Apprise wiki for the URL of each service, e.g. mailtos://user:pass@host?to=addr",
            )


def _check_absolute(key: str, value: str) -> None:
    """A directory fovea-tui writes to must not depend on the working directory of a cron job."""
    if not value.strip():
        raise ConfigError(f"config key {key} is empty", key=key, hint="give an absolute path")
    if not os.path.isabs(value):
        raise ConfigError(f"config key {key} is a relative path ({value!r}): it would depend on the "
                          "directory fovea-tui is started from", key=key, hint="give an absolute path")


def _check_http_url(key: str, value: str) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"config key {key} is not an http(s) URL", key=key,
                          hint="for example https://s3.example.com or http://127.0.0.1:9000; empty means AWS")


def _nesting(text: str) -> int:
    """The deepest bracket/brace nesting in TOML text (strings and comments count too: a
    bound, not a parse)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(0, depth - 1)
    return deepest


def settings_from_dict(data: dict[str, Any], source: Path | None = None) -> Settings:
    """Build validated settings from parsed TOML; raises ConfigError naming the key."""
    sections: dict[str, Any] = {}
    for section_name, section_value in data.items():
        if section_name not in SECTIONS:
            raise ConfigError(
                f"unknown config section [{section_name}]",
                key=section_name,
                hint=f"known sections: {', '.join(SECTIONS)}",
            )
        if not isinstance(section_value, dict):
            raise ConfigError(f"config key {section_name} must be a [{section_name}] table", key=section_name)
        cls = SECTIONS[section_name]
        hints = get_type_hints(cls)
        kwargs = {}
        for key, value in section_value.items():
            full = f"{section_name}.{key}"
            if key not in hints:
                raise ConfigError(
                    f"unknown config key {full}",
                    key=full,
                    hint=f"keys of [{section_name}]: {', '.join(hints)}",
                )
            kwargs[key] = _check_value(full, value, hints[key])
        sections[section_name] = cls(**kwargs)
    settings = Settings(**sections, source=source)
    _validate_semantics(settings)
    return settings


def candidate_paths(explicit: str | os.PathLike | None = None) -> list[tuple[Path, bool]]:
    """The lookup order of the contract, as (path, must_exist) pairs."""
    if explicit:
        return [(Path(explicit), True)]
    env = os.environ.get(CONFIG_ENV_VAR)
    if env:
        return [(Path(env), True)]
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [
        (Path("fovea-tui.toml"), False),
        (Path(xdg) / "fovea-tui" / "config.toml", False),
        (Path("/etc/fovea-tui/config.toml"), False),
    ]


def user_config_path() -> Path:
    """Where the settings screen saves when the settings came from no file."""
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(xdg) / "fovea-tui" / "config.toml"


def default_identity_path() -> Path:
    """Where `fovea-tui keygen` (and the TUI's "Generate a key") write a new age identity."""
    return user_config_path().parent / "age-identity.txt"


def find_config(explicit: str | os.PathLike | None = None) -> Path | None:
    for path, must_exist in candidate_paths(explicit):
        if path.is_file():
            return path
        if must_exist:
            origin = "--config" if explicit else f"${CONFIG_ENV_VAR}"
            what = "is a directory" if path.is_dir() else "does not exist"
            raise ConfigError(f"config file {path} (from {origin}) {what}", key=origin,
                              hint="give the path of a TOML file" if path.is_dir() else None)
    return None


def load_settings(explicit: str | os.PathLike | None = None) -> Settings:
    """Find and load the configuration; defaults when no file exists anywhere."""
    path = find_config(explicit)
    if path is None:
        return Settings()
    return load_file(path)


def load_file(path: Path) -> Settings:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}", key=str(path)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"config file {path} is not UTF-8 text (line {line})", key=str(path)) from None
    if _nesting(text) > _MAX_NESTING:
        raise ConfigError(f"config file {path} nests arrays or tables deeper than {_MAX_NESTING} levels",
                          key=str(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}", key=str(path)) from None
    return settings_from_dict(data, source=path.resolve())


def render_toml(settings: Settings) -> str:
    return tomli_w.dumps(settings.to_toml_dict())


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    """Write the settings as TOML, atomically, to `path` (default: where they came from)."""
    target = Path(path or settings.source or user_config_path())
    settings_from_dict(settings.to_toml_dict())  # never write what we could not read back
    ensure_private_dir(target.parent)  # a new config directory is private, like the file (it may hold a password)
    write_atomic(target, render_toml(settings))
    settings.source = target.resolve()
    return target
