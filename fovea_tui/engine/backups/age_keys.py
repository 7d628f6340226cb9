"""age keys for `[encryption]`: recipients parsed and fingerprinted, identities loaded, new
identities made. Apart from the streams in `encryption` so the config can validate
`encryption.recipients` on load without importing the off-site machinery.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pyrage
from pyrage import ssh, x25519

from fovea_tui.errors import ConfigError

RECIPIENTS_KEY = "encryption.recipients"
IDENTITY_KEY = "encryption.identity_file"


@dataclass(frozen=True)
class Recipient:
    """One public key the copies are encrypted to; `text` is what the config holds."""

    kind: str            # "age" | "ssh-ed25519" | "ssh-rsa"
    text: str
    key: Any = None

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.text)

    def describe(self) -> str:
        return f"{self.kind} {self.fingerprint}"


def fingerprint(public_key: str) -> str:
    """`SHA256:<base64>` as `ssh-keygen -l` prints it for SSH keys; for age keys the same
    shape over the recipient string (age defines no fingerprint of its own)."""
    parts = public_key.split()
    if parts and parts[0].startswith("ssh-") and len(parts) >= 2:
        try:
            blob = base64.b64decode(parts[1], validate=True)
        except ValueError:
            blob = parts[1].encode()
    else:
        blob = public_key.strip().encode()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def parse_recipient(text: str, *, index: int | None = None) -> Recipient:
    """An age1... or ssh-ed25519/ssh-rsa public key; ConfigError naming the key otherwise."""
    where = RECIPIENTS_KEY + (f"[{index}]" if index is not None else "")
    value = text.strip()
    shown = (value[:24] + "…") if len(value) > 24 else value
    try:
        if value.startswith("age1"):
            return Recipient("age", value, x25519.Recipient.from_str(value))
        kind = value.split(" ", 1)[0]
        if kind in ("ssh-ed25519", "ssh-rsa"):
            return Recipient(kind, value, ssh.Recipient.from_str(value))
    except (pyrage.RecipientError, ValueError) as exc:
        raise ConfigError(f"config key {where} ({shown!r}) is not a valid public key: {exc}", key=where,
                          hint="paste the line `fovea-tui keygen` or `age-keygen -y` printed, or a .pub file's line") from None
    if value.startswith("AGE-SECRET-KEY-") or "PRIVATE KEY" in value:
        raise ConfigError(f"config key {where} holds a private key; it takes public keys only", key=where,
                          hint="put the private key in a file and name it in encryption.identity_file")
    raise ConfigError(f"config key {where} ({shown!r}) is not an age1... or ssh-ed25519/ssh-rsa public key",
                      key=where)


def parse_recipients(values: list[str]) -> list[Recipient]:
    out = [parse_recipient(v, index=i) for i, v in enumerate(values)]
    seen: set[str] = set()
    for i, r in enumerate(out):
        if r.fingerprint in seen:
            raise ConfigError(f"config key {RECIPIENTS_KEY}[{i}] repeats a key listed before it",
                              key=f"{RECIPIENTS_KEY}[{i}]")
        seen.add(r.fingerprint)
    return out


def load_identities(path: str | os.PathLike, *, key: str = IDENTITY_KEY) -> list[Any]:
    """The private keys in an age identity file or an unencrypted OpenSSH private key.

    Raises ConfigError (exit 2) naming `key` when the file is missing, unreadable or holds
    no usable key; the message never quotes the file's contents.
    """
    if not str(path):
        raise ConfigError(f"config key {key} is not set: it is needed to read encrypted off-site copies",
                          key=key, hint="name the file `fovea-tui keygen` wrote (or pass --identity FILE)")
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{key}: {p} does not exist", key=key) from None
    except OSError as exc:
        raise ConfigError(f"{key}: {p} cannot be read: {exc.strerror}", key=key) from None
    text = data.decode("utf-8", "replace")
    if "-----BEGIN" in text:
        try:
            return [ssh.Identity.from_buffer(data)]
        except pyrage.IdentityError:
            raise ConfigError(f"{key}: {p} is not an SSH private key pyrage can use (passphrase-protected "
                              "keys are not supported)", key=key,
                              hint="use an age identity from `fovea-tui keygen` instead") from None
    identities = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            identities.append(x25519.Identity.from_str(line))
        except (pyrage.IdentityError, ValueError):
            raise ConfigError(f"{key}: line {number} of {p} is not an age identity (AGE-SECRET-KEY-1...)",
                              key=key) from None
    if not identities:
        raise ConfigError(f"{key}: {p} holds no identity", key=key)
    return identities


def identity_recipients(path: str | os.PathLike) -> list[str]:
    """Public keys of an age identity file (for the fingerprint check); [] for SSH keys."""
    out = []
    for identity in load_identities(path):
        if isinstance(identity, x25519.Identity):
            out.append(str(identity.to_public()))
    return out


def check_identity_file_mode(path: str | os.PathLike) -> str | None:
    """A warning when the identity file is readable by others (it opens every copy)."""
    try:
        mode = Path(path).expanduser().stat().st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}): chmod 600 it"
    return None


def generate_identity(out: Path) -> str:
    """Write a new age identity to `out` (0600, never over an existing file); return its
    recipient (age1...)."""
    from datetime import datetime

    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    body = (f"# created: {datetime.now(UTC).replace(microsecond=0).isoformat()} by fovea-tui keygen\n"
            f"# public key: {recipient}\n{identity}\n")
    try:
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(f"{out} already exists; keygen never overwrites a key", key="--out",
                          hint="choose another --out, or move the old key away first") from None
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}", key="--out") from None
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return recipient



@dataclass
class KeygenResult:
    path: Path
    recipient: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.recipient)

    @property
    def advice(self) -> list[str]:
        return [
            f"Add the recipient to [encryption] recipients; set identity_file = \"{self.path}\" on a host "
            "that must read the copies (verify, drill, restore from off-site).",
            f"Keep a copy of {self.path} AWAY from this host (a password manager, a printed copy, an offline "
            "USB stick): if the host is lost with its only key, the encrypted off-site copies are lost too.",
            "A second recipient whose key stays offline is allowed: list both.",
        ]

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "recipient": self.recipient, "fingerprint": self.fingerprint,
                "advice": self.advice}


def keygen(out: str | os.PathLike) -> KeygenResult:
    path = Path(out).expanduser()
    return KeygenResult(path.resolve(), generate_identity(path))


