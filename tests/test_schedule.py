"""`fovea-tui schedule`: units checked by systemd-analyze, cron lines parsed and executed,
all in temp dirs ($FOVEA_TUI_SYSTEMD_DIR / $FOVEA_TUI_CRON_DIR): never the real system."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fovea_tui.cli.main import main
from fovea_tui.config import render_toml, settings_from_dict
from fovea_tui.engine.ops import schedule
from fovea_tui.engine.ops.nightly import NightlyResult, StepResult, record
from fovea_tui.engine.ops.schedule import CRON_FILE_NAME, SERVICE_NAME, TIMER_NAME

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def config(tmp_path):
    """A config (in a directory with a space in its name) whose nightly run fails fast and
    for real: the database port is closed, no volume target."""
    home = tmp_path / "my config"
    home.mkdir()
    settings = settings_from_dict({
        "database": {"mode": "direct", "url": "postgresql://fovea:pw-9931@127.0.0.1:1/fovea"},
        "backups": {"dir": str(tmp_path / "backups")},
        "install": {"env_file": str(tmp_path / "missing.env")},
    })
    path = home / "fovea-tui.toml"
    path.write_text(render_toml(settings))
    return path


def cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def exec_start(service_text: str) -> list[str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str
    parser.read_string(service_text)
    return shlex.split(parser["Service"]["ExecStart"])


def run_like_a_scheduler(argv: list[str], tmp_path: Path, shell: bool = False) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    if shell:  # cron hands the command to /bin/sh
        return subprocess.run(["/bin/sh", "-c", argv[0]], cwd="/", env=env, capture_output=True, text=True,
                              timeout=120)
    return subprocess.run(argv, cwd="/", env=env, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- systemd ----------------

def test_install_systemd_units_verify_and_run_the_nightly_command(schedule_dirs, config, tmp_path, capsys):
    sd, cron = schedule_dirs
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "install", "--at", "03:15")
    assert code == 0, out
    service, timer = (sd / SERVICE_NAME).read_text(), (sd / TIMER_NAME).read_text()
    assert not cron.exists() or not any(cron.iterdir())
    assert "OnCalendar=*-*-* 03:15:00" in timer
    assert "Persistent=true" in timer and "RandomizedDelaySec=" in timer
    assert "Type=oneshot" in service
    for hardening in ("NoNewPrivileges=true", "ProtectSystem=full", "PrivateTmp=true"):
        assert hardening in service
    # nothing that would cut off the docker socket or the backups directory
    assert "PrivateNetwork" not in service and "ProtectSystem=strict" not in service
    assert "AF_UNIX" in service

    argv = exec_start(service)
    assert Path(argv[0]).is_absolute()
    assert argv[-3:] == ["--config", str(config), "run-nightly"]

    analyze = shutil.which("systemd-analyze")
    if analyze:
        proc = subprocess.run([analyze, "verify", str(sd / TIMER_NAME), str(sd / SERVICE_NAME)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "Unknown" not in proc.stderr and "Failed" not in proc.stderr, proc.stderr
        cal = subprocess.run([analyze, "calendar", "*-*-* 03:15:00"], capture_output=True, text=True, timeout=30)
        assert cal.returncode == 0

    # the command runs (from /, with a bare environment, as systemd would) and is run-nightly
    proc = run_like_a_scheduler(argv, tmp_path)
    assert proc.returncode == 1, proc.stderr  # the database is unreachable: a real failure
    last = json.loads((tmp_path / "backups" / ".fovea-tui" / "nightly-last.json").read_text())
    assert last["outcome"] == "failed"
    assert [s["name"] for s in last["steps"]] == ["backup", "prune", "sync"]


def test_dry_run_prints_exactly_the_files_and_writes_nothing(schedule_dirs, config, capsys):
    sd, _ = schedule_dirs
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "install", "--at", "04:05", "--dry-run")
    assert code == 0
    assert not sd.exists()
    settings = settings_from_dict({})
    settings.source = config
    command = schedule.nightly_command(settings)
    assert schedule.render_service(command) in out
    assert schedule.render_timer(4, 5) in out
    assert f"would write {sd / SERVICE_NAME}" in out
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "install", "--at", "04:05", "--dry-run", "--json")
    doc = json.loads(out)
    assert doc["dry_run"] is True and doc["kind"] == "systemd" and doc["at"] == "04:05"
    assert {f["path"] for f in doc["files"]} == {str(sd / SERVICE_NAME), str(sd / TIMER_NAME)}
    assert "+OnCalendar=*-*-* 04:05:00" in doc["diff"]


def test_show_reports_the_time_and_the_next_run(schedule_dirs, config, capsys):
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "show", "--json")
    assert code == 0 and json.loads(out)["installed"] is False
    cli(capsys, "--config", str(config), "schedule", "install", "--at", "23:59")
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "show", "--json")
    info = json.loads(out)
    assert info["installed"] is True and info["kind"] == "systemd" and info["at"] == "23:59"
    nxt = datetime.fromisoformat(info["next_run"])
    local = nxt.astimezone()
    assert (local.hour, local.minute) == (23, 59)
    assert timedelta(0) < nxt - datetime.now(UTC) <= timedelta(days=1)
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "show")
    assert "daily at 23:59" in out and "next run" in out
    # reinstall without --at keeps the installed time
    cli(capsys, "--config", str(config), "schedule", "install")
    assert schedule.show(settings_from_dict({}))["at"] == "23:59"


def test_next_run_arithmetic():
    local = datetime(2026, 3, 10, 1, 0).astimezone()
    assert schedule.next_run(2, 30, local).replace(tzinfo=None) == datetime(2026, 3, 10, 2, 30)
    later = datetime(2026, 3, 10, 2, 30).astimezone()  # exactly at the time: the next day
    assert schedule.next_run(2, 30, later).replace(tzinfo=None) == datetime(2026, 3, 11, 2, 30)


@pytest.mark.parametrize("bad", ["24:00", "7", "12:60", "noon", "-1:00", "12:5"])
def test_bad_time_is_usage_error(schedule_dirs, config, capsys, bad):
    code, _, err = cli(capsys, "--config", str(config), "schedule", "install", "--at", bad)
    assert code == 2 and "--at" in err
    assert not schedule_dirs[0].exists()


def test_flags_that_do_not_apply_are_usage_errors(schedule_dirs, config, capsys):
    assert cli(capsys, "--config", str(config), "schedule", "show", "--at", "01:00")[0] == 2
    assert cli(capsys, "--config", str(config), "schedule", "remove", "--cron")[0] == 2
    assert cli(capsys, "--config", str(config), "schedule", "show", "--dry-run")[0] == 2


# ---------------------------------------------------------------- cron -------------------

def parse_cron_file(text: str) -> list[tuple[list[str], str, str]]:
    entries = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" in line.split()[0]:
            continue
        parts = line.split(None, 6)
        assert len(parts) == 7, line
        entries.append((parts[:5], parts[5], parts[6]))
    return entries


def test_cron_entry_is_parseable_and_runs_the_nightly_command(schedule_dirs, config, tmp_path, capsys):
    sd, cron = schedule_dirs
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "install", "--cron", "--at", "02:07")
    assert code == 0, out
    path = cron / CRON_FILE_NAME
    assert "." not in path.name  # cron.d skips names with dots
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    text = path.read_text()
    assert text.endswith("\n")
    ((fields, user, command),) = parse_cron_file(text)
    assert fields == ["7", "2", "*", "*", "*"]
    assert user == schedule.current_user()
    argv = shlex.split(command)
    assert Path(argv[0]).is_absolute()
    assert argv[-3:] == ["--config", str(config), "run-nightly"]
    assert not sd.exists() or not any(sd.iterdir())
    # cron runs it through /bin/sh from $HOME with a minimal PATH
    proc = run_like_a_scheduler([command.replace("\\%", "%")], tmp_path, shell=True)
    assert proc.returncode == 1, proc.stderr
    last = json.loads((tmp_path / "backups" / ".fovea-tui" / "nightly-last.json").read_text())
    assert last["steps"][0] == {**last["steps"][0], "name": "backup", "status": "failed"}

    code, out, _ = cli(capsys, "--config", str(config), "schedule", "show", "--json")
    info = json.loads(out)
    assert info["kind"] == "cron" and info["at"] == "02:07"


def test_switching_kind_removes_the_other_and_remove_removes_all(schedule_dirs, config, capsys):
    sd, cron = schedule_dirs
    cli(capsys, "--config", str(config), "schedule", "install", "--at", "01:00")
    assert (sd / TIMER_NAME).exists()
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "install", "--cron")
    assert code == 0
    assert not (sd / TIMER_NAME).exists() and not (sd / SERVICE_NAME).exists()
    assert "0 1 * * *" in (cron / CRON_FILE_NAME).read_text()  # the time was kept
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "remove", "--dry-run")
    assert f"would delete {cron / CRON_FILE_NAME}" in out and (cron / CRON_FILE_NAME).exists()
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "remove")
    assert code == 0 and "removed" in out
    assert not (cron / CRON_FILE_NAME).exists()
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "remove")
    assert code == 0 and "no nightly schedule was installed" in out


def test_without_systemd_install_falls_back_to_cron(tmp_path, config, monkeypatch, capsys):
    monkeypatch.delenv(schedule.SYSTEMD_DIR_ENV, raising=False)
    monkeypatch.setenv(schedule.CRON_DIR_ENV, str(tmp_path / "cron.d"))
    monkeypatch.setattr(schedule, "SYSTEMD_RUNNING_MARKER", tmp_path / "no-systemd-here")
    monkeypatch.setattr(schedule, "REAL_SYSTEMD_DIR", tmp_path / "real-systemd-untouched")
    code, out, _ = cli(capsys, "--config", str(config), "schedule", "install", "--dry-run")
    assert code == 0
    assert "systemd is not running here" in out
    assert f"would write {tmp_path / 'cron.d' / CRON_FILE_NAME}" in out
    assert not (tmp_path / "cron.d").exists()


def test_quoting_survives_odd_paths(schedule_dirs, tmp_path):
    odd = ["/opt/my tools/fovea-tui", "--config", "/etc/fo'vea/50% \"x\".toml", "run-nightly"]
    line = schedule.cron_line(3, 4, odd, "root")
    assert shlex.split(line.split(None, 6)[6].replace("\\%", "%")) == odd
    service = schedule.render_service(odd)
    raw = next(l for l in service.splitlines() if l.startswith("ExecStart="))[len("ExecStart="):]
    assert "%%" in raw  # systemd specifier escaped
    assert shlex.split(raw.replace("%%", "%")) == odd


# ---------------------------------------------------------------- status ---------------

def _record(settings, outcome_ok: bool, ended: datetime) -> None:
    result = NightlyResult(started_at=ended - timedelta(minutes=3), finished_at=ended)
    result.steps = [StepResult("backup", "ok" if outcome_ok else "failed", "x"),
                    StepResult("prune", "ok" if outcome_ok else "skipped"), StepResult("sync", "skipped")]
    record(settings, result)


def test_status_section_alerts(schedule_dirs, config, tmp_path):
    settings = settings_from_dict({"backups": {"dir": str(tmp_path / "b")}})
    settings.source = config
    now = datetime.now(UTC)
    section = schedule.status_section(settings, now)
    assert section["installed"] is False
    assert any("no nightly schedule" in a["message"] for a in section["alerts"])

    schedule.apply(schedule.plan_install(settings, "02:30"))
    _record(settings, True, now - timedelta(hours=2))
    section = schedule.status_section(settings, now)
    assert section["alerts"] == []
    assert section["next_run"] and section["last_run"]["outcome"] == "ok"
    assert "daily at 02:30" in section["summary"]

    _record(settings, False, now - timedelta(hours=1))
    msgs = [a["message"] for a in schedule.status_section(settings, now)["alerts"]]
    assert any("failed" in m and "backup" in m for m in msgs)

    _record(settings, True, now - timedelta(hours=30))
    alerts = schedule.status_section(settings, now)["alerts"]
    assert [a["level"] for a in alerts] == ["critical"] and "overdue" in alerts[0]["message"]

    # installed long ago and never ran
    (settings.state_dir / "nightly-last.json").unlink()
    old = (now - timedelta(days=2)).timestamp()
    os.utime(schedule_dirs[0] / TIMER_NAME, (old, old))
    alerts = schedule.status_section(settings, now)["alerts"]
    assert any("never run" in a["message"] for a in alerts)


def test_status_command_shows_the_schedule(schedule_dirs, tmp_path, capsys):
    config = tmp_path / "status.toml"
    config.write_text(render_toml(settings_from_dict({
        "install": {"compose_project": "no-such-project-xyz", "env_file": str(tmp_path / "none.env")},
        "backups": {"dir": str(tmp_path / "backups")}})))
    cli(capsys, "--config", str(config), "schedule", "install", "--at", "05:00")
    code, out, _ = cli(capsys, "--config", str(config), "status", "--json")
    doc = json.loads(out)
    assert doc["schedule"]["installed"] is True and doc["schedule"]["at"] == "05:00"
    assert "alerts" not in doc["schedule"]
    assert not any(a["subject"] == "schedule" for a in doc["alerts"])
    code, out, _ = cli(capsys, "--config", str(config), "status")
    assert "schedule" in out and "daily at 05:00" in out


def test_real_dirs_are_the_defaults(monkeypatch):
    monkeypatch.delenv(schedule.SYSTEMD_DIR_ENV, raising=False)
    monkeypatch.delenv(schedule.CRON_DIR_ENV, raising=False)
    assert schedule.systemd_dir() == Path("/etc/systemd/system")
    assert schedule.cron_dir() == Path("/etc/cron.d")
    assert sys.executable  # the fallback command is the running interpreter


def test_not_root_uses_a_marked_block_in_the_users_crontab(tmp_path, config, monkeypatch, capsys):
    """A stand-in `crontab` on PATH (stores what `crontab -` gets); other entries survive."""
    store = tmp_path / "crontab.txt"
    store.write_text("MAILTO=ops@example.org\n5 4 * * * /usr/local/bin/other-job\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    fake = bindir / "crontab"
    fake.write_text(f"#!/bin/sh\nif [ \"$1\" = -l ]; then cat {shlex.quote(str(store))} 2>/dev/null || exit 1; "
                    f"else cat > {shlex.quote(str(store))}; fi\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '')}")
    monkeypatch.delenv(schedule.CRON_DIR_ENV, raising=False)
    monkeypatch.delenv(schedule.SYSTEMD_DIR_ENV, raising=False)
    monkeypatch.setattr(schedule, "is_root", lambda: False)
    monkeypatch.setattr(schedule, "REAL_CRON_DIR", tmp_path / "real-cron-untouched")

    assert cli(capsys, "--config", str(config), "schedule", "install", "--at", "06:30")[0] == 0
    text = store.read_text()
    assert "5 4 * * * /usr/local/bin/other-job" in text and "MAILTO=ops@example.org" in text
    block = text[text.index(schedule.CRONTAB_BEGIN):]
    (line,) = [l for l in block.splitlines() if l and not l.startswith("#")]
    fields = line.split(None, 5)
    assert fields[:5] == ["30", "6", "*", "*", "*"]
    assert shlex.split(fields[5])[-3:] == ["--config", str(config), "run-nightly"]  # no user field
    info = schedule.show(settings_from_dict({}))
    assert info["kind"] == "crontab" and info["at"] == "06:30"
    # reinstalling replaces the block instead of adding a second one
    cli(capsys, "--config", str(config), "schedule", "install", "--at", "07:00")
    assert store.read_text().count(schedule.CRONTAB_BEGIN) == 1 and "0 7 * * *" in store.read_text()
    assert cli(capsys, "--config", str(config), "schedule", "remove")[0] == 0
    assert schedule.CRONTAB_BEGIN not in store.read_text()
    assert "5 4 * * * /usr/local/bin/other-job" in store.read_text()
    assert not (tmp_path / "real-cron-untouched").exists()
