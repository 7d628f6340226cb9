"""Rebuild a lost install on a fresh host from the off-site copy and a key alone.

The runbook's disaster recovery ("the dump file plus the video volume plus the env file is
everything you need") as one flow, for a host with no config and no state:

1. `list_backups`: the off-site backups under the URL, newest verified first (a backup is
   "verified" here when its manifest is readable and its copies have the sizes it records);
2. `prepare`: fetch the chosen dump and env copy (decrypting `.age` files), verify the dump
   end to end against its manifest, write a config for this host (what a given config lacks
   is filled in from what this host shows and what the manifest recorded of the lost one),
   install the env copy as the install's env file (0600, never over a different one unless
   told), list the runbook's step-4 adjustments, and pull the video copy, all of it, before
   anything starts the backend;
3. the face then runs the guided restore (`engine.restore`) on the fetched dump, with every
   safety check it always has.

Nothing here prints: the CLI's `recover` and the TUI's recovery wizard render the results.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fovea_tui import masking
from fovea_tui.config import S3Settings, Settings, load_file, save_settings, settings_from_dict, user_config_path
from fovea_tui.engine.backups import age_keys, encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir
from fovea_tui.engine.progress import CancelToken, ProgressEvent, no_progress
from fovea_tui.envfile import DatabaseURL, EnvFile
from fovea_tui.errors import ConfigError, FoveaError, OperationFailed, SafetyRefusal
from fovea_tui.formatting import plural


@dataclass
class OffsiteBackup:
    """One backup found under the recovery URL."""

    name: str
    time: str
    verified: bool
    detail: str
    dump_key: str
    env_key: str | None
    manifest_key: str | None
    size: int
    encrypted: bool
    manifest: mf.Manifest | None = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "time": self.time, "status": "verified" if self.verified else "unverified",
                "detail": self.detail, "dump_key": self.dump_key, "env_key": self.env_key, "size": self.size,
                "encrypted": self.encrypted,
                "rows": sum(self.manifest.tables.values()) if self.manifest else None}


def endpoint_from_env() -> str:
    """The S3 endpoint boto3 itself would use from the environment (MinIO, R2, ...)."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def source_settings(url: str, base: Settings | None = None, endpoint_url: str = "") -> Settings:
    """Settings to read `url` with: `endpoint_url`, else the given config's [s3], else the
    environment's (boto3 reads the credentials chain itself)."""
    if not url:
        raise ConfigError("recover needs --from URL (s3://bucket/prefix/ or a directory)", key="--from")
    data: dict[str, Any] = {"backups": {"offsite": url}, "s3": {}}
    if base is not None:
        data["s3"] = {"endpoint_url": base.s3.endpoint_url, "region": base.s3.region}
    if endpoint_url:
        data["s3"]["endpoint_url"] = endpoint_url
    try:
        return settings_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(exc.message.replace("config key backups.offsite", "--from"), key="--from") from None


def open_source(url: str, s3: S3Settings):
    from fovea_tui.engine.infra.stores import open_store

    try:
        return open_store(url, s3, key="--from")
    except ConfigError as exc:
        raise ConfigError(exc.message.replace("config key backups.offsite", "--from"), key="--from", hint=exc.hint) from None


def list_backups(url: str, base: Settings | None = None, endpoint_url: str = "") -> list[OffsiteBackup]:
    """The regular backups under `url`, newest verified first, then the unverified ones."""
    from fovea_tui.engine.backups.inventory import OFFSITE, load_inventory

    settings = source_settings(url, base, endpoint_url)
    store = open_source(url, settings.s3)
    with tempfile.TemporaryDirectory(prefix="fovea-recover-") as empty:
        # Only the off-site side: an empty directory stands in for this host's backups.dir.
        settings.backups.dir = empty
        inventory = load_inventory(settings, store=store)
    if inventory.errors:
        raise OperationFailed(f"cannot list {url}: " + "; ".join(inventory.errors))
    found: list[OffsiteBackup] = []
    for entry in inventory.entries:
        copy = entry.offsite
        if copy is None or entry.kind != "regular":
            continue
        manifest, detail, verified = None, "", False
        manifest_key = entry.manifests.get(OFFSITE)
        if manifest_key is None:
            detail = "no manifest off-site"
        else:
            try:
                manifest = mf.parse(store.read_bytes(manifest_key), source=f"off-site manifest {manifest_key}")
            except FoveaError as exc:
                detail = str(exc)
        if manifest is not None:
            data = manifest.as_dict()
            expected = (encryption.file_record(data, copy.key) or {}).get("size") if copy.encrypted else manifest.size
            if copy.size == 0 or expected != copy.size:
                detail = f"{copy.size} bytes off-site, the manifest records {expected}"
            elif not entry.envs.get(OFFSITE):
                detail = "no env copy off-site"
                verified = True
            else:
                detail, verified = "manifest, dump and env copy present and sized as recorded", True
        found.append(OffsiteBackup(entry.name, entry.time.isoformat().replace("+00:00", "Z"), verified, detail,
                                   copy.key, entry.envs.get(OFFSITE), manifest_key, copy.size, copy.encrypted,
                                   manifest))
    found.sort(key=lambda b: (not b.verified, -_stamp(b)))
    return found


