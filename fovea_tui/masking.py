"""A process-wide list of secret values, and redaction of them from any text.

Every value read from the install's env file or a database URL is registered here, so the
faces can pass anything they print (errors, a tool's stderr, logs) through `redact`.
"""

from __future__ import annotations

import logging
import sys
import threading

MASK = "••••••"
_MIN_LENGTH = 4  # shorter values ("1", "true", "6379") would redact ordinary text
_lock = threading.Lock()
_secrets: set[str] = set()


def register(*values: str | None) -> None:
    with _lock:
        for value in values:
            if value and len(value) >= _MIN_LENGTH:
                _secrets.add(value)


def register_url(url: str | None) -> None:
    """A notification or ping URL is a credential as a whole: register the URL, what follows
    its scheme (a token may sit where the host goes) and its path with query (an HTTP
    client's error may name the path without the host)."""
    if not url:
        return
    register(url)
    rest = url.split("://", 1)[-1]
    plain_host = not any(c in rest for c in "/@?#") and ("." in rest or rest.startswith("localhost"))
    if not plain_host:  # "localhost" or "example.org" alone would redact ordinary text
        register(rest)
    path = rest.partition("/")[2]
    for tail in (path, path.split("?", 1)[0]):
        if len(tail) >= 8:  # "/api" or "/ping" alone would redact ordinary text
            register("/" + tail)
    userinfo = rest.partition("/")[0].rpartition("@")[0]
    if ":" in userinfo:
        register(userinfo.split(":", 1)[1])


def redact(text: str) -> str:
    if not text:
        return text
    with _lock:
        values = sorted(_secrets, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, MASK)
    return text


def mask(value: str | None) -> str:
    """How a secret is shown on screen: present or not, never its content."""
    return MASK if value else "(empty)"


class RedactingStderrHandler(logging.Handler):
    """Warnings to whatever sys.stderr is at the time (the TUI captures it while it runs),
    with secrets masked. A filter on the root logger would not see records that propagate
    from the engine's loggers; a handler sees them all."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.addFilter(RedactingFilter())
        self.setFormatter(logging.Formatter("fovea-tui: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - logging must never break the operation
            self.handleError(record)


class RedactingFilter(logging.Filter):
    """Logging filter that rewrites every record with secrets masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True
