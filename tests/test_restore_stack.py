"""Docker mode at compose's speed, on the compose-labelled test stack: the stop in parallel
(a SIGTERM-deaf service costs its grace period once), the start in depends_on order waiting
for health only where a condition asks for it, and a slow service never rolling back a
good restore while a crashing backend does."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from docker.types import Mount
from support.teststack import DEAF_TO_SIGTERM, healthcheck, slow_service
from test_restore import fixture_dump, marker_present, mutate, place_dump, run_cli, running  # noqa: F401

from fovea_tui.config import save_settings
from fovea_tui.engine.infra.stack import Stack

pytestmark = pytest.mark.docker

SERVICES = ["redis", "backend", "frontend", "model-service"]


@pytest.fixture
def restore_setup(stack, fixture_dump, tmp_path):  # noqa: F811
    settings = stack.settings(tmp_path)
    dump = place_dump(fixture_dump, settings)
    return settings, save_settings(settings, tmp_path / "fovea-tui.toml"), dump


class Events:
    """The stack's container events as they happen (start, healthy), read by a thread:
    Docker replays only its last 256 events, too few with healthchecks every half second."""

    def __init__(self, stack) -> None:
        self.found: list[tuple[float, str, str]] = []
        self.stream = stack.client.events(decode=True, filters={
            "label": f"com.docker.compose.project={stack.project}", "type": "container"})
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        commands: dict[str, str] = {}  # exec id -> its command line
        try:
            for e in self.stream:
                what = e.get("status") or e.get("Action", "")
                attributes = e["Actor"]["Attributes"]
                service, at = attributes.get("com.docker.compose.service", ""), e["timeNano"] / 1e9
                if what in ("start", "die", "health_status: healthy"):
                    self.found.append((at, service, "healthy" if what.startswith("health") else what))
                elif what.startswith("exec_create: "):
                    commands[attributes.get("execID", "")] = what.removeprefix("exec_create: ")
                elif what == "exec_die" and attributes.get("exitCode") == "0":
                    # a healthcheck test that passed, run by Docker or by the start itself
                    self.found.append((at, service, "passed: " + commands.get(attributes.get("execID", ""), "")))
        except Exception:  # noqa: BLE001 - the stream closed under the reader: the test is done with it
            return

    def close(self, until: tuple[str, str] | None = None, timeout: float = 30) -> list[tuple[float, str, str]]:
        """The events seen; with `until` (service, what), once that one has come too."""
        deadline = time.monotonic() + timeout
        while until and not any((s, w) == until for _, s, w in self.found) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1)  # the last events reach the reader
        self.stream.close()
        return sorted(self.found)


def first(found, service: str, what: str) -> float:
    return next(t for t, s, w in found if s == service and w == what)


def test_stop_is_parallel_and_each_service_gets_its_own_grace(stack):
    """Two services deaf to SIGTERM (a Node PID 1): one with stop_grace_period 4 s, one with
    none (the configured default, 3 s here). The stop takes the longest grace once, not their
    sum; every service is stopped; the countdown names each service and its SIGKILL."""
    deaf_model = dict(command=DEAF_TO_SIGTERM, healthcheck=None, stop_timeout=None)
    with stack.changed("frontend", stop_timeout=4), stack.changed("model-service", **deaf_model):
        seen: list[list[str]] = []
        t0 = time.monotonic()
        Stack(stack.client, stack.project).stop(SERVICES, default_timeout=3, on_wait=seen.append)
        took = time.monotonic() - t0
        assert not any(running(stack, s) for s in SERVICES)
    assert 3.8 <= took < 6.5, took  # in turn it would be 4 + 3 s and more
    shown = [line for lines in seen for line in lines]
    assert "frontend: stopping, SIGKILL in 4 s" in shown
    assert "model-service: stopping, SIGKILL in 3 s" in shown
    assert any(line.startswith("frontend: stopping, SIGKILL in 1 s") for line in shown)
    assert seen[-1] == []  # the countdown is cleared at the end
    assert running(stack, "postgres")


def test_start_follows_the_depends_on_conditions(stack):
    """backend (postgres and redis `service_healthy`) starts only once redis is healthy (its
    healthcheck test passed: run by Docker, or by the start, which does not wait for Docker's
    next probe); the
    frontend (backend `service_started`) right after the backend, before it is healthy; the
    model service, which depends on nothing, at once; the call returns with the backend
    (the database client) answering and says what it waited for."""
    engine_stack = Stack(stack.client, stack.project)
    engine_stack.stop(SERVICES)
    seen: list[list[str]] = []
    watch = Events(stack)
    report = engine_stack.start(SERVICES, must_run=["backend"], on_wait=seen.append)
    assert stack.health()[0] == 200  # its own healthcheck passed: the backend answers
    found = watch.close(until=("backend", "healthy"))
    redis_started = first(found, "redis", "start")
    redis_answered = next(t for t, s, w in found if s == "redis" and t > redis_started
                          and w.startswith("passed: ") and "redis-cli" in w and w.endswith(" ping"))
    assert first(found, "backend", "start") > redis_answered  # its healthcheck test passed first
    # the model service waits for nobody: started with redis, before the backend
    assert abs(first(found, "model-service", "start") - first(found, "redis", "start")) < 1.0
    assert first(found, "model-service", "start") < first(found, "backend", "start")
    assert first(found, "backend", "start") <= first(found, "frontend", "start") < first(found, "backend", "healthy")
    assert stack.health_status("backend") == "healthy"
    assert sorted(report.started) == sorted(SERVICES) and report.not_up == []
    shown = {line for lines in seen for line in lines}
    assert "backend: waiting for redis healthy" in shown
    assert any(line.startswith("backend: starting, healthy expected within") for line in shown)
    assert not any(line.startswith("frontend: starting") for line in shown)  # its health is nobody's condition


def test_a_database_client_that_never_comes_up_is_not_waited_for_forever(stack):
    """The frontend depends on a backend that exits at once: the start fails naming the
    backend and its exit code (the database client), and does not start the frontend."""
    crash = ["/bin/sh", "-c", "exit 3"]
    with stack.changed("backend", command=crash):
        engine_stack = Stack(stack.client, stack.project)
        engine_stack.stop(["backend", "frontend"])
        from fovea_tui.errors import OperationFailed

        with pytest.raises(OperationFailed, match="service backend exited with code 3"):
            engine_stack.start(["backend", "frontend"], must_run=["backend"])
        assert not running(stack, "frontend")


@pytest.mark.timeout(300)
def test_a_backend_up_in_a_second_is_not_waited_for_until_dockers_next_probe(stack, restore_setup):
    """Fovea's compose file probes the backend every 30 s (start period 40 s): Docker says
    "healthy" half a minute after a start, however soon the backend answers. The start runs
    the backend's own healthcheck test itself, so the restore is back as soon as the backend
    answers, while Docker still says "starting", and the backend is not reported as still starting."""
    settings, config, dump = restore_setup
    spec = stack._specs["backend"]["healthcheck"]
    fovea_timing = healthcheck(spec["test"], interval=30, retries=3, start_period=40, timeout=10)
    with stack.changed("backend", healthcheck=fovea_timing):
        stack.wait_healthy(["backend"], timeout=120)  # as an install running before the restore
        proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
        assert proc.returncode == 0, proc.stderr + proc.stdout
        backend_health = stack.health_status("backend")
        assert stack.health()[0] == 200
    result = json.loads(proc.stdout)
    start = next(s for s in result["steps"] if s["name"] == "start")
    assert start["status"] == "ok" and start["duration_s"] < 25, start
    assert backend_health == "starting"  # Docker has not probed it yet: the start's own run decided
    assert result["status"] == "ok" and result["services_not_up"] == []
    assert [s["service"] for s in result["still_starting"]] == ["model-service"]  # the slow one, as ever
    verify = next(s for s in result["steps"] if s["name"] == "verify")
    assert verify["status"] == "ok"


@pytest.mark.timeout(300)
def test_a_slow_model_service_never_rolls_back_a_good_restore(stack, restore_setup):
    """The model service turns healthy only after 400 s (longer than the old fixed 180 s
    wait), with Fovea's healthcheck timing (start period, 30 s interval). The restore
    completes without waiting for it, says it is still starting and when it is expected."""
    settings, config, dump = restore_setup
    command, test = slow_service(400)
    slow = dict(command=command, healthcheck=healthcheck(test, interval=30, retries=3, start_period=60, timeout=10))
    mutate(stack)
    with stack.changed("model-service", **slow):
        t0 = time.monotonic()
        proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
        took = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr + proc.stdout
        result = json.loads(proc.stdout)
        assert running(stack, "model-service") and stack.health_status("model-service") == "starting"
        status = json.loads(run_cli(["--config", str(config), "status", "--json"]).stdout)
        model = next(s for s in status["stack"]["services"] if s["name"] == "model-service")
        assert model["starting"].startswith("healthy expected within")  # the dashboard's stack table
        assert "model-service still starting: healthy expected within" in status["stack"]["reason"]
    assert took < 120, took
    assert result["status"] == "ok" and not result.get("rollback")
    assert not marker_present(stack)
    [slow_one] = result["still_starting"]
    assert slow_one["service"] == "model-service" and 0 < slow_one["expected_s"] <= 180
    assert slow_one["detail"].startswith("still starting: healthy expected within")
    assert "model-service still starting: healthy expected within" in result["message"]
    start = next(s for s in result["steps"] if s["name"] == "start")
    assert start["status"] == "ok" and "model-service still starting" in start["detail"]
    assert "model-service still starting" in proc.stderr  # the CLI's step lines say it too


@pytest.mark.timeout(300)
def test_a_backend_that_crashes_after_the_restore_rolls_it_back(stack, restore_setup, tmp_path):
    """The backend runs normally, then crashes once when the restore starts it again: the
    start step fails naming it, the restore is rolled back to the safety dump, and the
    backend runs again afterwards."""
    settings, config, dump = restore_setup
    flags = tmp_path / "flags"
    flags.mkdir()
    mounts = [*stack._specs["backend"]["extra_mounts"], Mount(target="/flags", source=str(flags), type="bind")]
    once = ["/bin/sh", "-c", "if [ -e /flags/crash ]; then rm /flags/crash; sleep 1; exit 3; fi; "
                             "exec /usr/bin/python3 /app/backend.py"]
    with stack.changed("backend", command=once, extra_mounts=mounts):
        stack.wait_healthy(["backend"])
        (flags / "crash").touch()
        mutate(stack)
        proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
        assert proc.returncode == 1, proc.stderr + proc.stdout
        result = json.loads(proc.stdout)
        assert result["status"] == "rolled_back", result["message"]
        start = next(s for s in result["steps"] if s["name"] == "start")
        assert start["status"] == "failed" and "service backend exited with code 3" in start["detail"]
        assert marker_present(stack)  # the database as it was before the restore
        assert running(stack, "backend")


@pytest.mark.timeout(300)
def test_services_that_do_not_use_the_database_stop_beside_the_restore(stack, restore_setup):
    """A frontend deaf to SIGTERM with a 20 s stop_grace_period (a Node PID 1): the stop step
    ends once the backend (the database client) has stopped, the restore goes on while the
    frontend's grace runs, and the start waits for that stop to end before starting it again,
    so it runs at the end, started after it died."""
    settings, config, dump = restore_setup
    mutate(stack)
    with stack.changed("frontend", stop_timeout=20):
        watch = Events(stack)
        proc = run_cli(["--config", str(config), "restore", dump.name, "--yes", "--json"])
        found = watch.close()
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert running(stack, "frontend") and running(stack, "backend")
    result = json.loads(proc.stdout)
    steps = {s["name"]: s for s in result["steps"]}
    assert steps["stop"]["duration_s"] < 12, steps["stop"]  # not the frontend's 20 s
    assert "frontend" in steps["stop"]["detail"] and "stopping in the background" in steps["stop"]["detail"]
    died = first(found, "frontend", "die")
    assert first(found, "backend", "die") < died
    assert any(s == "frontend" and w == "start" and t > died for t, s, w in found)  # started again after its stop
    assert result["status"] == "ok" and not marker_present(stack)


@pytest.mark.timeout(300)
def test_runner_killed_while_a_service_stops_in_the_background_then_resumed(stack, restore_setup):
    """kill -9 of the runner while the deaf frontend is still in its grace period (the restore
    step held): the resumed runner finds it running or stopped, makes sure it stopped, and
    starts it again with the rest; nothing is left stopped, nothing left half-way."""
    from support.hold import start_held_restore

    from fovea_tui.engine.infra import jobs

    settings, config, dump = restore_setup
    mutate(stack)
    with stack.changed("frontend", stop_timeout=20):
        job_id = start_held_restore(settings, dump.name, "restore", 60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            data = jobs.load_job(settings, job_id)
            if next(r for r in data["steps"] if r["name"] == "restore")["status"] == "running":
                break
            assert data["status"] not in jobs.FINAL, data.get("message")
            time.sleep(0.1)
        assert running(stack, "frontend") and not running(stack, "backend")  # still in its grace period
        os.kill(data["pid"], signal.SIGKILL)
        while jobs.is_alive(jobs.jobs_dir(settings), job_id):
            time.sleep(0.05)
        watch = Events(stack)
        proc = run_cli(["--config", str(config), "restore", "--resume", job_id, "--yes", "--json"])
        found = watch.close()
        assert proc.returncode == 0, proc.stderr + proc.stdout
        assert running(stack, "frontend") and running(stack, "backend")
    result = json.loads(proc.stdout)
    assert result["status"] == "ok" and not marker_present(stack)
    assert any(s == "frontend" and w == "start" for _, s, w in found)  # started by the resumed runner
