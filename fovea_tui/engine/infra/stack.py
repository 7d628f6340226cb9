"""The compose project, seen and driven through the Docker SDK.

Containers are found by compose's labels, exactly as `docker compose` finds them, so
fovea-tui needs no compose file and no compose binary. Start order follows the
`com.docker.compose.depends_on` label, falling back to FOVEA.md's order.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
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


class DockerUnavailable(OperationFailed):
    """No Docker engine answers, or this user may not talk to it."""


_NO_DOCKER: str | None = None


def no_docker(reason: str = "this session manages no stack (the demo runs without Docker)") -> None:
    """From now on this process asks no Docker engine: every connection fails with `reason`,
    so the stack reads "not managed" and no container of this host is shown or touched."""
    global _NO_DOCKER
    _NO_DOCKER = reason


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

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def ok(self) -> bool:
        return self.running and self.health in ("", "healthy")

    def as_dict(self) -> dict:
        return {"name": self.name, "container": self.container_name, "state": self.state,
                "health": self.health or None, "image": self.image}


def _depends(labels: dict) -> list[str]:
    raw = labels.get(DEPENDS_LABEL, "")
    return [part.split(":", 1)[0] for part in raw.split(",") if part.strip()]


class Stack:
    """A compose project on this host's Docker engine."""

    def __init__(self, client, project: str) -> None:
        self.client = client
        self.project = project

    @classmethod
    def connect(cls, project: str) -> Stack:
        return cls(connect_docker(), project)

    def _containers(self, all_: bool = True):
        return self.client.containers.list(
            all=all_, filters={"label": [f"{PROJECT_LABEL}={self.project}"]}
        )

    def services(self) -> list[Service]:
        found: dict[str, Service] = {}
        for c in self._containers():
            labels = c.labels or {}
            if labels.get(ONEOFF_LABEL, "False") == "True":
                continue
            name = labels.get(SERVICE_LABEL)
            if not name:
                continue
            attrs = c.attrs.get("State", {})
            svc = Service(
                name=name,
                container_id=c.id,
                container_name=c.name,
                state=attrs.get("Status", c.status),
                health=(attrs.get("Health") or {}).get("Status", ""),
                image=(c.attrs.get("Config") or {}).get("Image", ""),
                depends_on=_depends(labels),
                started_at=attrs.get("StartedAt", ""),
            )
            # With several replicas keep the lowest-numbered one, as `compose exec` does.
            if name not in found or labels.get(NUMBER_LABEL, "1") == "1":
                found[name] = svc
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
        for svc in self.require():
            if svc.name == name:
                return svc
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

    def stop(self, names: Sequence[str], timeout: int = 30) -> None:
        """Stop services in reverse start order (dependents first)."""
        services = {s.name: s for s in self.services()}
        for name in reversed(self.start_order([services[n] for n in names if n in services])):
            self.client.containers.get(services[name].container_id).stop(timeout=timeout)

    def start(self, names: Sequence[str], *, wait: bool = True, timeout: float = 120,
              cancel: CancelToken | None = None) -> None:
        """Start services in dependency order, each healthy before its dependents start."""
        services = {s.name: s for s in self.services()}
        for name in self.start_order([services[n] for n in names if n in services]):
            container = self.client.containers.get(services[name].container_id)
            container.start()
            if wait:
                self.wait_healthy(name, timeout=timeout, cancel=cancel)

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
        svc = self.service(service)
        if not svc.running:
            raise OperationFailed(f"service {service} is not running (state {svc.state})",
                                  hint="start the stack, or the service, and try again")
        return DockerExecProcess(self.client.api, svc.container_id, argv, stdin=stdin, env=env)

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


def _mount_from(m: dict):
    from docker.types import Mount

    return Mount(target=m["Target"], source=m.get("Source"), type=m.get("Type", "volume"),
                 read_only=bool(m.get("ReadOnly")))


def redis_queue_counts(stack: Stack, service: str = "redis", port: str = "",
                       queues: Sequence[str] = ("video-summarization", "claim-extraction", "claim-synthesis")) -> dict:
    """Jobs active and waiting in each BullMQ queue, read with redis-cli inside the service."""
    counts: dict[str, dict[str, int]] = {}
    base = ["redis-cli"] + (["-p", port] if port else [])
    for queue in queues:
        counts[queue] = {}
        for kind in ("active", "wait"):
            code, out, err = stack.exec(service, base + ["LLEN", f"bull:{queue}:{kind}"])
            if code != 0:
                raise OperationFailed(f"redis-cli in service {service} failed: {condense(err or out)}")
            try:
                counts[queue][kind] = int(out.strip() or 0)
            except ValueError:
                raise OperationFailed(f"redis-cli in service {service} answered {out.strip()[:80]!r}") from None
    return counts
