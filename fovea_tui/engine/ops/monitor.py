"""The dead-man's switch: a ping when a run starts, and one when it ends, ok or not.

A run that never happens sends nothing, and the monitoring service (Healthchecks, Uptime
Kuma, Cronitor...) reports that itself: the alert a dead host cannot send.

Which URL: `monitor.ping_url` for `run-nightly`; `monitor.backup_url`, `sync_url` and
`drill_url` for those jobs, alone or as steps of the nightly run; a job without its own
URL run alone (`fovea-tui backup` from an operator's own cron) uses `ping_url`.

The calls (Healthchecks' protocol, which most services take):
- `<url>/start` when the run begins, a short plain-text body;
- `<url>` on success, `<url>/fail` on failure, the body saying what ran, its figures, and the
  failure's reason; on Healthchecks (`hc-ping.com` or a self-hosted `/ping/...` URL)
  `<url>/<exit code>` replaces `/fail`, so the check's log shows the code, and both calls
  of a run carry one `?rid=` so overlapping runs are timed apart.
- Uptime Kuma push URLs (`.../api/push/<token>`) take no start call and no body: the end of
  the run is one GET with `status=up|down` and `msg=`.
- Cronitor (`cronitor.link/p/<key>/<monitor>`) takes GETs with `state=run|complete|fail`,
  `message=`, `series=` (the run id) and `status_code=`.

A ping is best effort: `PING_BUDGET_S` seconds at most, retries included, and never an
exception. Its outcome goes into the run's JSON and the audit log, its URL only masked.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fovea_tui import __version__
from fovea_tui.config import Settings
from fovea_tui.engine.infra import audit
from fovea_tui.engine.ops.notify import Delivery, host_name, http_call, scrub, warn_stderr
from fovea_tui.formatting import plural

JOBS = ("nightly", "backup", "sync", "drill")
PING_TIMEOUT_S = 2.0
PING_BUDGET_S = 4.0
BODY_LIMIT = 10_000           # a short body: monitoring services keep only the start of a long one


def url_for(settings: Settings, job: str, *, fallback: bool = True) -> str:
    """The URL a job pings: its own, else (with `fallback`) `ping_url`."""
    if job == "nightly":
        return settings.monitor.ping_url
    own = getattr(settings.monitor, f"{job}_url")
    return own or (settings.monitor.ping_url if fallback else "")


def flavour(url: str) -> str:
    """healthchecks | uptime-kuma | cronitor | generic: which calls the service behind `url` takes."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if "/api/push/" in parts.path:
        return "uptime-kuma"
    if host == "cronitor.link" or host.endswith(".cronitor.link"):
        return "cronitor"
    if host == "hc-ping.com" or parts.path.startswith("/ping/"):
        return "healthchecks"
    return "generic"


def _with_suffix(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + suffix))


def _with_query(url: str, extra: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = {k: v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in extra}
    return urlunsplit(parts._replace(query=urlencode({**query, **extra})))


@dataclass
class Ping:
    job: str
    event: str                 # start | success | fail | exit
    delivery: Delivery
    exit_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"job": self.job, "event": self.event, "exit_code": self.exit_code, **self.delivery.as_dict()}


@dataclass(frozen=True)
class Call:
    """One HTTP request to a monitoring service: GET when `body` is None."""

    url: str
    body: bytes | None
    event: str


def plan_call(url: str, event: str, text: str, *, exit_code: int | None = None, run_id: str = "") -> Call | None:
    """The request that tells the service behind `url` about `event` (start | success | fail);
    None when that service takes no call for it. `run_id` pairs a start with its end (a
    Healthchecks `rid`, a Cronitor `series`), so two runs that overlap on one check (a drill
    during the nightly run, both on `ping_url`) are timed apart."""
    kind = flavour(url)
    first_line = text.splitlines()[0] if text else event
    if kind == "uptime-kuma":
        if event == "start":
            return None
        return Call(_with_query(url, {"status": "up" if event == "success" else "down", "msg": first_line[:200],
                                      "ping": ""}), None, event)
    if kind == "cronitor":
        state = {"start": "run", "success": "complete"}.get(event, "fail")
        extra = {"state": state, "message": text[:2000], "host": host_name()}
        if run_id:
            extra["series"] = run_id
        if exit_code is not None and event != "start":
            extra["status_code"] = str(exit_code)
        return Call(_with_query(url, extra), None, event)
    if run_id and kind == "healthchecks":
        url = _with_query(url, {"rid": run_id})
    body = text.encode("utf-8")
    if event == "start":
        return Call(_with_suffix(url, "start"), body, event)
    if event == "success":
        return Call(url, body, event)
    if kind == "healthchecks" and exit_code is not None and 0 < exit_code < 256:
        return Call(_with_suffix(url, str(exit_code)), body, "exit")
    return Call(_with_suffix(url, "fail"), body, "fail")


