"""The compose project, seen and driven through the Docker SDK.

Containers are found by compose's labels, exactly as `docker compose` finds them, so
fovea-tui needs no compose file and no compose binary. Start order follows the
`com.docker.compose.depends_on` label, falling back to FOVEA.md's order; stop and start
behave as compose's do: stops in parallel, each with the container's own grace period, and
a wait for health only where a dependency condition asks for it.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from fovea_tui.engine.infra.streams import DockerExecProcess, condense
from fovea_tui.engine.progress import CancelToken
from fovea_tui.errors import Cancelled, ConfigError, OperationFailed

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"
DEPENDS_LABEL = "com.docker.compose.depends_on"
NUMBER_LABEL = "com.docker.compose.container-number"

# FOVEA.md: "Start order for a restore: postgres, redis, backend, the rest."
PREFERRED_ORDER = ("postgres", "redis", "backend")
# compose's own default grace period between SIGTERM and SIGKILL (`stop_grace_period`).
COMPOSE_STOP_TIMEOUT = 10
# Docker's defaults for a healthcheck field left at 0 (seconds).
DOCKER_HEALTH_DEFAULTS = {"Interval": 30.0, "Timeout": 30.0, "StartPeriod": 0.0}
DOCKER_HEALTH_RETRIES = 3
# A service without a healthcheck counts as up once it has stayed running this long.
SETTLE_S = 3.0
POLL_S = 0.25
# A start looks at the containers this often for its first seconds, when services come up one
# after another in dependency order and every round a service waits costs the application
QUICK_POLL_S, QUICK_FOR_S = 0.1, 10.0
PROBE_EVERY_S = 0.25  # a start runs a starting service's healthcheck itself at most this often

#: Called with one line per service being waited for ("backend: stopping, SIGKILL in 7 s").
WaitCallback = Callable[[list[str]], None]


class DockerUnavailable(OperationFailed):
    """No Docker engine answers, or this user may not talk to it."""


_NO_DOCKER: str | None = None


def no_docker(reason: str = "this session manages no stack (the demo runs without Docker)") -> None:
    """From now on this process asks no Docker engine: every connection fails with `reason`,
    so the stack reads "not managed" and no container of this host is shown or touched."""
    global _NO_DOCKER
    _NO_DOCKER = reason


def import_sdk(project: str | None = None) -> None:
    """Import the docker SDK now, when there is an engine to talk to (and, given `project`,
    when that compose project has a container on it): a restore's runner starts it in a thread
    as it begins, so its tenth of a second of Python runs while the first steps wait on the
    server, not before them (in the CLI before the fork, it was on the way)."""
    socket = _local_socket()
    if _NO_DOCKER is None and (socket is None or os.path.exists(socket)):
        if project is None or project_on_engine(project) is not False:
            import docker  # noqa: F401


def project_on_engine(project: str, timeout: float = 5.0) -> bool | None:
    """Has the local Docker engine any container of compose `project`? One request on its
    socket, without the docker SDK: in direct mode with no compose stack, the SDK's import and
    its three requests were a fifth of a second of every restore's pre-flight, to learn that
    there is nothing to manage. None when this cannot be told here (a TCP or SSH host, no
    socket, an error, a reply not understood): the SDK then asks, and says why in its words."""
    import json
    import socket as sockets
    from urllib.parse import quote

    path = _local_socket()
    if _NO_DOCKER is not None or path is None:
        return None
    query = quote(json.dumps({"label": [f"{PROJECT_LABEL}={project}"]}), safe="")
    request = f"GET /containers/json?all=1&filters={query} HTTP/1.0\r\nHost: docker\r\n\r\n".encode()
    try:
        with sockets.socket(sockets.AF_UNIX, sockets.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(path)
            conn.sendall(request)
            reply = bytearray()
            while chunk := conn.recv(1 << 16):  # HTTP/1.0: the engine closes after its reply
                reply += chunk
        head, _, body = bytes(reply).partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split()
        if len(status) < 2 or status[1] != b"200":
            return None
        containers = json.loads(body)
    except (OSError, ValueError):
        return None
    return bool(containers) if isinstance(containers, list) else None


def connect_docker(timeout: int = 10):
    """A docker client, or one clear error saying why there is none."""
    if _NO_DOCKER is not None:
        raise DockerUnavailable(_NO_DOCKER)
    socket = _local_socket()
    if socket is not None and not os.path.exists(socket):
        raise _no_engine()  # said without importing the docker package (a tenth of a second)
    import docker
    from docker.errors import DockerException

    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
        return client
    except DockerException as exc:
        text = str(exc)
        if "Permission denied" in text or "PermissionError" in text:
            raise DockerUnavailable(
                "no permission on the Docker socket",
                hint="run fovea-tui as root or as a member of the docker group",
            ) from None
        if "FileNotFoundError" in text or "No such file" in text or "Connection refused" in text:
            raise _no_engine() from None
        raise DockerUnavailable(f"cannot talk to the Docker engine: {text.splitlines()[0][:200]}") from None


@dataclass(frozen=True)
class Healthcheck:
    """A container's healthcheck timing, Docker's defaults filled in (seconds)."""

    interval: float
    timeout: float
    retries: int
    start_period: float
    test: tuple[str, ...] = ()   # Docker's Test: ("CMD", argv...) or ("CMD-SHELL", "a command")

    @property
    def argv(self) -> list[str]:
        """The test as a command to exec in the container."""
        if self.test[:1] == ("CMD-SHELL",):
            return ["/bin/sh", "-c", " ".join(self.test[1:])]
        return list(self.test[1:])

    @classmethod
    def from_config(cls, config: dict | None) -> Healthcheck | None:
        config = config or {}
        test = config.get("Test") or []
        if not test or test[0] == "NONE":
            return None
        values = {k: (config.get(k) or 0) / 1e9 or default for k, default in DOCKER_HEALTH_DEFAULTS.items()}
        return cls(interval=values["Interval"], timeout=values["Timeout"],
                   retries=int(config.get("Retries") or DOCKER_HEALTH_RETRIES), start_period=values["StartPeriod"],
                   test=tuple(test))

    @property
    def verdict_s(self) -> float:
        """Seconds after a start by which Docker has said healthy or unhealthy: the start
        period, then `retries` failed probes (each up to its timeout), one interval apart."""
        return max(self.start_period, self.interval) + self.retries * (self.interval + self.timeout)


def _local_socket() -> str | None:
    """The unix socket docker.from_env would connect to, or None for a TCP or SSH host."""
    host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def _no_engine() -> DockerUnavailable:
    return DockerUnavailable("no Docker engine answers on this host",
                             hint="start the engine (systemctl start docker) or set database.mode = \"direct\"")


@dataclass
class Service:
    """One compose service and its (first) container."""

    name: str
    container_id: str
    container_name: str
    state: str              # running, exited, restarting, paused, created, dead
    health: str             # healthy, unhealthy, starting, or "" when no healthcheck
    image: str
    depends_on: list[str] = field(default_factory=list)
    started_at: str = ""
    #: depends_on conditions from compose's label: {service: service_started|service_healthy|...}
    conditions: dict[str, str] = field(default_factory=dict)
    healthcheck: Healthcheck | None = None
    stop_timeout: int | None = None   # the container's StopTimeout (compose's stop_grace_period)
    exit_code: int = 0

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ok(self) -> bool:
        return self.running and self.health in ("", "healthy")

    def as_dict(self) -> dict:
        found = {"name": self.name, "container": self.container_name, "state": self.state,
                 "health": self.health or None, "image": self.image}
        if self.running and self.health == "starting":  # when its healthcheck is due to say
            found["starting"] = _expected(self, _age(self.started_at))
        return found


def _as_services(containers) -> dict[str, Service]:
    """compose's services among these containers (one-off containers left out), by name."""
    found: dict[str, Service] = {}
    for c in containers:
        labels = c.labels or {}
        if labels.get(ONEOFF_LABEL, "False") == "True":
            continue
        name = labels.get(SERVICE_LABEL)
        if not name:
            continue
        attrs = c.attrs.get("State", {})
        config = c.attrs.get("Config") or {}
        conditions = _conditions(labels)
        svc = Service(
            name=name,
            container_id=c.id,
            container_name=c.name,
            state=attrs.get("Status", c.status),
            health=_health(attrs),
            image=config.get("Image", ""),
            depends_on=list(conditions),
            started_at=attrs.get("StartedAt", ""),
            conditions=conditions,
            healthcheck=Healthcheck.from_config(config.get("Healthcheck")),
            stop_timeout=config.get("StopTimeout"),
            exit_code=int(attrs.get("ExitCode") or 0),
        )
        # With several replicas keep the lowest-numbered one, as `compose exec` does.
        if name not in found or labels.get(NUMBER_LABEL, "1") == "1":
            found[name] = svc
    return found


