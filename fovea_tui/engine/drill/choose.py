"""Which dump a drill restores: the newest regular dump with a manifest, off-site first."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.backups.inventory import OFFSITE, load_inventory
from fovea_tui.engine.infra.stores import open_store
from fovea_tui.errors import FoveaError, OperationFailed, SafetyRefusal


@dataclass
class Chosen:
    name: str
    source: str
    manifest: mf.Manifest
    dump_key: str | None = None        # off-site key
    local_path: Path | None = None
    env_key: str | None = None          # off-site key of the env copy
    env_path: Path | None = None        # local env copy (local source)
    store: Any = None


def choose_dump(settings: Settings) -> Chosen:
    """The newest regular dump with a manifest, off-site (local when none is configured).

    SafetyRefusal (exit 3) when there is none; OperationFailed when the store does not answer.
    """
    offsite = bool(settings.backups.offsite)
    store = open_store(settings.backups.offsite, settings.s3) if offsite else None  # ConfigError: exit 2
    inventory = load_inventory(settings, include_offsite=offsite, store=store)
    if offsite and inventory.errors:
        raise OperationFailed("the off-site store did not answer: " + "; ".join(inventory.errors))
    for entry in inventory.entries:  # newest first
        if entry.kind != "regular":
            continue
        if offsite:
            if entry.offsite is None or entry.offsite.status == "corrupt" or OFFSITE not in entry.manifests:
                continue
            key = entry.manifests[OFFSITE]
            assert inventory.store is not None  # an off-site entry was listed from this store
            try:
                manifest = mf.parse(inventory.store.read_bytes(key), source=f"off-site manifest {key}")
            except FoveaError:
                continue
            return Chosen(entry.name, "offsite", manifest, dump_key=entry.offsite.key,
                           env_key=entry.envs.get(OFFSITE), store=inventory.store)
        if entry.local is None or entry.local.status == "corrupt" or entry.manifest is None:
            continue
        path = settings.backups_dir / entry.local.key
        try:
            manifest = mf.read(mf.manifest_path(path))
        except FoveaError:
            continue
        env = mf.env_copy_path(path)
        return Chosen(entry.name, "local", manifest, local_path=path, env_path=env if env.is_file() else None)
    where = f"off-site at {settings.backups.offsite}" if offsite else f"in {settings.backups_dir}"
    raise SafetyRefusal(f"no dump with a manifest {where} to drill",
                        hint="run `fovea-tui backup` first" + ("" if offsite else
                                                               "; set backups.offsite to drill the off-site copies"))