def _stamp(backup: OffsiteBackup) -> float:
    parsed = mf.parse_dump_name(backup.name)
    return parsed.time.timestamp() if parsed else 0.0


# --------------------------------------------------------------------------- the config


def _raw_config(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}", key="--config") from None


def discover_stack(project_hint: str, service: str) -> dict[str, str]:
    """What this host's Docker shows of a Fovea compose project: its name, the env file
    beside its compose file, and the host path behind the backend's /videos. {} without
    Docker or without a project running the database service."""
    try:
        from fovea_tui.engine.infra.stack import connect_docker

        client = connect_docker(timeout=5)
        containers = client.containers.list(all=True, filters={"label": f"com.docker.compose.service={service}"})
    except Exception:  # noqa: BLE001 - no engine here: direct mode, nothing to discover
        return {}
    projects = sorted({c.labels.get("com.docker.compose.project", "") for c in containers} - {""})
    if not projects:
        return {}
    project = project_hint if project_hint in projects else projects[0] if len(projects) == 1 else ""
    if not project:
        return {}
    found = {"compose_project": project}
    try:
        members = client.containers.list(all=True, filters={"label": f"com.docker.compose.project={project}"})
    except Exception:  # noqa: BLE001
        return found
    for c in members:
        workdir = c.labels.get("com.docker.compose.project.working_dir")
        if workdir and "env_file" not in found:
            found["env_file"] = str(Path(workdir) / ".env")
        for m in c.attrs.get("Mounts") or []:
            if m.get("Destination") == "/videos" and m.get("Source") and "volume_path" not in found:
                found["volume_path"] = m["Source"]
    return found


def plan_config(url: str, manifest: mf.Manifest | None, *, base_path: Path | None, identity: Path | None,
                discovered: dict[str, str], endpoint_url: str = "",
                given: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The new host's config: what `base_path` holds (and `given`, the wizard's fields) stays;
    what it lacks comes from this host (`discovered`), then from the lost install (the
    manifest's `install` record)."""
    data = _raw_config(base_path)
    for section, values in (given or {}).items():
        data.setdefault(section, {}).update({k: v for k, v in values.items() if v})
    lost = (manifest.extra.get("install") if manifest is not None else None) or {}

    def fill(section: str, key: str, *values: Any) -> None:
        table = data.setdefault(section, {})
        if key in table:
            return
        for value in values:
            if value:
                table[key] = value
                return

    fill("backups", "offsite", url)
    if url.startswith("s3://"):
        fill("s3", "endpoint_url", endpoint_url or endpoint_from_env())
    fill("install", "compose_project", discovered.get("compose_project"), lost.get("compose_project"))
    fill("install", "env_file", discovered.get("env_file"), lost.get("env_file"))
    fill("database", "mode", "docker" if discovered.get("compose_project") else None, lost.get("database_mode"))
    fill("volume", "path", discovered.get("volume_path"))
    fill("volume", "target", lost.get("volume_target"))
    if identity is not None:
        fill("encryption", "identity_file", str(identity))
        fill("encryption", "recipients", age_keys.identity_recipients(identity))
    return {k: v for k, v in data.items() if v != {}}


# --------------------------------------------------------------------------- preparing


@dataclass
class Prepared:
    """What `prepare` did: the config written, the dump and env copy in place, and what the
    operator must still adjust by hand."""

    backup: OffsiteBackup
    config_path: Path
    settings: Settings
    dump_path: Path
    env_copy: Path | None
    env_installed: str               # "installed" | "identical" | "missing"
    adjustments: list[str]
    target_empty: bool | None
    videos: dict[str, Any] | None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"backup": self.backup.as_dict(), "config": str(self.config_path), "dump": str(self.dump_path),
                "env_copy": str(self.env_copy) if self.env_copy else None, "env_file": self.settings.install.env_file,
                "env_installed": self.env_installed, "adjustments": list(self.adjustments),
                "target_empty": self.target_empty, "videos": self.videos, "warnings": list(self.warnings)}


