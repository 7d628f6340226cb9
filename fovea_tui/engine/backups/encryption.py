"""Off-site copies in the age format (age-encryption.org/v1), through pyrage.

Whoever reads the bucket must not own the install: with `[encryption] recipients` set, the
dump and the env copy leave the host as `....sql.gz.age` and `....env.age`, which the standard
`age -d -i KEY` opens, so an operator can always recover without fovea-tui. The manifest stays
readable (the inventory lists off-site backups without the key) and records the encryption:
the recipients' fingerprints and, per file, the sha256 and size of plaintext and ciphertext.

Keys (recipients, identities, fingerprints, keygen) are `age_keys`. Everything streams
through pyrage's `encrypt_io`/`decrypt_io` with hashing wrappers on both
sides, so memory stays flat whatever the dump's size. Local copies are not encrypted: the host
already holds the live secrets.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyrage

from fovea_tui.engine.backups.age_keys import (
    IDENTITY_KEY,
    RECIPIENTS_KEY,
    Recipient,
    check_identity_file_mode,
    load_identities,
    parse_recipients,
)
from fovea_tui.errors import Cancelled, ConfigError, FoveaError, OperationFailed
from fovea_tui.formatting import plural

AGE_SUFFIX = ".age"
FORMAT = "age-encryption.org/v1"
CHUNK = 1 << 20


class DecryptFailed(OperationFailed):
    """An encrypted copy could not be opened with the identity given (exit 1)."""


# --------------------------------------------------------------------------- streams


class _Meter:
    """Hashes and counts the bytes of one side of a stream, honours a cancel flag and
    reports progress once per MiB (pyrage moves 8-64 KiB at a time)."""

    def __init__(self, cancel=None, on_bytes: Callable[[int], None] | None = None) -> None:
        self.cancel, self.on_bytes = cancel, on_bytes
        self.digest, self.size, self._reported = hashlib.sha256(), 0, 0

    def count(self, data) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(self.cancel.reason)
        self.digest.update(data)
        self.size += len(data)
        if self.on_bytes is not None and (self.size - self._reported >= CHUNK or (not data and self.size)):
            self._reported = self.size
            self.on_bytes(self.size)

    @property
    def sha256(self) -> str:
        return self.digest.hexdigest()


class _HashingReader(_Meter, io.BufferedIOBase):
    def __init__(self, raw: IO[bytes], cancel=None, on_bytes: Callable[[int], None] | None = None) -> None:
        super().__init__(cancel, on_bytes)
        self.raw = raw

    def read(self, n: int | None = -1) -> bytes:
        data = self.raw.read(n if n and n > 0 else CHUNK)
        self.count(data)
        return data


class _HashingWriter(_Meter, io.BufferedIOBase):
    def __init__(self, raw: IO[bytes], cancel=None, on_bytes: Callable[[int], None] | None = None) -> None:
        super().__init__(cancel, on_bytes)
        self.raw = raw

    def write(self, data) -> int:
        self.count(data)
        view = memoryview(data)
        while view:
            written = self.raw.write(view)
            view = view[written if written is not None else len(view):]
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


@dataclass
class Sealed:
    """Sizes and sha256 of one file on both sides of the encryption."""

    plaintext_size: int
    plaintext_sha256: str
    size: int
    sha256: str

    def record(self, plaintext_name: str) -> dict[str, Any]:
        return {"plaintext": plaintext_name, "plaintext_size": self.plaintext_size,
                "plaintext_sha256": self.plaintext_sha256, "size": self.size, "sha256": self.sha256}


def encrypt_file(src: Path, dst: Path, recipients: list[Recipient], *, plaintext_sha256: str, cancel=None,
                 on_bytes: Callable[[int], None] | None = None) -> Sealed:
    """Encrypt `src` (whose sha256 the caller already knows, from the manifest) into a new
    file `dst` (0600), hashing the ciphertext on the way; remove `dst` on any failure. Not
    fsynced: it is a temp copy for the upload, which checks its sha256 on arrival. Where the
    plaintext is checked is on the way back: `fetch` compares it with the manifest."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with src.open("rb", buffering=CHUNK) as fin, os.fdopen(fd, "wb", buffering=CHUNK) as fout:
            size = os.fstat(fin.fileno()).st_size
            writer = _HashingWriter(fout, cancel, on_bytes)
            try:
                pyrage.encrypt_io(fin, writer, [r.key for r in recipients])  # type: ignore[arg-type]
            except pyrage.EncryptError as exc:
                if cancel is not None and cancel.cancelled:
                    raise Cancelled(cancel.reason) from None
                raise OperationFailed(f"encrypting {src.name} failed: {exc}") from None
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return Sealed(size, plaintext_sha256, writer.size, writer.sha256)