def _conditions(labels: dict) -> dict[str, str]:
    """compose's depends_on label, "svc:condition:restart,...", as {svc: condition}."""
    found: dict[str, str] = {}
    for part in labels.get(DEPENDS_LABEL, "").split(","):
        name, _, rest = part.strip().partition(":")
        if name:
            found[name] = rest.split(":", 1)[0] or "service_started"
    return found


@dataclass
class StartReport:
    """What a start did: services started, and those not (yet) healthy that nobody waits for."""

    started: list[str] = field(default_factory=list)
    #: [{"service", "detail", "expected_s"}]: running, health not yet decided by Docker
    still_starting: list[dict] = field(default_factory=list)
    #: [{"service", "detail"}]: exited, unhealthy, or not started because a dependency failed
    not_up: list[dict] = field(default_factory=list)

    def words(self) -> list[str]:
        return [f"{s['service']} {s['detail']}" for s in self.still_starting + self.not_up]


def _in(seconds: float) -> str:
    """'7 s', '3 min': a countdown's remaining time, rounded up."""
    seconds = max(0, math.ceil(seconds))
    return f"{seconds} s" if seconds < 120 else f"{math.ceil(seconds / 60)} min"


def _when(stamp: str) -> float | None:
    """Docker's nanosecond ISO time ("2026-11-29T23:25:50.835577693Z") as a Unix time."""
    from datetime import UTC, datetime

    if not stamp or stamp.startswith("0001"):
        return None
    try:
        head, _, frac = stamp.rstrip("Z").partition(".")
        offset = ""
        for sign in "+-":
            if sign in frac:
                frac, offset = frac.split(sign, 1)[0], sign + frac.split(sign, 1)[1]
        moment = datetime.fromisoformat(head + offset) if offset else datetime.fromisoformat(head).replace(tzinfo=UTC)
        return moment.timestamp() + float(f"0.{frac or 0}")
    except ValueError:
        return None