def _fetch_backup(settings: Settings, store, backup: OffsiteBackup, identities, progress, cancel) -> tuple[Path, Path | None]:
    """Dump, manifest and env copy into backups.dir, decrypted and checked; the dump verified
    end to end (gzip, completion line, size, sha256) before anything is installed."""
    from fovea_tui.engine.backups.verify import verify_dump

    directory = ensure_private_dir(settings.backups_dir)
    dest = directory / backup.name
    manifest = backup.manifest
    if manifest is None:
        raise SafetyRefusal(f"{backup.name} has no readable manifest off-site: it cannot be verified, so it is "
                            "not restored", hint="choose another backup with --dump")
    data = manifest.as_dict()
    encryption.fetch(store, backup.dump_key, dest, identities=identities, record=encryption.file_record(data, backup.dump_key),
                     expected_sha256=manifest.sha256, progress=progress, cancel=cancel)
    verified = verify_dump(dest, manifest, use_manifest_beside=False, cancel=cancel, progress=progress)
    if not verified.ok:
        dest.unlink(missing_ok=True)
        raise SafetyRefusal(f"{backup.name} does not verify: " + "; ".join(verified.reasons))
    mf.write(manifest, mf.manifest_path(dest))
    env_copy = None
    if backup.env_key:
        env_copy = mf.env_copy_path(dest)
        encryption.fetch(store, backup.env_key, env_copy, identities=identities,
                         record=encryption.file_record(data, backup.env_key),
                         expected_sha256=(manifest.env_file or {}).get("sha256"), cancel=cancel)
    return dest, env_copy


def install_env(env_copy: Path, target: Path, *, replace: bool) -> str:
    """The env copy as the install's env file, 0600. An existing file with other content is
    kept (SafetyRefusal) unless `replace`; then it is first saved beside as `.env.before-recover`."""
    data = env_copy.read_bytes()
    if target.exists():
        if target.read_bytes() == data:
            os.chmod(target, 0o600)
            return "identical"
        if not replace:
            raise SafetyRefusal(f"{target} exists and differs from the backup's env copy; it was left as it is",
                                hint="pass --replace-env to install the backup's copy (the current file is "
                                     "kept beside it as .env.before-recover)")
        write_atomic(target.with_name(target.name + ".before-recover"), target.read_bytes())
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, data, 0o600)
    os.chmod(target, 0o600)
    return "installed"


def adjustments(env: EnvFile, settings: Settings, discovered: dict[str, str]) -> list[str]:
    """The runbook's step 4 for this host, naming keys and hosts, never values."""
    notes = []
    url = env.database_url()
    if url is not None:
        if settings.database.mode == "direct" and settings.database.url:
            try:
                here = DatabaseURL.parse(settings.database.url, source="database.url")
                if (here.host, here.port) != (url.host, url.port):
                    notes.append(f"DATABASE_URL in {settings.install.env_file} points at {url.host}:{url.port}; "
                                 f"this host's database is {here.host}:{here.port} (database.url): change the "
                                 "host in DATABASE_URL before the backend starts")
            except ConfigError:
                pass
        elif discovered.get("compose_project"):
            notes.append(f"DATABASE_URL points at host {url.host!r}: keep it if the compose service is still named "
                         f"{url.host!r} on this host, else change it")
        else:
            notes.append(f"DATABASE_URL points at {url.host}:{url.port}: check it reaches this host's database")
    if env.has("SESSION_SECRET"):
        notes.append("SESSION_SECRET: keeping it keeps users' existing sessions valid; set a new one to log "
                     "everyone out (the runbook's choice for a host that may have been compromised)")
    notes.append("API_KEY_ENCRYPTION_KEY: keep it as it is; the API keys stored in the database are encrypted with it")
    return notes


def _target_is_empty(settings: Settings) -> bool | None:
    """Whether the database the restore will replace holds no user table (nothing to lose)."""
    try:
        from fovea_tui.engine.infra.database import open_database

        db = open_database(settings)
        out = db.psql("SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname NOT IN "
                      "('pg_catalog', 'information_schema');")
        return str(out).strip() == "0"
    except FoveaError:
        return None


