"""Webhook notifications: a JSON POST to each URL of `notify.webhooks`.

A notification is best effort: each URL gets a few attempts (tenacity: exponential
backoff, capped) with a short timeout, and whatever happens the caller gets a list of
outcomes, never an exception. A webhook URL often carries a token in its path or query
(Slack, Discord, ntfy...), so it is only ever shown masked: scheme and host, the rest
replaced (`mask_url`). The payload is built from names, figures and outcomes and passed
through `masking.redact`; it never holds a credential.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlsplit

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from fovea_tui import __version__
from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.infra import audit

TIMEOUT_S = 5.0
ATTEMPTS = 3
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 4.0

_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")


def mask_url(url: str) -> str:
    """`https://hooks.example.com/services/T0/B0/secret` -> `https://hooks.example.com/•••`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return masking.MASK
    host = parts.netloc.rsplit("@", 1)[-1] or "?"  # never the user:password part
    tail = "/" + masking.MASK if (parts.path not in ("", "/") or parts.query or parts.fragment) else "/"
    return f"{parts.scheme}://{host}{tail}"


def scrub(text: str) -> str:
    """Registered secrets and `user:password@` in URLs, masked."""
    text = masking.redact(text)
    return _CREDENTIALS_IN_URL.sub(lambda m: m.group("scheme") + masking.MASK + "@", text)


class _Retryable(Exception):
    """A failure worth another attempt (network, timeout, 5xx, 429)."""


class _Final(Exception):
    """A failure another attempt would not fix (4xx)."""


@dataclass
class Delivery:
    url: str                   # masked
    ok: bool
    attempts: int
    status: int | None = None
    error: str = ""
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"url": self.url, "ok": self.ok, "attempts": self.attempts, "status": self.status,
                "error": self.error, "duration_s": round(self.duration_s, 3)}


def _post_once(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json",
        "User-Agent": f"fovea-tui/{__version__}",
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http(s) only, checked by config
            response.read(65536)
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code == 429:
            raise _Retryable(f"HTTP {exc.code}") from None
        raise _Final(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        raise _Retryable(str(getattr(exc, "reason", exc))) from None
    except (TimeoutError, socket.timeout):
        raise _Retryable(f"no answer within {timeout:g} s") from None
    except (OSError, ValueError) as exc:
        raise _Retryable(str(exc)) from None


def post_json(url: str, payload: dict[str, Any], *, timeout: float = TIMEOUT_S, attempts: int = ATTEMPTS,
              backoff_initial: float = BACKOFF_INITIAL_S, backoff_max: float = BACKOFF_MAX_S) -> Delivery:
    """POST `payload` to `url` with retries; never raises."""
    masked = mask_url(url)
    if not url.startswith(("http://", "https://")):
        return Delivery(masked, False, 0, error="not an http(s) URL")
    body = json.dumps(payload, default=str, ensure_ascii=False).encode("utf-8")
    tries = 0
    started = time.monotonic()

    def attempt() -> int:
        nonlocal tries
        tries += 1
        return _post_once(url, body, timeout)

    retrying = Retrying(
        stop=stop_after_attempt(max(1, attempts)),
        wait=wait_exponential(multiplier=backoff_initial, min=backoff_initial, max=backoff_max),
        retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
        reraise=True,
    )
    try:
        status = retrying(attempt)
        return Delivery(masked, True, tries, status=status, duration_s=time.monotonic() - started)
    except (_Retryable, _Final, RetryError) as exc:
        message = str(exc).replace(url, masked)
        status = None
        m = re.match(r"HTTP (\d{3})", message)
        if m:
            status = int(m.group(1))
        return Delivery(masked, False, tries, status=status, error=scrub(message),
                        duration_s=time.monotonic() - started)


def send(settings: Settings, payload: dict[str, Any], *, warn: Callable[[str], None] | None = None,
         **post_kwargs: Any) -> list[dict[str, Any]]:
    """Send `payload` to every configured webhook; failures are warned about and audited."""
    if warn is None:
        def warn(message: str) -> None:
            sys.stderr.write(f"fovea-tui: warning: {message}\n")
            sys.stderr.flush()

    safe = json.loads(scrub(json.dumps(payload, default=str, ensure_ascii=False)))
    outcomes: list[dict[str, Any]] = []
    for url in settings.notify.webhooks:
        delivery = post_json(url, safe, **post_kwargs)
        outcomes.append(delivery.as_dict())
        if not delivery.ok:
            warn(f"webhook {delivery.url} failed after {delivery.attempts} attempt(s): {delivery.error}")
            audit.record(settings, "notify", "failed", {"url": delivery.url, "attempts": delivery.attempts,
                                                        "error": delivery.error, "event": payload.get("event")})
    return outcomes
