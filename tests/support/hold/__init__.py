"""Start a restore whose runner holds one step (see sitecustomize.py beside this file)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fovea_tui.engine import restore as engine

HOLD_DIR = str(Path(__file__).parent)


def start_held_restore(settings, dump_name: str, step: str, seconds: float = 60) -> str:
    """`engine.start_restore` with `step` held for `seconds` in the detached runner only (a
    resume or rollback started afterwards runs unheld)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FOVEA_TEST_HOLD_STEP", f"{step}:{seconds}")
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [HOLD_DIR, os.environ.get("PYTHONPATH")])))
        return engine.start_restore(settings, dump_name, confirmed=True)
