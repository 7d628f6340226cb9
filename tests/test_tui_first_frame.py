"""What the TUI's first frame imports: the toolkit, the app and the dashboard, not the engine
the status worker, a job or a restore loads when it needs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from fovea_tui.tui.app import JOB_ACTIONS, EngineCall

REPO = Path(__file__).resolve().parent.parent


def test_the_app_and_the_dashboard_import_no_probe_job_or_restore_engine():
    code = ("import json, sys; import fovea_tui.tui.app, fovea_tui.tui.screens.dashboard; "
            "print(json.dumps(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert out.returncode == 0, out.stderr[-2000:]
    modules = set(json.loads(out.stdout))
    assert "textual.app" in modules and "fovea_tui.tui.screens.dashboard" in modules
    for later in ("fovea_tui.engine.ops.status.probe", "fovea_tui.engine.restore", "fovea_tui.engine.backups.pipeline",
                  "fovea_tui.engine.volume.sync", "fovea_tui.engine.infra.database", "docker", "boto3"):
        assert later not in modules, later


def test_every_job_action_names_a_function_that_exists():
    from fovea_tui.engine.backups.pipeline import run_backup
    from fovea_tui.engine.volume.sync import run_sync

    runs = {name: job.run for name, job in JOB_ACTIONS.items()}
    assert all(isinstance(run, EngineCall) for run in runs.values())
    assert {name: run.resolve() for name, run in runs.items()} == {"backup": run_backup, "sync": run_sync}
