"""Configuration: lookup order, defaults, validation that names the key, round trip."""

from __future__ import annotations

import stat

import pytest

from fovea_tui.cli.main import main
from fovea_tui.config import (
    CONFIG_ENV_VAR,
    find_config,
    load_settings,
    render_toml,
    save_settings,
    settings_from_dict,
)
from fovea_tui.errors import ConfigError


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No config anywhere: cwd, XDG and the env var all point into tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)
    return tmp_path


def test_every_contract_key_has_its_default(isolated):
    s = load_settings()
    assert s.source is None
    assert (s.install.compose_project, s.install.env_file) == ("fovea", "/opt/fovea/.env")
    assert (s.database.mode, s.database.service, s.database.name, s.database.user, s.database.url) == (
        "docker", "postgres", "fovea", "fovea", "")
    assert (s.backups.dir, s.backups.offsite) == ("/var/backups/fovea", "")
    r = s.retention
    assert (r.keep_last, r.keep_hourly, r.keep_daily, r.keep_weekly, r.keep_monthly, r.keep_yearly, r.timezone) == (
        0, 0, 14, 8, 0, 0, "")
    v = s.volume
    assert (v.path, v.target, v.delete, v.max_delete_percent) == ("/var/lib/fovea/videos", "", False, 10)
    assert (s.s3.endpoint_url, s.s3.region) == ("", "")
    assert s.stack.migrate_command == ["npx", "prisma", "migrate", "deploy"]
    assert s.stack.health_url == "http://127.0.0.1:3001/api/health"
    assert s.drill.interval_days == 90
    assert (s.notify.webhooks, s.notify.on_success) == ([], False)


def test_lookup_order(isolated, monkeypatch):
    xdg = isolated / "xdg" / "fovea-tui" / "config.toml"
    xdg.parent.mkdir(parents=True)
    xdg.write_text('[backups]\ndir = "/from/xdg"\n')
    assert load_settings().backups.dir == "/from/xdg"
    (isolated / "fovea-tui.toml").write_text('[backups]\ndir = "/from/cwd"\n')
    assert load_settings().backups.dir == "/from/cwd"
    env_file = isolated / "env.toml"
    env_file.write_text('[backups]\ndir = "/from/env"\n')
    monkeypatch.setenv(CONFIG_ENV_VAR, str(env_file))
    assert load_settings().backups.dir == "/from/env"
    explicit = isolated / "explicit.toml"
    explicit.write_text('[backups]\ndir = "/from/flag"\n')
    s = load_settings(explicit)
    assert s.backups.dir == "/from/flag"
    assert s.source == explicit.resolve()


def test_explicit_config_must_exist(isolated, monkeypatch):
    with pytest.raises(ConfigError, match="does not exist"):
        find_config(isolated / "missing.toml")
    monkeypatch.setenv(CONFIG_ENV_VAR, str(isolated / "nope.toml"))
    with pytest.raises(ConfigError, match=r"\$FOVEA_TUI_CONFIG"):
        find_config()


@pytest.mark.parametrize(
    "data, key, text",
    [
        ({"retention": {"keep_daly": 3}}, "retention.keep_daly", "unknown config key retention.keep_daly"),
        ({"retension": {}}, "retension", "unknown config section [retension]"),
        ({"volume": {"delete": "yes"}}, "volume.delete", "must be true or false"),
        ({"retention": {"keep_daily": "14"}}, "retention.keep_daily", "whole number"),
        ({"retention": {"keep_daily": -1}}, "retention.keep_daily", "negative"),
        ({"retention": {"keep_daily": True}}, "retention.keep_daily", "whole number"),
        ({"database": {"mode": "ssh"}}, "database.mode", "expected one of docker, direct"),
        ({"stack": {"migrate_command": "npx prisma"}}, "stack.migrate_command", "list of strs"),
        ({"stack": {"migrate_command": []}}, "stack.migrate_command", "must not be empty"),
        ({"volume": {"max_delete_percent": 150}}, "volume.max_delete_percent", "between 0 and 100"),
        ({"retention": {"timezone": "Mars/Olympus"}}, "retention.timezone", "unknown time zone"),
        ({"notify": {"webhooks": ["ftp://x"]}}, "notify.webhooks", "http"),
        ({"backups": "x"}, "backups", "must be a [backups] table"),
        ({"stack": {"stop_timeout_s": 0}}, "stack.stop_timeout_s", "between 1 and 3600"),
        ({"stack": {"stop_timeout_s": "10s"}}, "stack.stop_timeout_s", "whole number"),
        ({"stack": {"database_clients": "worker"}}, "stack.database_clients", "list of strs"),
        ({"stack": {"database_clients": ["worker", "a b;rm"]}}, "stack.database_clients", "not a compose service name"),
    ],
)
def test_bad_values_name_the_key(data, key, text):
    with pytest.raises(ConfigError) as info:
        settings_from_dict(data)
    assert info.value.key == key
    assert text in str(info.value)


def test_save_round_trips_with_tomli_w_and_is_private(tmp_path):
    s = settings_from_dict({"retention": {"keep_daily": 7, "timezone": "Europe/Berlin"},
                            "notify": {"webhooks": ["https://hooks.example/abc"]}})
    path = save_settings(s, tmp_path / "sub" / "config.toml")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_settings(path)
    assert again == s
    assert render_toml(again) == render_toml(s)


def test_cli_reports_a_bad_key_with_exit_2_and_no_traceback(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[retention]\nkeep_dayly = 3\n")
    code = main(["--config", str(cfg), "status"])
    err = capsys.readouterr().err
    assert code == 2
    assert "retention.keep_dayly" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_cli_reports_invalid_toml(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[retention\n")
    assert main(["--config", str(cfg), "status", "--json"]) == 2
    out, err = capsys.readouterr()
    assert "not valid TOML" in err
    import json

    doc = json.loads(out)
    assert doc["ok"] is False and doc["exit_code"] == 2


def test_unknown_command_and_flag_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["status", "--bogus"])
    assert info.value.code == 2
