"""Running the Textual app in tests: one way to build it, await a condition, run an async test.

`from support.tui import SIZE, asynctest, make_app, settings_in, settle, wait_for`.
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


async def settle(pilot, timeout: float = 60.0) -> None:
    """Wait until the app is idle: no worker running, and what they posted handled (a handled
    message may start another worker, which is waited for in turn)."""
    app = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    idle_rounds = 0
    while idle_rounds < 2:
        await pilot.pause()
        busy = [w for w in app.workers if w.is_running]
        if not busy:
            idle_rounds += 1
            continue
        idle_rounds = 0
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"workers still running: {[w.name for w in busy]}")
        await asyncio.wait_for(app.workers.wait_for_complete(busy), remaining)


async def wait_for(pilot, predicate, timeout: float = 15.0) -> None:
    """Pause the pilot until `predicate()` holds; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await pilot.pause(0.02)


def all_rows_shown(screen) -> bool:
    """The Backups screen once a load is drawn, as the operator sees it: a row for every dump."""
    from textual.widgets import DataTable

    table = screen.query_one("#inventory", DataTable)
    return screen.inventory is not None and table.row_count == len(screen.inventory.entries)
