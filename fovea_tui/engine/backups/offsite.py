"""The off-site copy of a finished backup: dump, env copy and manifest, uploaded to
`backups.offsite` (S3 or a directory) and verified by the store; with `[encryption]` the dump
and env copy go as age files (`engine.backups.encryption`).

A failed upload never costs the local backup: OffsiteFailed carries the complete local
result and says it was kept.
"""

from __future__ import annotations

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.backups import encryption
from fovea_tui.engine.backups import manifest as mf
from fovea_tui.engine.infra.stores import DirectoryStore, open_store
from fovea_tui.engine.infra.targets import prepare_directory_target
from fovea_tui.engine.progress import CancelToken
from fovea_tui.errors import Cancelled, OperationFailed


class OffsiteFailed(OperationFailed):
    """The local backup is complete but the off-site copy failed; `result` describes it."""

    def __init__(self, message: str, result, **kw) -> None:
        super().__init__(message, **kw)
        self.result = result


def upload(settings: Settings, result, *, progress, cancel: CancelToken) -> None:
    """Upload a finished backup (`pipeline.BackupResult`): dump, env copy, manifest (last),
    each verified by the store; records where in `result.offsite`, or raises OffsiteFailed."""
    url = settings.backups.offsite
    keys: list[str] = []
    try:
        store = open_store(url, settings.s3)
        if isinstance(store, DirectoryStore):
            prepare_directory_target(settings, "backups.offsite", store.root)
        with encryption.offsite_uploads(settings, result.path, result.env_copy, result.manifest_path,
                                        result.manifest, cancel=cancel, progress=progress) as files:
            for local, key, sha in files:
                cancel.check()
                store.put_file(local, key, sha256=sha or mf.file_sha256(local), progress=progress,
                               cancel=cancel)
                keys.append(key)
        where = store.describe()
    except Cancelled:
        raise
    except Exception as exc:  # noqa: BLE001 - any store failure: keep the local backup, say so
        reason = masking.redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        # Every piece that did not go up is named: a dump off-site without its manifest or env
        # copy is not a backup there, whatever went up before the failure.
        uploaded = {encryption.plain_name(k) for k in keys}
        missing = [p.name for p in backup_files(result) if p.name not in uploaded]
        result.offsite = {"url": url, "status": "failed", "complete": False, "keys": keys, "missing": missing}
        result.offsite_error = reason
        raise OffsiteFailed(
            f"off-site copy to {url} failed ({', '.join(missing)} not uploaded): {reason}; "
            f"the local backup {result.path} is complete and kept",
            result,
        ) from None
    result.offsite = {"url": url, "status": "ok", "complete": True, "keys": keys, "missing": [], "where": where,
                      "encrypted": encryption.enabled(settings)}


def backup_files(result) -> list:
    """What a whole backup is, in upload order: dump, env copy, manifest (last)."""
    return [result.path] + ([result.env_copy] if result.env_copy is not None else []) + [result.manifest_path]
