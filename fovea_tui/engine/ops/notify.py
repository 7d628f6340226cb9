"""Notifications: the contract's JSON webhooks, Apprise channels, and alerts once a day.

- `notify.webhooks` get the JSON body of the contract, POSTed by `post_json` (Apprise cannot
  send an arbitrary JSON document): a few attempts (tenacity), a short timeout, an overall
  budget of seconds.
- `notify.urls` are Apprise URLs (mail, ntfy, Gotify, Matrix, Slack, Discord, Telegram,
  json://...): a human-readable title and body; Apprise does the protocol and its own retry.
- `send_alerts` raises what an operator must act on (a CRITICAL status alert, a drill
  overdue or failed, a restore that did not end ok) on the Apprise channels at most once per
  alert per day, so a stuck condition reminds once a day instead of at every cron run. The
  day is the host's calendar day; what was sent when is kept in `<state_dir>/alerts-sent.json`.

Best effort throughout: whatever happens, callers get outcomes, never an exception. Every
URL is a credential: shown only through `mask_url`, and registered with `masking` when the
config is loaded so any text that still names it is redacted.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
)

from fovea_tui import __version__, masking
from fovea_tui.config import Settings, load_apprise
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import acquire, ensure_private_dir
from fovea_tui.errors import FoveaError, LockHeld
from fovea_tui.formatting import plural

TIMEOUT_S = 5.0
ATTEMPTS = 3
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 4.0
BUDGET_S = 12.0               # one webhook never costs a run more than this

APPRISE_RETRY = 1             # Apprise's own retry: one more attempt after a failure
APPRISE_WAIT_S = 1.0
APPRISE_TIMEOUT_S = 5.0       # connect and read timeout of each Apprise service

ALERTS_FILE = "alerts-sent.json"
ALERT_MEMORY = timedelta(days=3)   # forget what was sent longer ago than this
ALERTS_LOCK_WAIT_S = 60.0          # another sender holds the alerts lock: wait this long for it

_CREDENTIALS_IN_URL = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_HOST_NAME = re.compile(r"^(localhost|\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+)(:\d+)?$")

log = logging.getLogger(__name__)


def mask_url(url: str) -> str:
    """`https://hooks.example.com/services/T0/B0/secret` -> `https://hooks.example.com/•••`.

    The host is shown only when it looks like a host name: in many Apprise URLs
    (`tgram://<bot token>/...`, `discord://<webhook id>/...`) a token sits where the host goes.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return masking.MASK
    if not parts.scheme or "://" not in url:
        return masking.MASK
    host = parts.netloc.rsplit("@", 1)[-1]  # never the user:password part
    if not _HOST_NAME.match(host):
        return f"{parts.scheme}://{masking.MASK}"
    tail = masking.MASK if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}/{tail}"


def scrub(text: str) -> str:
    """Registered secrets and `user:password@` in URLs, masked."""
    text = masking.redact(text)
    return _CREDENTIALS_IN_URL.sub(lambda m: m.group("scheme") + masking.MASK + "@", text)


def host_name() -> str:
    return socket.gethostname()


# ---------------------------------------------------------------- HTTP, by hand ---------

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
    channel: str = "webhook"   # webhook | apprise | ping

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "url": self.url, "ok": self.ok, "attempts": self.attempts,
                "status": self.status, "error": self.error, "duration_s": round(self.duration_s, 3)}


