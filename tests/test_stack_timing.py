"""Reading compose's depends_on label and a container's healthcheck timing as Docker does."""

from __future__ import annotations

from fovea_tui.engine.infra.stack import Healthcheck, Service, _conditions, _expected


def test_depends_on_label_as_compose_writes_it():
    labels = {"com.docker.compose.depends_on": "postgres:service_healthy:false,redis:service_healthy:true,"
                                               "init:service_completed_successfully:false, worker"}
    assert _conditions(labels) == {"postgres": "service_healthy", "redis": "service_healthy",
                                   "init": "service_completed_successfully", "worker": "service_started"}
    assert _conditions({}) == {}


def test_healthcheck_fields_left_at_zero_take_dockers_defaults():
    check = Healthcheck.from_config({"Test": ["CMD", "true"], "Interval": 0, "Retries": 0})
    assert check == Healthcheck(interval=30.0, timeout=30.0, retries=3, start_period=0.0, test=("CMD", "true"))
    assert check.argv == ["true"]
    shell = Healthcheck.from_config({"Test": ["CMD-SHELL", "curl -f http://localhost:3001/api/health || exit 1"]})
    assert shell is not None and shell.argv == ["/bin/sh", "-c", "curl -f http://localhost:3001/api/health || exit 1"]
    assert Healthcheck.from_config({"Test": ["NONE"]}) is None
    assert Healthcheck.from_config(None) is None


def test_a_model_service_with_fovea_timing_is_expected_within_3_min():
    """start_period 60 s, interval 30 s, timeout 10 s, 3 retries: Docker decides by 180 s."""
    ns = 1_000_000_000
    check = Healthcheck.from_config({"Test": ["CMD", "true"], "Interval": 30 * ns, "Timeout": 10 * ns,
                                     "Retries": 3, "StartPeriod": 60 * ns})
    assert check is not None and check.verdict_s == 180
    svc = Service("model-service", "id", "name", "running", "starting", "img", healthcheck=check)
    assert _expected(svc, 0) == "healthy expected within 3 min"
    assert _expected(svc, 170) == "healthy expected within 10 s"
    assert _expected(svc, 200) == "Docker's verdict on its health overdue by 20 s"