def decrypt_stream(src: IO[bytes], dst: IO[bytes], identities: list[Any], *, what: str, cancel=None,
                   on_bytes: Callable[[int], None] | None = None) -> Sealed:
    """Decrypt `src` into `dst`; DecryptFailed (one line) for a wrong key or damaged bytes."""
    reader, writer = _HashingReader(src, cancel, on_bytes), _HashingWriter(dst)
    try:
        pyrage.decrypt_io(reader, writer, identities)
    except pyrage.DecryptError as exc:
        if cancel is not None and cancel.cancelled:
            raise Cancelled(cancel.reason) from None
        text = str(exc)
        if "No matching keys" in text:
            raise DecryptFailed(f"cannot decrypt {what}: the identity is not one of the recipients it was "
                                "encrypted to", hint=f"use the key whose public part is in "
                                f"{RECIPIENTS_KEY} when the copy was made") from None
        raise DecryptFailed(f"cannot decrypt {what}: {text.splitlines()[0] if text else 'damaged age file'}") from None
    except OSError as exc:  # pyrage reports a payload that fails authentication (or a failed write) so
        if cancel is not None and cancel.cancelled:
            raise Cancelled(cancel.reason) from None
        raise DecryptFailed(f"cannot decrypt {what}: the file is damaged or cut short ({exc})") from None
    return Sealed(writer.size, writer.sha256, reader.size, reader.sha256)


def decrypt_bytes(data: bytes, identities: list[Any], *, what: str) -> bytes:
    out = io.BytesIO()
    decrypt_stream(io.BytesIO(data), out, identities, what=what)
    return out.getvalue()


# --------------------------------------------------------------------------- off-site


def enabled(settings) -> bool:
    return bool(settings.encryption.recipients)