def _request_once(url: str, body: bytes | None, content_type: str, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET", headers={
        "Content-Type": content_type,
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
        reason = getattr(exc, "reason", exc)
        raise _Retryable(getattr(reason, "strerror", None) or str(reason)) from None
    except TimeoutError:
        raise _Retryable(f"no answer within {timeout:.1f} s") from None
    except (OSError, ValueError) as exc:
        raise _Retryable(getattr(exc, "strerror", None) or str(exc)) from None


def http_call(url: str, body: bytes | None, *, content_type: str = "application/json", channel: str = "webhook",
              timeout: float = TIMEOUT_S, attempts: int = ATTEMPTS, backoff_initial: float = BACKOFF_INITIAL_S,
              backoff_max: float = BACKOFF_MAX_S, budget: float = BUDGET_S) -> Delivery:
    """POST `body` (GET when None) to `url`; retries network errors, 5xx and 429 with
    exponential backoff, and stops after `attempts` or once `budget` seconds have gone.
    Never raises; the outcome names the URL masked."""
    masked = mask_url(url)
    if not url.startswith(("http://", "https://")):
        return Delivery(masked, False, 0, error="not an http(s) URL", channel=channel)
    tries = 0
    started = time.monotonic()

    def attempt() -> int:
        nonlocal tries
        tries += 1
        left = budget - (time.monotonic() - started)
        return _request_once(url, body, content_type, max(0.1, min(timeout, left)))

    retrying = Retrying(
        # stop_before_delay: no backoff sleep (and a last 0.1 s attempt) may carry a call past its budget
        stop=stop_after_attempt(max(1, attempts)) | stop_before_delay(budget),
        wait=wait_exponential(multiplier=backoff_initial, min=backoff_initial, max=backoff_max),
        retry=retry_if_exception(lambda exc: isinstance(exc, _Retryable)),
        reraise=True,
    )
    try:
        status = retrying(attempt)
        return Delivery(masked, True, tries, status=status, duration_s=time.monotonic() - started, channel=channel)
    except (_Retryable, _Final, RetryError) as exc:
        message = scrub(str(exc).replace(url, masked))
        m = re.match(r"HTTP (\d{3})", message)
        return Delivery(masked, False, tries, status=int(m.group(1)) if m else None, error=message,
                        duration_s=time.monotonic() - started, channel=channel)


def delivery_line(d: dict[str, Any]) -> str:
    """One outcome as a person reads it: channel, masked URL, delivered or why not."""
    what = f"ping {d['event']}" if d["channel"] == "ping" else d["channel"]
    outcome = "delivered" if d["ok"] else f"FAILED after {plural(d['attempts'], 'attempt')}: {d['error']}"
    return f"{what:<13} {d['url']}: {outcome}"


def post_json(url: str, payload: dict[str, Any], **options: Any) -> Delivery:
    """POST `payload` as JSON to `url` with retries; never raises."""
    body = json.dumps(payload, default=str, ensure_ascii=False).encode("utf-8")
    return http_call(url, body, **options)


# ---------------------------------------------------------------- Apprise ---------------

def send_apprise(url: str, title: str, body: str, *, failure: bool = False) -> Delivery:
    """One message to one Apprise URL; the error is the service's last log line, masked."""
    apprise = load_apprise()
    masked = mask_url(url)
    started = time.monotonic()
    asset = apprise.AppriseAsset(default_service_retry=APPRISE_RETRY, default_service_wait=APPRISE_WAIT_S)
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        return Delivery(masked, False, 0, error="not a URL Apprise can use", channel="apprise")
    query = urlsplit(url).query if "?" in url else ""
    if "cto=" not in query:  # the URL's own timeouts win
        plugin.socket_connect_timeout = APPRISE_TIMEOUT_S
    if "rto=" not in query:
        plugin.socket_read_timeout = APPRISE_TIMEOUT_S
    sender = apprise.Apprise(asset=asset)
    sender.add(plugin)
    kind = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.INFO
    try:
        result = sender.notify(title=title, body=body, notify_type=kind)
    except Exception as exc:  # noqa: BLE001 - a plugin's bug must not cost the run
        return Delivery(masked, False, 1, error=scrub(f"{type(exc).__name__}: {exc}"),
                        duration_s=time.monotonic() - started, channel="apprise")
    services = list(result.results)
    attempts = sum(len(s.attempts) for s in services) or 1
    errors = [e.message for s in services for e in s.logs() if e.level in ("WARNING", "ERROR")]
    ok = bool(result)
    return Delivery(masked, ok, attempts, error="" if ok else scrub(errors[-1] if errors else "not delivered"),
                    duration_s=time.monotonic() - started, channel="apprise")


# ---------------------------------------------------------------- messages --------------

@dataclass
class Message:
    """One event for every channel: Apprise gets title and body, webhooks get `payload`
    (None: this event is not one the webhook contract carries)."""

    title: str
    body: str
    failure: bool = False
    payload: dict[str, Any] | None = None


def warn_stderr(message: str) -> None:
    sys.stderr.write(f"fovea-tui: warning: {masking.redact(message)}\n")
    sys.stderr.flush()


def deliver(settings: Settings, message: Message, *, warn: Callable[[str], None] | None = None,
            **post_options: Any) -> list[dict[str, Any]]:
    """Send `message` to every webhook (when it has a payload) and every Apprise URL.
    Failures are warned about and audited; nothing raises."""
    warn = warn or warn_stderr
    deliveries: list[Delivery] = []
    if message.payload is not None:
        safe = json.loads(scrub(json.dumps(message.payload, default=str, ensure_ascii=False)))
        deliveries += [post_json(url, safe, **post_options) for url in settings.notify.webhooks]
    title, body = scrub(message.title), scrub(message.body)
    deliveries += [send_apprise(url, title, body, failure=message.failure) for url in settings.notify.urls]
    for d in deliveries:
        if not d.ok:
            warn(f"{d.channel} {d.url} failed after {plural(d.attempts, 'attempt')}: {d.error}")
            audit.record(settings, "notify", "failed", {"channel": d.channel, "url": d.url, "attempts": d.attempts,
                                                        "error": d.error, "title": title})
    return [d.as_dict() for d in deliveries]


# ---------------------------------------------------------------- alerts ----------------

@dataclass(frozen=True)
class Alert:
    """Something a person must act on. `key` names the condition, stable while it lasts
    (it decides what counts as "the same alert" for the once-a-day rule)."""

    severity: str          # critical | warning
    key: str
    text: str
    next_step: str = ""


# What to run next, by the status card an alert belongs to.
NEXT_STEP = {
    "database": "check the database with `fovea-tui status`, then take a backup with `fovea-tui backup`",
    "backups": "run `fovea-tui verify` and `fovea-tui backup`, then `fovea-tui status`",
    "drill": "run `fovea-tui drill` and read its report",
    "sync": "run `fovea-tui sync` and read its errors",
    "schedule": "run `fovea-tui schedule show`; `fovea-tui schedule install` puts the nightly run back",
    "stack": "run `fovea-tui status` and `docker compose ps` on the host",
    "volume": "check that the video volume is mounted, then `fovea-tui status`",
    "env_file": "check the install's env file, then `fovea-tui status`",
    "disk": "free space under the backups directory, then `fovea-tui prune --dry-run`",
    "restore": "open fovea-tui's Restore screen (or `fovea-tui restore`) to see where the restore stopped",
}


# Cards whose alerts are also raised by the event itself (a drill or a restore that ends
# badly): keyed by card and level alone, so the event and the status that reports it later
# are one alert.
EVENT_SUBJECTS = ("drill", "restore")


def alerts_from_status(alerts: list[Any]) -> list[Alert]:
    """The status alerts worth a person's phone: every CRITICAL one, and any about the drill
    (overdue is a warning on the dashboard). Status alerts carry no key of their own: it is
    their card and level, with figures taken out of the text so a count that moves does not
    make a new alert (`EVENT_SUBJECTS`: card and level alone)."""
    chosen: list[Alert] = []
    for a in alerts:
        level, subject, text = (a["level"], a["subject"], a["message"]) if isinstance(a, dict) else (
            a.level, a.subject, a.message)
        text = scrub(text)
        if level != "critical" and subject != "drill":
            continue
        key = f"{subject}:{level}" if subject in EVENT_SUBJECTS else f"{subject}:{level}:{re.sub(r'[0-9]+', '#', text)}"
        chosen.append(Alert(level, key, text, NEXT_STEP.get(subject, "run `fovea-tui status`")))
    return chosen


def alerts_path(settings: Settings):
    return settings.state_dir / ALERTS_FILE


def _read_sent(settings: Settings) -> dict[str, str]:
    try:
        data = json.loads(alerts_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _same_day(a: datetime, b: datetime) -> bool:
    return a.astimezone().date() == b.astimezone().date()


@dataclass
class AlertsOutcome:
    sent: list[str] = field(default_factory=list)        # keys sent now
    held_back: list[str] = field(default_factory=list)   # keys already sent today
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""                                        # why no alert could be checked

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "held_back": self.held_back, "deliveries": self.deliveries, "error": self.error}


def send_alerts(settings: Settings, alerts: list[Alert], *, now: datetime | None = None,
                warn: Callable[[str], None] | None = None) -> AlertsOutcome:
    """Send the alerts not yet sent today (the host's calendar day) to the Apprise channels,
    as one message: one mail for a bad night, and a channel that hangs costs its timeout
    once, not once per alert.

    An alert counts as sent only when at least one channel took it, so a channel that was
    down is tried again at the next check. Never raises.
    """
    if not settings.notify.urls or not alerts:
        return AlertsOutcome()
    # One sender at a time (the nightly run and a `status` from cron may meet): each reads
    # what the other sent, so an alert never goes out twice in a day.
    now = now or datetime.now(UTC)
    try:
        with acquire(settings, "alerts", purpose="sending alerts", wait=ALERTS_LOCK_WAIT_S):
            return _send_alerts_locked(settings, alerts, now, warn)
    except LockHeld as exc:  # another sender is stuck on a channel: it will send these too
        log.warning("alerts not sent: %s", exc)
        return AlertsOutcome(error=str(exc))
    except (FoveaError, OSError):
        # No lock file in a read-only state dir: better an alert twice than none. What was
        # recorded before can still be read, so only alerts new since then repeat.
        return _send_alerts_locked(settings, alerts, now, warn)


def _send_alerts_locked(settings: Settings, alerts: list[Alert], now: datetime,
                        warn: Callable[[str], None] | None) -> AlertsOutcome:
    outcome = AlertsOutcome()
    sent = _read_sent(settings)
    due: list[Alert] = []
    for alert in alerts:
        last = _parse_time(sent.get(alert.key))
        if last is not None and _same_day(last, now):
            outcome.held_back.append(alert.key)
        elif alert.key not in (a.key for a in due):
            due.append(alert)
    if due:
        outcome.deliveries = deliver(settings, alert_message(due), warn=warn)
        if any(d["ok"] for d in outcome.deliveries):
            stamp = now.astimezone(UTC).isoformat(timespec="seconds")
            sent.update({a.key: stamp for a in due})
            outcome.sent = [a.key for a in due]
    kept = {k: v for k, v in sent.items() if (t := _parse_time(v)) is not None and now - t < ALERT_MEMORY}
    try:
        ensure_private_dir(settings.state_dir)
        write_atomic(alerts_path(settings), json.dumps(kept, indent=2, sort_keys=True) + "\n")
    except (OSError, FoveaError) as exc:  # a state dir we cannot write never fails the caller
        outcome.error = f"{alerts_path(settings)} not written: {getattr(exc, 'strerror', None) or exc}"
        log.warning("%s", outcome.error)
    if due or outcome.held_back:
            audit.record(settings, "alerts", "sent" if outcome.sent else ("failed" if due else "held_back"), {
            "sent": outcome.sent, "held_back": outcome.held_back, "due": [a.key for a in due],
            "deliveries": [{"url": d["url"], "ok": d["ok"]} for d in outcome.deliveries]}, now=now)
    return outcome


def alert_message(alerts: list[Alert]) -> Message:
    """One alert: its text is the title. Several: a count, then each with what to run next."""
    host = host_name()
    critical = sum(1 for a in alerts if a.severity == "critical")
    if len(alerts) == 1:
        (alert,) = alerts
        title = f"fovea-tui on {host}: {alert.severity.upper()}: {alert.text}"
    else:
        title = f"fovea-tui on {host}: {plural(len(alerts), 'alert')} ({critical} critical)"
    blocks = [f"{a.severity.upper()}: {a.text}\nNext: {a.next_step or 'run `fovea-tui status`'}" for a in alerts]
    body = "\n\n".join(blocks) + f"\n\nHost: {host}. `fovea-tui status` shows everything."
    return Message(title[:200], body, failure=critical > 0)


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