def prepare(url: str, *, dump: str | None = None, identity: str | None = None, config_path: Path | None = None,
            config_out: Path | None = None, replace_env: bool = False, pull_videos: bool = True,
            endpoint_url: str = "", given: dict[str, dict[str, Any]] | None = None,
            progress: Callable[[ProgressEvent], None] = no_progress, cancel: CancelToken | None = None,
            on_step: Callable[[str], None] = lambda _s: None) -> Prepared:
    """Everything up to the guided restore; see the module docstring. Raises ConfigError
    (exit 2) for a bad URL, identity or config; SafetyRefusal (exit 3) for a backup that does
    not verify or an env file it would overwrite; OperationFailed (exit 1) otherwise."""
    cancel = cancel or CancelToken()
    base = load_file(config_path) if config_path is not None else None
    identity_path = Path(identity).expanduser().resolve() if identity else None
    identities = age_keys.load_identities(identity_path, key="--identity") if identity_path else None
    if identities is None and base is not None and base.encryption.identity_file:
        identities = age_keys.load_identities(base.encryption.identity_file)
        identity_path = None

    on_step(f"listing the backups under {url}")
    backups = list_backups(url, base, endpoint_url)
    if not backups:
        raise SafetyRefusal(f"no backup of a Fovea install under {url}", hint="check the URL and the credentials")
    if dump:
        chosen = next((b for b in backups if dump in (b.name, b.dump_key)), None)
        if chosen is None:
            raise ConfigError(f"no backup {dump!r} under {url}", key="--dump")
    else:
        chosen = backups[0]
    if not chosen.verified:
        raise SafetyRefusal(f"{chosen.name} cannot be used: {chosen.detail}", hint="choose another with --dump")
    if chosen.encrypted and not identities:
        raise ConfigError(f"{chosen.dump_key} is encrypted: pass --identity FILE (the age identity whose public "
                          "key was in encryption.recipients)", key="--identity")

    # This host's Docker is asked only for a docker-mode install: a direct-mode one must never
    # adopt whatever compose project happens to run here (the restore stops its services).
    raw = _raw_config(config_path)
    lost = (chosen.manifest.extra.get("install") if chosen.manifest else None) or {}
    mode = (given or {}).get("database", {}).get("mode") or raw.get("database", {}).get("mode") or \
        lost.get("database_mode") or "docker"
    hint = raw.get("install", {}).get("compose_project") or lost.get("compose_project") or ""
    discovered = discover_stack(hint, base.database.service if base else "postgres") if mode == "docker" else {}
    data = plan_config(url, chosen.manifest, base_path=config_path, identity=identity_path, discovered=discovered,
                       endpoint_url=endpoint_url, given=given)
    settings = settings_from_dict(data)
    target = Path(config_out) if config_out else (config_path or user_config_path())
    if target.exists() and (config_path is None or target.resolve() != config_path.resolve()):
        raise SafetyRefusal(f"{target} already exists; recover does not overwrite a config it did not read",
                            hint="pass it as --config to fill in only what it lacks, or choose --config-out")

    store = open_source(url, settings.s3)
    on_step(f"fetching {chosen.dump_key}" + (" and decrypting it" if chosen.encrypted else ""))
    dump_path, env_copy = _fetch_backup(settings, store, chosen, identities, progress, cancel)
    save_settings(settings, target)
    on_step(f"config written to {target}")

    warnings: list[str] = []
    env_state = "missing"
    notes: list[str] = []
    if env_copy is not None:
        env_state = install_env(env_copy, Path(settings.install.env_file), replace=replace_env)
        env = EnvFile.load(settings.install.env_file)
        notes = adjustments(env, settings, discovered)
        on_step(f"env file {settings.install.env_file}: {env_state} (0600)")
    else:
        warnings.append(f"{chosen.name} has no env copy off-site: SESSION_SECRET and API_KEY_ENCRYPTION_KEY "
                        "must come from elsewhere")

    videos = None
    if pull_videos and settings.volume.target:
        from fovea_tui.engine.volume.sync import run_sync

        on_step(f"pulling the video copy {settings.volume.target} into {settings.volume.path}")
        result = run_sync(settings, pull=True, progress=progress, cancel=cancel)
        videos = {"downloaded": result.downloaded, "skipped": result.skipped, "bytes": result.bytes,
                  "errors": len(result.errors)}
        if result.errors:
            raise OperationFailed(f"pulling the video copy failed for {plural(len(result.errors), 'file')}: "
                                  + masking.redact(result.errors[0]),
                                  hint="fix it and run `fovea-tui sync --pull`, then the restore")
    elif pull_videos:
        warnings.append("volume.target is not set: no video copy to pull; set it and run `fovea-tui sync --pull` "
                        "before the backend starts")
    return Prepared(chosen, target.resolve(), load_file(target), dump_path, env_copy, env_state, notes,
                    _target_is_empty(settings), videos, warnings)