def ping(url: str, job: str, event: str, body: str, *, exit_code: int | None = None, run_id: str = "",
         timeout: float = PING_TIMEOUT_S, budget: float = PING_BUDGET_S) -> Ping | None:
    """One call to the monitoring service, best effort; None when it takes no call for `event`."""
    call = plan_call(url, event, scrub(body)[:BODY_LIMIT], exit_code=exit_code, run_id=run_id)
    if call is None:
        return None
    delivery = http_call(call.url, call.body, content_type="text/plain; charset=utf-8", channel="ping",
                         timeout=timeout, budget=budget, backoff_initial=0.3, backoff_max=1.0)
    return Ping(job, call.event, delivery, exit_code)


@dataclass
class Watch:
    """One job's pings: `start()` when it begins, `finish()` when it ends. Without a URL
    both do nothing, so callers need no test of their own."""

    settings: Settings
    job: str
    url: str = ""
    pings: list[Ping] = field(default_factory=list)
    finished: bool = False
    run_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @classmethod
    def for_job(cls, settings: Settings, job: str, *, fallback: bool = True) -> Watch:
        return cls(settings, job, url_for(settings, job, fallback=fallback))

    def start(self, detail: str = "") -> None:
        if self.url:
            body = f"fovea-tui {self.job} started on {host_name()} (fovea-tui {__version__})"
            self._add(ping(self.url, self.job, "start", body + (f"\n{detail}" if detail else ""), run_id=self.run_id))

    def finish(self, exit_code: int, summary: str) -> None:
        """Ping success (exit code 0) or failure, once; the outcome is audited."""
        if self.finished or not self.url:
            self.finished = True
            return
        self.finished = True
        head = "OK" if exit_code == 0 else f"FAILED (exit code {exit_code})"
        body = f"fovea-tui {self.job} on {host_name()}: {head}\n{summary}".rstrip()
        self._add(ping(self.url, self.job, "success" if exit_code == 0 else "fail", body, exit_code=exit_code,
                       run_id=self.run_id))
        audit.record(self.settings, "monitor", "ok" if all(p.delivery.ok for p in self.pings) else "failed", {
            "job": self.job, "exit_code": exit_code,
            "pings": [{"event": p.event, "url": p.delivery.url, "ok": p.delivery.ok, "status": p.delivery.status,
                       "error": p.delivery.error} for p in self.pings]})

    def _add(self, result: Ping | None) -> None:
        if result is None:
            return
        self.pings.append(result)
        if not result.delivery.ok:
            warn_stderr(f"monitor ping {result.event} to {result.delivery.url} failed after "
                         f"{plural(result.delivery.attempts, 'attempt')}: {result.delivery.error}")

    def as_list(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.pings]

    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """An exception that escapes the job is its failure: pinged with its exit code."""
        if exc is not None:
            self.finish(getattr(exc, "exit_code", 1), scrub(str(exc)) or exc_type.__name__)
        elif not self.finished:
            self.finish(0, "")


def send_test_pings(settings: Settings) -> list[dict[str, Any]]:
    """`notify test`: one success ping to every distinct configured URL (a start alone
    would leave Healthchecks waiting for an end, then report the check down)."""
    seen: set[str] = set()
    results = []
    for job in JOBS:
        url = url_for(settings, job, fallback=False)
        if url and url not in seen:
            seen.add(url)
            p = ping(url, job, "success", f"fovea-tui notify test from {host_name()}: a test, no run happened")
            if p is not None:
                results.append(p.as_dict())
    return results
