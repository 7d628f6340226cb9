"""A command imports its own part of fovea-tui only: a cron'd `sync` does not pay for the
restore, status or TUI code (a quarter of a second of imports), and help and usage errors
still name every command."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fovea_tui.cli.commands import COMMAND_MODULES

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(REPO), DOCKER_HOST="unix:///nonexistent/docker.sock")


CHILD = ("import json, sys\nfrom fovea_tui.cli.main import main\ntry:\n    code = main(sys.argv[1:])\n"
         "except SystemExit as exc:\n    code = exc.code\nprint(json.dumps(sorted(sys.modules)))\nsys.exit(code)")


def run(*args: str) -> subprocess.CompletedProcess:
    """fovea-tui's main() in a fresh interpreter; its last stdout line: every module it imported."""
    return subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=ENV, timeout=60)


def imported(result: subprocess.CompletedProcess) -> set[str]:
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_sync_help_imports_the_sync_command_only(tmp_path):
    result = run("--config", str(tmp_path / "missing.toml"), "sync", "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--full-listing" in result.stdout
    mods = imported(result)
    assert "fovea_tui.cli.commands.sync" in mods
    others = {f"fovea_tui.cli.commands.{name}" for name in COMMAND_MODULES if name != "sync"}
    assert not mods & others
    for heavy in ("textual", "apprise", "psycopg", "fovea_tui.engine.restore", "fovea_tui.engine.ops.status"):
        assert heavy not in mods, heavy


def test_hyphenated_command_and_abbreviated_config_flag(tmp_path):
    result = run("--conf", "sync", "run-nightly", "--help")  # "sync" is the config's path here, not a command
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("usage: fovea-tui run-nightly")
    assert "fovea_tui.cli.commands.sync" not in imported(result)


def test_top_level_help_still_lists_every_command():
    result = run("--help")
    assert result.returncode == 0
    for name in COMMAND_MODULES:
        # argparse puts a long name (undo-selective) on a line of its own, its help below it
        assert re.search(rf"^    {name.replace('_', '-')}(\s|$)", result.stdout, re.M), name


@pytest.mark.parametrize("word", ["bogus", "run_nightly"])
def test_unknown_command_is_a_usage_error_naming_the_choices(word):
    result = run(word)
    assert result.returncode == 2
    assert f"invalid choice: '{word}'" in result.stderr
    assert "'run-nightly'" in result.stderr and "'restore'" in result.stderr
    assert "Traceback" not in result.stderr


def test_no_docker_socket_is_said_without_importing_the_docker_package(tmp_path):
    config = tmp_path / "fovea-tui.toml"
    config.write_text('[database]\nmode = "docker"\n'
                      f'[backups]\ndir = "{tmp_path / "b"}"\n[volume]\npath = "{tmp_path / "v"}"\n'
                      f'[install]\nenv_file = "{tmp_path / ".env"}"\n')
    result = run("--config", str(config), "status", "--json")
    report = json.loads(result.stdout.strip().rsplit("\n", 1)[0])
    assert "no Docker engine answers on this host" in report["stack"]["error"], report["stack"]
    assert "no Docker engine answers on this host" in report["database"]["error"], report["database"]
    assert "docker" not in imported(result)
