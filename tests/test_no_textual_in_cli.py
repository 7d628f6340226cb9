"""CLI commands never import textual: cron jobs stay fast and lean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_status_json_does_not_import_textual(tmp_path):
    config = tmp_path / "fovea-tui.toml"
    config.write_text('[database]\nmode = "direct"\nurl = "postgresql://fovea@127.0.0.1:9/fovea"\n'
                      f'[backups]\ndir = "{tmp_path / "b"}"\n[volume]\npath = "{tmp_path / "v"}"\n'
                      f'[install]\nenv_file = "{tmp_path / ".env"}"\n')
    env = dict(os.environ, PYTHONPATH=str(REPO), DOCKER_HOST="unix:///nonexistent/docker.sock")
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "fovea_tui", "--config", str(config),
                             "status", "--json"], capture_output=True, text=True, env=env, timeout=120)
    imported = [line.split("|")[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    assert "fovea_tui.cli.main" in imported, result.stderr[-2000:]
    assert not [m for m in imported if m == "textual" or m.startswith("textual.")]
    assert result.stdout.lstrip().startswith("{")


def test_demo_command_module_imports_no_textual_until_it_opens_the_tui():
    code = ("import sys; from fovea_tui.cli.main import build_parser; build_parser(); "
            "import fovea_tui.sandbox.demo; print(any(m == 'textual' or m.startswith('textual.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=60)
    assert out.stdout.strip() == "False", out.stderr