def _age(started_at: str) -> float:
    """Seconds since Docker's StartedAt, 0 when unknown."""
    when = _when(started_at)
    return 0.0 if when is None else max(0.0, time.time() - when)


def _health(state: dict) -> str:
    """The health status, "starting" while no probe has run since the container's latest
    start: a stopped container keeps the verdict of its previous run for a moment."""
    health = state.get("Health") or {}
    status = health.get("Status", "")
    if status and status != "starting" and state.get("Running"):
        started = _when(state.get("StartedAt", ""))
        probes = [_when(entry.get("Start", "")) for entry in health.get("Log") or []]
        latest = max((p for p in probes if p is not None), default=None)
        if started is not None and (latest is None or latest < started):
            return "starting"
    return status


class Stack:
    """A compose project on this host's Docker engine."""

    def __init__(self, client, project: str) -> None:
        self.client = client
        self.project = project

    @classmethod
    def connect(cls, project: str) -> Stack:
        return cls(connect_docker(), project)

    def _containers(self, service: str | None = None):
        """The project's containers (or one service's), each inspected by the SDK."""
        labels = [f"{PROJECT_LABEL}={self.project}"] + ([f"{SERVICE_LABEL}={service}"] if service else [])
        return self.client.containers.list(all=True, filters={"label": labels})

    def services(self) -> list[Service]:
        found = _as_services(self._containers())
        return [found[n] for n in self.start_order(found.values())]

    def require(self) -> list[Service]:
        services = self.services()
        if not services:
            raise ConfigError(
                f"no containers of compose project {self.project!r} on this Docker engine",
                key="install.compose_project",
                hint="check install.compose_project (the project's name, as `docker compose ls` shows it)",
            )
        return services

    def service(self, name: str) -> Service:
        """One service, from its own containers only (a restore asks about the database
        service often: not a listing of the whole project each time)."""
        found = _as_services(self._containers(name)).get(name)
        if found is not None:
            return found
        self.require()  # says so when the project has no containers at all
        raise ConfigError(
            f"compose project {self.project!r} has no service {name!r}",
            key="database.service" if name != "backend" else "stack.backend_service",
        )

    @staticmethod
    def start_order(services) -> list[str]:
        """Dependencies first (depends_on labels), then FOVEA.md's order, then by name."""
        by_name = {s.name: s for s in services}
        rank = {n: i for i, n in enumerate(PREFERRED_ORDER)}
        ordered: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in ordered or name not in by_name or name in visiting:
                return
            visiting.add(name)
            for dep in sorted(by_name[name].depends_on, key=lambda n: (rank.get(n, 99), n)):
                visit(dep)
            visiting.discard(name)
            ordered.append(name)

        for name in sorted(by_name, key=lambda n: (rank.get(n, 99), n)):
            visit(name)
        return ordered

    # --- control -------------------------------------------------------------------

    def stop(self, names: Sequence[str], *, default_timeout: int = COMPOSE_STOP_TIMEOUT,
             on_wait: WaitCallback | None = None) -> None:
        """Stop services all at once, as `docker compose stop` does: each gets its own
        StopTimeout (compose's stop_grace_period) or `default_timeout` between SIGTERM and
        SIGKILL, so a service that ignores SIGTERM costs its grace period once, not per service."""
        services = {s.name: s for s in self.services()}
        chosen = [services[n] for n in names if n in services  # running, restarting or paused
                  and services[n].state not in ("exited", "dead", "created")]
        if not chosen:
            return
        grace = {s.name: s.stop_timeout if s.stop_timeout is not None else default_timeout for s in chosen}
        t0 = time.monotonic()

        def stop_one(svc: Service) -> None:
            self.client.containers.get(svc.container_id).stop(timeout=grace[svc.name])

        with ThreadPoolExecutor(max_workers=len(chosen), thread_name_prefix="stop") as pool:
            futures = {s.name: pool.submit(stop_one, s) for s in chosen}
            while not all(f.done() for f in futures.values()):
                if on_wait is not None:
                    elapsed = time.monotonic() - t0
                    on_wait([f"{name}: stopping, SIGKILL in {_in(grace[name] - elapsed)}"
                             for name, f in futures.items() if not f.done()])
                wait(futures.values(), timeout=POLL_S)  # back at once when the last one stopped
            failed = {name: f.exception() for name, f in futures.items() if f.exception() is not None}
        if on_wait is not None:
            on_wait([])
        if failed:
            raise OperationFailed("could not stop " + "; ".join(f"{n}: {e}" for n, e in failed.items()),
                                  hint="see `docker ps -a` and the services' logs")

    def start(self, names: Sequence[str], *, must_run: Sequence[str] | None = None, timeout: float | None = None,
              cancel: CancelToken | None = None, on_wait: WaitCallback | None = None) -> StartReport:
        """Start services as `docker compose up` does: each as soon as its depends_on
        conditions hold (in parallel where nothing depends), waiting for a service's health
        only where a dependent's condition asks for it, or when it is in `must_run`.

        A `must_run` service (all of `names` when None) fails the start only by exiting or by
        Docker declaring it unhealthy; its wait follows its own healthcheck (start period,
        interval, retries), capped by `timeout` when given. Any other service is started and
        reported: still starting, exited, or not started because a dependency failed.
        """
        services = {s.name: s for s in self.services()}
        todo = self.start_order([services[n] for n in names if n in services])
        required = set(todo if must_run is None else [n for n in must_run if n in todo])
        report = StartReport()
        started_at: dict[str, float] = {}
        gave_up: set[str] = set()          # started, but not healthy in the time its healthcheck allows
        blocked: dict[str, str] = {}
        probes = _Probes(self)              # healthchecks run by us, not only every interval by Docker
        t0 = time.monotonic()

        def budget(svc: Service) -> float:
            """How long to wait for a service's health: Docker's verdict decides (unhealthy
            fails the start), this only ends a wait for probes that hang on a slow host."""
            own = svc.healthcheck.verdict_s * 2 + 30 if svc.healthcheck else SETTLE_S
            return own if timeout is None else min(own, timeout)

        def holds(svc: Service, condition: str) -> bool | None:
            """Whether a depends_on condition holds: True, False (it never will), None (not yet)."""
            if svc.name in gave_up or svc.name in blocked:
                return False
            if started_at.get(svc.name) == now:
                return None  # started this round: `current` still shows it stopped
            if condition == "service_completed_successfully":
                return svc.exit_code == 0 if svc.state in ("exited", "dead") else None
            if svc.state in ("exited", "dead") and (svc.name in started_at or svc.name not in todo):
                return False
            if not svc.running:
                return None if svc.name in todo else False  # stopped, and not ours to start
            if condition == "service_healthy" and svc.healthcheck is not None:
                verdict = {"healthy": True, "unhealthy": False}.get(svc.health)
                return True if verdict is None and svc.name in probes.passed else verdict
            return True

        while True:
            if cancel is not None:
                cancel.check()
            now = time.monotonic()
            current = {s.name: s for s in self.services()}
            waits: list[str] = []
            ready: list[Service] = []
            for name in todo:
                svc = current.get(name)
                if name in started_at or name in blocked:
                    continue
                if svc is None:
                    blocked[name] = "not started: its container is gone"
                    continue
                verdicts = {dep: holds(current[dep], cond) for dep, cond in svc.conditions.items() if dep in current}
                failed = [dep for dep, ok in verdicts.items() if ok is False]
                if failed:
                    blocked[name] = f"not started: {failed[0]} is not up ({_state(current[failed[0]])})"
                    if name in required:
                        raise OperationFailed(f"service {name} could not be started: {failed[0]} is not up "
                                              f"({_state(current[failed[0]])})",
                                              hint=f"see `docker logs {current[failed[0]].container_name}`")
                elif any(ok is None for ok in verdicts.values()):
                    awaited = [f"{dep} {'healthy' if svc.conditions[dep] == 'service_healthy' else 'started'}"
                               for dep, ok in verdicts.items() if ok is None]
                    waits.append(f"{name}: waiting for {', '.join(awaited)}")
                else:
                    ready.append(svc)
            self._start_together([svc for svc in ready if not svc.running])
            for svc in ready:
                started_at[svc.name] = now
                report.started.append(svc.name)
            waiting = [n for n in todo if n not in started_at and n not in blocked]
            needed = required | {dep for n in waiting for dep, cond in current[n].conditions.items()
                                 if cond == "service_healthy"}
            pending = False
            for name in started_at:
                svc = current.get(name)
                if svc is None or name not in needed or name in gave_up:
                    continue
                verdict = holds(svc, "service_healthy")
                if verdict is True and (svc.healthcheck is not None or now - started_at[name] >= SETTLE_S):
                    continue
                left = budget(svc) - (now - started_at[name])
                if verdict is False or left <= 0:
                    if name in required:
                        raise _start_failure(svc, None if verdict is False else budget(svc))
                    gave_up.add(name)  # its dependents are blocked on the next round
                    pending = True
                    continue
                pending = True
                probes.ask(svc)
                waits.append(f"{name}: starting, " + _expected(svc, now - started_at[name]))
            if not pending and not waiting:
                break
            if on_wait is not None:
                on_wait(waits)
            time.sleep(QUICK_POLL_S if time.monotonic() - t0 < QUICK_FOR_S else POLL_S)
        if on_wait is not None:
            on_wait([])
        for name, why in blocked.items():
            report.not_up.append({"service": name, "detail": why})
        final = {s.name: s for s in self.services()}
        elapsed = time.monotonic() - t0
        for name in report.started:
            svc = final.get(name)
            if svc is None:
                continue
            if svc.state in ("exited", "dead") and name not in required:
                report.not_up.append({"service": name, "detail": f"exited (code {svc.exit_code}) after starting"})
            elif svc.health == "unhealthy" and name not in required:
                report.not_up.append({"service": name, "detail": "declared unhealthy by Docker"})
            elif svc.health == "starting" and svc.healthcheck is not None and name not in probes.passed:
                age = _age(svc.started_at) if svc.started_at else elapsed
                report.still_starting.append({"service": name,
                                              "expected_s": max(1, math.ceil(svc.healthcheck.verdict_s - age)),
                                              "detail": "still starting: " + _expected(svc, age)})
        return report

    def run_healthcheck(self, svc: Service) -> bool:
        """Run the service's own healthcheck test in it now: does it pass?"""
        if svc.healthcheck is None or not svc.healthcheck.argv:
            return False
        try:
            code, _, _ = self.exec(svc.name, svc.healthcheck.argv)
        except Exception:  # noqa: BLE001 - not running yet, an SDK or socket error: no verdict from
            return False   # this run; Docker's own probes still decide, and only they say unhealthy
        return code == 0

    def _start_together(self, services: list[Service]) -> None:
        """`docker start` for services whose conditions hold, all at once."""
        if not services:
            return
        with ThreadPoolExecutor(max_workers=len(services), thread_name_prefix="start") as pool:
            for future in [pool.submit(lambda s: self.client.containers.get(s.container_id).start(), svc)
                           for svc in services]:
                future.result()

    def wait_healthy(self, name: str, timeout: float = 120, cancel: CancelToken | None = None) -> Service:
        deadline = time.monotonic() + timeout
        last: Service | None = None
        while time.monotonic() < deadline:
            if cancel is not None:
                cancel.check()
            last = self.service(name)
            if last.running and last.health in ("", "healthy"):
                return last
            if last.state in ("exited", "dead"):
                raise OperationFailed(f"service {name} stopped while starting (state {last.state})",
                                      hint=f"see `docker logs {last.container_name}`")
            time.sleep(0.5)
        state = f"{last.state}/{last.health or 'no healthcheck'}" if last else "unknown"
        raise OperationFailed(f"service {name} did not become healthy within {int(timeout)} s (state {state})",
                              hint=f"see `docker logs {last.container_name if last else name}`")

    # --- commands inside services -------------------------------------------------

    def exec_stream(self, service: str, argv: Sequence[str], *, stdin: bool = False,
                    env: dict[str, str] | None = None) -> DockerExecProcess:
        container_id, state = self._container_of(service)
        if state != "running":
            raise OperationFailed(f"service {service} is not running (state {state})",
                                  hint="start the stack, or the service, and try again")
        return DockerExecProcess(self.client.api, container_id, argv, stdin=stdin, env=env)

    def _container_of(self, service: str) -> tuple[str, str]:
        """(container id, state) of a service, as `service()` picks it, from one listing of the
        service's containers without inspecting each: an exec needs no more."""
        listed = self.client.api.containers(
            all=True, filters={"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]})
        mine = [c for c in listed if (c.get("Labels") or {}).get(ONEOFF_LABEL, "False") != "True"]
        if not mine:
            svc = self.service(service)  # raises the words for a missing project or service
            return svc.container_id, svc.state
        first = next((c for c in mine if (c.get("Labels") or {}).get(NUMBER_LABEL, "1") == "1"), mine[-1])
        return first["Id"], first.get("State", "")

    def exec(self, service: str, argv: Sequence[str], *, input: bytes | None = None,
             env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Run a short command in a service; returns (exit code, stdout, stderr)."""
        proc = self.exec_stream(service, argv, stdin=input is not None, env=env)
        if input is not None:
            proc.write(input)
            proc.close_stdin()
        out = bytearray()
        for chunk in iter(proc.read, b""):
            out += chunk
        code = proc.wait()
        return code, out.decode("utf-8", "replace"), proc.stderr_text

    def run_one_off(self, service: str, command: Sequence[str], *, cancel: CancelToken | None = None,
                    on_output=None, timeout: float = 600) -> tuple[int, str]:
        """`docker compose run --rm SERVICE COMMAND` through the SDK.

        A new container from the service's image, with its environment, mounts, network and
        working dir, compose's one-off labels; its output streamed to `on_output(line)`;
        removed afterwards whatever happens.
        """
        svc = self.service(service)
        template = self.client.containers.get(svc.container_id).attrs
        config, host = template.get("Config", {}), template.get("HostConfig", {})
        labels = {k: v for k, v in (config.get("Labels") or {}).items() if k.startswith("com.docker.compose.")}
        labels[ONEOFF_LABEL] = "True"
        name = f"{self.project}-{service}-run-{int(time.time() * 1000) % 10**10}"
        container = self._create_one_off(config, host, labels, name, command)
        lines: list[str] = []
        try:
            container.start()
            buffer = b""
            deadline = time.monotonic() + timeout
            for chunk in container.logs(stream=True, follow=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    text = line.decode("utf-8", "replace")
                    lines.append(text)
                    if on_output:
                        on_output(text)
                if cancel is not None and cancel.cancelled:
                    container.kill()
                    raise Cancelled(cancel.reason)
                if time.monotonic() > deadline:
                    container.kill()
                    raise OperationFailed(f"{' '.join(command)} did not finish within {int(timeout)} s")
            if buffer:
                lines.append(buffer.decode("utf-8", "replace"))
                if on_output:
                    on_output(lines[-1])
            result = container.wait(timeout=60)
            return int(result.get("StatusCode", 1)), "\n".join(lines)
        finally:
            try:
                container.remove(force=True)
            except Exception:  # noqa: BLE001 - already gone is fine; nothing to report
                pass

    def _create_one_off(self, config: dict, host: dict, labels: dict, name: str, command: Sequence[str]):
        """Create the one-off container through the low-level API, copying the host config."""
        api = self.client.api
        host_config = api.create_host_config(
            binds=host.get("Binds") or None,
            mounts=[_mount_from(m) for m in (host.get("Mounts") or [])] or None,
            tmpfs=host.get("Tmpfs") or None,
            network_mode=host.get("NetworkMode") or None,
            extra_hosts=host.get("ExtraHosts") or None,
        )
        created = api.create_container(
            image=config.get("Image"),
            command=list(command),
            entrypoint=[],
            environment=config.get("Env") or [],
            working_dir=config.get("WorkingDir") or None,
            user=config.get("User") or "",
            labels=labels,
            name=name,
            host_config=host_config,
            networking_config=None,
        )
        container = self.client.containers.get(created["Id"])
        # On a compose bridge network the service name must resolve: join it with aliases.
        network_mode = host.get("NetworkMode") or ""
        if network_mode and network_mode not in ("host", "none", "bridge", "default") and not network_mode.startswith("container:"):
            try:
                self.client.networks.get(network_mode).connect(container, aliases=[name])
            except Exception as exc:  # noqa: BLE001
                container.remove(force=True)
                raise OperationFailed(f"cannot join network {network_mode}: {exc}") from None
        return container

    # --- live updates ---------------------------------------------------------------

    def events(self, cancel: CancelToken) -> Iterator[dict]:
        """Container events of this project (start, die, health_status...) until cancelled."""
        stream = self.client.events(decode=True, filters={"label": [f"{PROJECT_LABEL}={self.project}"], "type": "container"})
        try:
            for event in stream:
                if cancel.cancelled:
                    break
                yield event
        finally:
            stream.close()


class _Probes:
    """A start's own runs of healthchecks. Docker runs a service's test once per interval
    (Fovea's backend: every 30 s), so a service healthy a second after its start waits half a
    minute for Docker to say so, and the application with it. The start runs the same test
    itself, in a thread, one run at a time, each PROBE_EVERY_S or more after the one before
    began; a pass counts as healthy. Only Docker declares a service unhealthy: a failed run
    here decides nothing."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.passed: set[str] = set()
        self._last: dict[str, float] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()

    def ask(self, svc: Service) -> None:
        with self._lock:
            if (svc.name in self.passed or svc.name in self._running or svc.healthcheck is None
                    or time.monotonic() - self._last.get(svc.name, float("-inf")) < PROBE_EVERY_S):
                return
            self._running.add(svc.name)
            self._last[svc.name] = time.monotonic()
        # a daemon: a test that hangs must not keep the runner from ending
        threading.Thread(target=self._run, args=(svc,), daemon=True, name=f"probe-{svc.name}").start()

    def _run(self, svc: Service) -> None:
        ok = self.stack.run_healthcheck(svc)
        with self._lock:
            self._running.discard(svc.name)
            if ok:
                self.passed.add(svc.name)


def _expected(svc: Service, age: float) -> str:
    """When a starting service's health is due, from its own healthcheck timing."""
    if svc.healthcheck is None:
        return f"up expected within {_in(SETTLE_S - age)}"
    left = svc.healthcheck.verdict_s - age
    if left > 0:
        return f"healthy expected within {_in(left)}"
    return f"Docker's verdict on its health overdue by {_in(-left)}"


def _state(svc: Service) -> str:
    if svc.state in ("exited", "dead"):
        return f"exited with code {svc.exit_code}"
    return svc.health or svc.state


def _start_failure(svc: Service, waited: float | None) -> OperationFailed:
    """Why a service the restore needs is not up: it exited, Docker declared it unhealthy,
    or its healthcheck gave no verdict within the time its own timing allows."""
    if svc.state in ("exited", "dead"):
        why = f"exited with code {svc.exit_code} after starting"
    elif svc.health == "unhealthy":
        why = "was declared unhealthy by Docker (its healthcheck failed)"
    else:
        why = f"did not become healthy within {_in(waited or 0)} (state {svc.state}/{svc.health or 'no healthcheck'})"
    return OperationFailed(f"service {svc.name} {why}", hint=f"see `docker logs {svc.container_name}`")


def _mount_from(m: dict):
    from docker.types import Mount

    return Mount(target=m["Target"], source=m.get("Source"), type=m.get("Type", "volume"),
                 read_only=bool(m.get("ReadOnly")))


def redis_queue_counts(stack: Stack, service: str = "redis", port: str = "",
                       queues: Sequence[str] = ("video-summarization", "claim-extraction", "claim-synthesis")) -> dict:
    """Jobs active and waiting in each BullMQ queue, read with redis-cli inside the service: one
    exec (a Lua LLEN of every list), or one per list where the server refuses scripts."""
    base = ["redis-cli"] + (["-p", port] if port else [])
    keys = [f"bull:{queue}:{kind}" for queue in queues for kind in ("active", "wait")]
    code, out, err = stack.exec(service, base + ["EVAL", _LLEN_ALL, str(len(keys)), *keys])
    answers = out.split()
    if code != 0 or len(answers) != len(keys) or not all(a.isdigit() for a in answers):
        answers = []
        for key in keys:
            code, out, err = stack.exec(service, base + ["LLEN", key])
            if code != 0:
                raise OperationFailed(f"redis-cli in service {service} failed: {condense(err or out)}")
            answers.append(out.strip() or "0")
    counts: dict[str, dict[str, int]] = {queue: {} for queue in queues}
    for key, answer in zip(keys, answers, strict=True):
        queue, kind = key.removeprefix("bull:").rsplit(":", 1)
        try:
            counts[queue][kind] = int(answer)
        except ValueError:
            raise OperationFailed(f"redis-cli in service {service} answered {answer[:80]!r}") from None
    return counts


_LLEN_ALL = "local n = {} for i, key in ipairs(KEYS) do n[i] = redis.call('LLEN', key) end return n"
