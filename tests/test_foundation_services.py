"""The foundation against real services: database access in both modes, stack discovery
through the Docker SDK, `status`, and the clear one-line errors of issue 2's bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fovea_tui.cli.main import main
from fovea_tui.config import render_toml, settings_from_dict
from fovea_tui.engine.infra.database import DirectDatabase, open_database
from fovea_tui.engine.infra.stack import Stack, redis_queue_counts
from fovea_tui.engine.ops.status import collect_status
from fovea_tui.envfile import DatabaseURL, EnvFile
from fovea_tui.errors import ConfigError, OperationFailed


def write_config(tmp_path, settings) -> str:
    path = tmp_path / "fovea-tui.toml"
    path.write_text(render_toml(settings))
    return str(path)


# --- docker mode ------------------------------------------------------------------


def test_stack_discovery_by_compose_labels(stack):
    s = Stack.connect(stack.project)
    services = {svc.name: svc for svc in s.services()}
    assert {"postgres", "redis", "backend", "frontend", "model-service"} <= set(services)
    assert services["postgres"].container_name == f"{stack.project}-postgres-1"
    assert services["postgres"].health == "healthy"
    order = [svc.name for svc in s.services()]
    # depends_on labels: postgres and redis before backend, backend before frontend
    assert order.index("postgres") < order.index("backend")
    assert order.index("redis") < order.index("backend")
    assert order.index("backend") < order.index("frontend")


def test_docker_mode_database(stack, tmp_path):
    settings = stack.settings(tmp_path)
    db = open_database(settings)
    assert db.ping().startswith("16")
    facts = db.server_facts()
    assert facts.major == 16 and "vector" in facts.extensions and "fovea" in facts.databases
    assert facts.size == int(stack.psql("SELECT pg_database_size('fovea')")) and facts.data_directory
    rows = db.table_rows()
    assert rows["videos"] == int(stack.psql("SELECT count(*) FROM videos"))
    assert rows["annotations"] > 0
    assert db.applied_migrations() == stack.applied_migrations
    assert db.applied_migrations(database="postgres") == []  # no _prisma_migrations there
    proc = db.dump()
    data = b"".join(iter(proc.read, b""))
    assert proc.wait() == 0
    assert b"\n-- PostgreSQL database dump complete\n" in data[-100:]


def test_docker_mode_sql_error_is_one_clear_line(stack, tmp_path):
    db = open_database(stack.settings(tmp_path))
    with pytest.raises(OperationFailed) as info:
        db.psql("SELECT * FROM no_such_table;")
    assert "no_such_table" in str(info.value)
    assert "\n" not in str(info.value)


def test_redis_queue_counts(stack):
    counts = redis_queue_counts(Stack.connect(stack.project), port=str(stack.ports.redis))
    assert set(counts) == {"video-summarization", "claim-extraction", "claim-synthesis"}
    assert sum(q["active"] + q["wait"] for q in counts.values()) > 0


def test_status_json_reports_services_and_database(stack, tmp_path, capsys):
    cfg = write_config(tmp_path, stack.settings(tmp_path))
    # exit 1: a fresh backups dir holds no backup yet, a CRITICAL alert
    assert main(["--config", cfg, "status", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert any(a["level"] == "critical" and a["subject"] == "backups" for a in doc["alerts"])
    for key in ("database", "volume", "env_file", "stack", "drill", "alerts"):
        assert key in doc
    assert doc["database"]["ok"] and doc["database"]["reachable"]
    assert doc["database"]["server_version"].startswith("16")
    assert doc["database"]["tables"] >= 12
    names = {s["name"]: s for s in doc["stack"]["services"]}
    assert names["postgres"]["health"] == "healthy"
    assert doc["volume"]["files"] >= 20
    assert doc["env_file"]["missing"] == []
    assert doc["redis"]["active"] + doc["redis"]["waiting"] > 0
    # no value of the env file reaches the JSON
    out = json.dumps(doc)
    for key, value in EnvFile.load(stack.env_file)._values.items():
        if len(value) >= 8:
            assert value not in out, key


def test_status_with_postgres_down(stack, tmp_path):
    settings = stack.settings(tmp_path)
    stack.container("postgres").stop(timeout=10)
    try:
        report = collect_status(settings)
        assert report.database.ok is False
        assert "postgres is not running" in report.database.error
        assert any(a.subject == "database" and a.level == "critical" for a in report.alerts)
        assert any("postgres" in a.message and a.subject == "stack" for a in report.alerts)
    finally:
        stack.ensure_running()


def test_wrong_project_name(stack, tmp_path, capsys):
    settings = stack.settings(tmp_path, install={"compose_project": "no-such-project"})
    cfg = write_config(tmp_path, settings)
    assert main(["--config", cfg, "status"]) == 1  # the stack is a CRITICAL alert
    out = capsys.readouterr().out
    assert "no containers of compose project 'no-such-project'" in out
    assert "install.compose_project" in out


def test_no_docker_engine(stack, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    report = collect_status(stack.settings(tmp_path))
    assert report.stack.ok is False
    assert "no Docker engine answers" in report.stack.error
    assert "Traceback" not in report.stack.error


# --- direct mode ------------------------------------------------------------------


def direct_settings(tmp_path, db, **extra):
    env = tmp_path / ".env"
    env.write_text(f"DATABASE_URL={db.url}\nSESSION_SECRET=direct-session-secret-xyz\n"
                   "API_KEY_ENCRYPTION_KEY=direct-api-key-encryption-xyz\n")
    data = {"install": {"env_file": str(env)}, "database": {"mode": "direct"},
            "backups": {"dir": str(tmp_path / "backups")}, "volume": {"path": str(tmp_path)}}
    data.update(extra)
    return settings_from_dict(data)


def test_direct_mode_with_special_characters_in_the_password(fresh_direct_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    settings = direct_settings(tmp_path, fresh_direct_db)
    db = open_database(settings)
    assert isinstance(db, DirectDatabase)
    assert db.server_facts().major == 16
    assert db.table_rows()["users"] >= 1
    assert fresh_direct_db.password not in db.describe()


def test_direct_mode_password_never_on_a_command_line(fresh_direct_db, tmp_path, monkeypatch):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    db = open_database(direct_settings(tmp_path, fresh_direct_db))
    proc = db._spawn("psql", ["-At", "-c", "SELECT pg_sleep(1)"])
    try:
        cmdline = open(f"/proc/{proc._proc.pid}/cmdline", "rb").read().decode()
        assert fresh_direct_db.password not in cmdline
        assert "postgresql://" not in cmdline
    finally:
        proc.wait()


def test_direct_mode_wrong_password(fresh_direct_db, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(fresh_direct_db.bin_dir))
    url = DatabaseURL.parse(fresh_direct_db.url)
    bad = f"postgresql://{url.user}:wrong-password-123@{url.host}:{url.port}/{url.database}"
    settings = direct_settings(tmp_path, fresh_direct_db, database={"mode": "direct", "url": bad})
    cfg = write_config(tmp_path, settings)
    assert main(["--config", cfg, "status"]) == 1  # an unreachable database is CRITICAL
    out = capsys.readouterr().out
    assert "password authentication failed" in out
    assert "wrong-password-123" not in out


def test_direct_mode_compose_only_host_is_explained(tmp_path):
    env = tmp_path / ".env"
    env.write_text("DATABASE_URL=postgresql://fovea:pw-secret-1@postgres:5432/fovea\n")
    settings = settings_from_dict({"install": {"env_file": str(env)}, "database": {"mode": "direct"}})
    with pytest.raises(ConfigError, match="resolves only inside the compose network") as info:
        open_database(settings)
    assert info.value.key == "database.url"


def test_cli_never_imports_textual(stack, tmp_path):
    cfg = write_config(tmp_path, stack.settings(tmp_path))
    code = (
        "import sys; from fovea_tui.cli.main import main; rc = main(['--config', sys.argv[1], 'status', '--json']);"
        "sys.stderr.write('TEXTUAL_LOADED' if any(m == 'textual' or m.startswith('textual.') for m in sys.modules) else 'CLEAN');"
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code, cfg], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # no backup yet: a CRITICAL alert
    assert proc.stderr.endswith("CLEAN")
    json.loads(proc.stdout)


def test_direct_mode_database_down_is_one_line(tmp_path, monkeypatch, direct_pg, capsys):
    from support.services import free_port

    monkeypatch.setenv("FOVEA_TUI_PG_BIN", str(direct_pg.bin_dir))
    closed = free_port()
    settings = settings_from_dict({
        "install": {"env_file": str(tmp_path / "none.env")},
        "database": {"mode": "direct", "url": f"postgresql://fovea:pw-xyz-123@127.0.0.1:{closed}/fovea"},
        "backups": {"dir": str(tmp_path / "b")}, "volume": {"path": str(tmp_path)},
    })
    cfg = write_config(tmp_path, settings)
    assert main(["--config", cfg, "status", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["database"]["ok"] is False and doc["database"]["verdict"] == "failing"
    assert "Connection refused" in doc["database"]["error"] or "connect" in doc["database"]["error"]
    assert "pw-xyz-123" not in json.dumps(doc)
