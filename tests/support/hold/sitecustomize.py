"""Loaded at start-up by a restore runner that a crash test launched with this folder on
PYTHONPATH: with FOVEA_TEST_HOLD_STEP="STEP:SECONDS" set, step STEP sleeps once it is marked
running, so the test can kill the runner exactly there. It lives with the tests; the product
has no such hook."""

import os

_SPEC = os.environ.get("FOVEA_TEST_HOLD_STEP", "")
if _SPEC:
    import time

    from fovea_tui.engine.restore import steps

    _name, _, _seconds = _SPEC.partition(":")
    _cls = next(c for c in steps.STEPS if c.name == _name)
    _run = _cls.run

    def _held_run(self, ctx, _run=_run):
        time.sleep(float(_seconds or 60))
        return _run(self, ctx)

    _cls.run = _held_run