def manifest_record(recipients: list[Recipient], files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the manifest says of the encryption: format, recipients' fingerprints, per file
    sha256/size of plaintext and ciphertext. Public facts only."""
    return {"format": FORMAT, "recipients": [{"type": r.kind, "fingerprint": r.fingerprint} for r in recipients],
            "files": files}


def encrypted_name(name: str) -> str:
    return name + AGE_SUFFIX


def plain_name(key: str) -> str:
    """`fovea-X.sql.gz.age` -> `fovea-X.sql.gz` (other names unchanged)."""
    return key[: -len(AGE_SUFFIX)] if key.endswith(AGE_SUFFIX) else key


def file_record(manifest_data: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The manifest's record of the encrypted off-site file `key`, or None."""
    enc = (manifest_data or {}).get("encryption")
    files = enc.get("files") if isinstance(enc, dict) else None
    record = files.get(key.rsplit("/", 1)[-1]) if isinstance(files, dict) else None
    return record if isinstance(record, dict) else None


@contextlib.contextmanager
def offsite_uploads(settings, dump: Path, env_copy: Path | None, manifest_path: Path, manifest, *,
                    cancel=None, progress=None) -> Iterator[list[tuple[Path, str, str | None]]]:
    """The (local file, off-site key, sha256) to upload for one backup, manifest last.

    Without recipients: the files as they are. With recipients: the dump and env copy are
    encrypted into temp files beside them (removed on leaving), and the manifest, local and
    off-site alike, records the encryption before it is uploaded.
    """
    from fovea_tui.engine.backups import manifest as mf
    from fovea_tui.engine.progress import ProgressEvent

    if not enabled(settings):
        files = [(dump, dump.name, manifest.sha256)]
        if env_copy is not None:
            files.append((env_copy, env_copy.name, None))
        yield files + [(manifest_path, manifest_path.name, None)]
        return
    recipients = parse_recipients(settings.encryption.recipients)
    temps: list[Path] = []
    try:
        out: list[tuple[Path, str, str | None]] = []
        records: dict[str, dict[str, Any]] = {}
        for src in [dump] + ([env_copy] if env_copy is not None else []):
            key = encrypted_name(src.name)
            tmp = src.with_name(f".fovea-{key[len('fovea-'):]}.partial")
            temps.append(tmp)
            total = src.stat().st_size

            def on_bytes(done: int, _name=src.name, _total=total) -> None:
                if progress is not None:
                    progress(ProgressEvent("encrypt", done, _total, "bytes", current=_name))

            expected = manifest.sha256 if src == dump else (manifest.env_file or {}).get("sha256") or ""
            sealed = encrypt_file(src, tmp, recipients, plaintext_sha256=expected, cancel=cancel, on_bytes=on_bytes)
            records[key] = sealed.record(src.name)
            out.append((tmp, key, sealed.sha256))
        manifest.extra["encryption"] = manifest_record(recipients, records)
        mf.write(manifest, manifest_path)
        out.append((manifest_path, manifest_path.name, None))
        yield out
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def fetch(store, key: str, dest: Path, *, identities: list[Any] | None, record: dict[str, Any] | None = None,
          expected_sha256: str | None = None, cancel=None, progress=None, mode: int = 0o600) -> Path:
    """Download off-site `key` to `dest` through a temp name, decrypting an `.age` key with
    `identities`, and check what arrived: the ciphertext against the manifest's `record`,
    the plaintext against `expected_sha256`. Nothing is left at `dest` unless it all holds."""
    from fovea_tui.engine.progress import ProgressEvent

    if not key.endswith(AGE_SUFFIX):
        store.get_file(key, dest, expected_sha256=expected_sha256, progress=progress, cancel=cancel)
        return dest
    if not identities:
        raise ConfigError(f"{key} is encrypted and config key {IDENTITY_KEY} is not set", key=IDENTITY_KEY,
                          hint="name the age identity (or pass --identity FILE) whose public key was in "
                               f"{RECIPIENTS_KEY} when the copy was made")
    head = store.head(key)
    total = head.size if head else None
    tmp = dest.with_name(f".{dest.name}.partial")
    dest.parent.mkdir(parents=True, exist_ok=True)

    def on_bytes(done: int) -> None:
        if progress is not None:
            progress(ProgressEvent("transfer", done, total, "bytes", current=key))

    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with store.open_read(key) as src, os.fdopen(fd, "wb", buffering=CHUNK) as out:
            sealed = decrypt_stream(src, out, identities, what=f"off-site {key}", cancel=cancel, on_bytes=on_bytes)
            out.flush()
            os.fsync(out.fileno())
        if record is not None and record.get("sha256") and sealed.sha256 != record.get("sha256"):
            raise OperationFailed(f"off-site {key}: its sha256 differs from the manifest's record of the encrypted file")
        want = expected_sha256 or (record or {}).get("plaintext_sha256")
        if want and sealed.plaintext_sha256 != want:
            raise OperationFailed(f"off-site {key} decrypted, but the plaintext's sha256 differs from the manifest's")
        os.chmod(tmp, mode)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def read_decrypted(store, key: str, *, identities: list[Any] | None) -> bytes:
    """A small off-site object (an env copy), decrypted when it is an `.age` file."""
    data = store.read_bytes(key)
    if not key.endswith(AGE_SUFFIX):
        return data
    if not identities:
        raise ConfigError(f"{key} is encrypted and config key {IDENTITY_KEY} is not set", key=IDENTITY_KEY)
    return decrypt_bytes(data, identities, what=f"off-site {key}")


def identities_for(settings, key: str, override: str | None = None) -> list[Any] | None:
    """What opens off-site `key`: None for a plaintext key; for an `.age` key the identities
    of `override` (--identity) or `encryption.identity_file`, ConfigError naming the one
    that is missing or bad."""
    if not key.endswith(AGE_SUFFIX):
        return None
    path = override or settings.encryption.identity_file
    if not path:
        raise ConfigError(f"{key.rsplit('/', 1)[-1]} is encrypted and config key {IDENTITY_KEY} is not set",
                          key=IDENTITY_KEY, hint="name the age identity whose public key was in "
                          f"{RECIPIENTS_KEY} when the copy was made")
    return load_identities(path, key="--identity" if override else IDENTITY_KEY)


# --------------------------------------------------------------------------- status

PROBE_BYTES = 256 * 1024   # the age header and the first payload chunks: enough to prove the key opens it
_probe_cache: dict[tuple, tuple[bool, str]] = {}


class _Discard(io.BufferedIOBase):
    def write(self, data) -> int:
        return len(data)


def probe(store, key: str, identities: list[Any]) -> tuple[bool, str]:
    """Can `identities` open off-site `key`? Reads only its first PROBE_BYTES: the header's
    file key unwraps with the identity (and the first chunks authenticate) or it does not."""
    with store.open_read(key) as fh:
        head = fh.read(PROBE_BYTES)
    try:
        pyrage.decrypt_io(io.BytesIO(head), _Discard(), identities)
    except pyrage.DecryptError as exc:  # the header: a wrong key, or not an age file
        text = str(exc)
        return False, text.splitlines()[0] if text else "cannot decrypt"
    except OSError as exc:  # the payload: expected when only its start was read
        if len(head) < PROBE_BYTES:
            return False, f"the file is damaged ({exc})"
    return True, "opens with the identity"


def encryption_status(settings) -> dict[str, Any]:
    """The `encryption` section of status: WARNING while env copies go off-site unencrypted,
    CRITICAL when identity_file is set but cannot open the newest encrypted off-site dump.

    The newest dump is found from the local manifests (no off-site listing on every poll); the
    probe reads a few hundred KiB of it and is cached per (key, identity file)."""
    from fovea_tui.engine.backups import manifest as mf

    section: dict[str, Any] = {"enabled": enabled(settings), "recipients": [], "identity_file":
                               settings.encryption.identity_file or None, "checked": None, "alerts": []}
    alerts = section["alerts"]
    offsite = settings.backups.offsite
    if not enabled(settings):
        section["summary"] = "off-site copies are not encrypted"
        if offsite:
            alerts.append({"level": "warning", "subject": "encryption",
                           "message": f"env copies (SESSION_SECRET, database password, ...) go to {offsite} "
                                      "unencrypted: set [encryption] recipients (`fovea-tui keygen`)"})
        return section
    try:
        section["recipients"] = [r.describe() for r in parse_recipients(settings.encryption.recipients)]
    except ConfigError as exc:
        alerts.append({"level": "critical", "subject": "encryption", "message": str(exc)})
        return section
    section["summary"] = f"off-site copies encrypted to {plural(len(section['recipients']), 'recipient')}"
    path = settings.encryption.identity_file
    if not path or not offsite:
        return section
    mode_warning = check_identity_file_mode(path)
    if mode_warning:
        alerts.append({"level": "warning", "subject": "encryption", "message": f"encryption.identity_file {mode_warning}"})
    newest = None
    for dump, _parsed in reversed(mf.list_dumps(settings.backups_dir)):
        try:
            m = mf.read_for(dump)
        except mf.ManifestError:
            continue
        record = (m.extra.get("encryption") or {}) if m is not None else {}
        keys = [k for k, v in (record.get("files") or {}).items() if isinstance(v, dict) and v.get("plaintext") == dump.name]
        if keys:
            newest = keys[0]
            break
    if newest is None:
        return section
    try:
        st = Path(path).expanduser().stat()
        cache_key = (offsite, newest, str(path), st.st_size, st.st_mtime_ns)
    except OSError:
        cache_key = None
    try:
        if cache_key is not None and cache_key in _probe_cache:
            ok, detail = _probe_cache[cache_key]
        else:
            from fovea_tui.engine.infra.stores import open_store

            identities = load_identities(path)
            ok, detail = probe(open_store(offsite, settings.s3), newest, identities)
            if cache_key is not None:
                _probe_cache[cache_key] = (ok, detail)
    except ConfigError as exc:
        ok, detail = False, str(exc)
    except (FoveaError, OSError) as exc:  # the store did not answer: not a verdict on the key
        section["checked"] = {"key": newest, "ok": None, "detail": str(exc)}
        return section
    section["checked"] = {"key": newest, "ok": ok, "detail": detail}
    if not ok:
        alerts.append({"level": "critical", "subject": "encryption",
                       "message": f"encryption.identity_file {path} cannot decrypt the newest off-site dump "
                                  f"{newest}: {detail}. Find the right key now, not in the disaster"})
    return section
