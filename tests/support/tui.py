"""Running the Textual app in tests: one way to build it, await a condition, run an async test.

`from support.tui import SIZE, asynctest, make_app, settings_in, wait_for`.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import datetime
from pathlib import Path

from fovea_tui.config import Settings
from fovea_tui.tui.app import FoveaApp, create_app, fixed_clock
from fovea_tui.tui.sample import SAMPLE_NOW, sample_report

SIZE = (120, 36)  # the terminal most screen tests run in


def asynctest(fn):
    """Run an async test with asyncio.run (no asyncio plugin needed)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return asyncio.run(fn(*args, **kwargs))
    return wrapper


def settings_in(tmp_path: Path) -> Settings:
    """Default settings whose backups dir and config file (not written) are under `tmp_path`."""
    settings = Settings()
    settings.backups.dir = str(tmp_path / "backups")
    settings.source = tmp_path / "fovea-tui.toml"
    return settings


def make_app(settings, now: datetime = SAMPLE_NOW, **kw) -> FoveaApp:
    """The app on `settings` with a frozen clock, the sample status report, no polling,
    no Docker events, no setup wizard, no animation, no cursor blink (override any of it
    with kw; `status_source=None` collects the real status)."""
    kw.setdefault("status_source", lambda s, when: sample_report(when))
    kw.setdefault("poll_interval", 0)
    kw.setdefault("watch_stack", False)
    kw.setdefault("first_run", False)
    kw.setdefault("animate", False)
    kw.setdefault("cursor_blink", False)
    return create_app(settings, clock=fixed_clock(now), **kw)


async def wait_for(pilot, predicate, timeout: float = 15.0) -> None:
    """Pause the pilot until `predicate()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)
