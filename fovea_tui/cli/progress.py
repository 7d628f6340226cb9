"""Progress on stderr: a rich bar on a terminal, a line every few seconds under cron."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from fovea_tui import formatting, masking
from fovea_tui.engine.progress import ProgressEvent

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID


class StderrProgress:
    """A ProgressCallback; use as a context manager so the bar is closed cleanly."""

    def __init__(self, enabled: bool = True, interval: float = 5.0, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.enabled = enabled
        self.console: Console | None = None  # rich's, made with the first bar
        self.interactive = enabled and sys.stderr.isatty()
        self._interval = interval
        self._clock = clock
        self._last_line = float("-inf")
        self._last_phase: str | None = None
        self._phase_finished = False
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> StderrProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop drawing the bar; the next event starts a new one. Called before a prompt, so
        the live bar is not redrawn under what the operator types."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks = {}

    def _bar(self, unit: str) -> Progress:
        if self._progress is None:
            # rich only for a terminal's bar: cron and scripts (and a restore's recovery time)
            # do not wait for its import
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            columns = [TextColumn("{task.description}"), BarColumn()]
            if unit == "bytes":
                columns += [DownloadColumn(), TransferSpeedColumn()]
            else:
                columns += [MofNCompleteColumn()]
            columns += [TimeElapsedColumn(), TimeRemainingColumn()]
            self.console = self.console or Console(stderr=True)
            self._progress = Progress(*columns, console=self.console, transient=False)
            self._progress.start()
        return self._progress

    def __call__(self, event: ProgressEvent) -> None:
        if not self.enabled:
            return
        if self.interactive:
            bar = self._bar(event.unit)
            label = event.phase + (f" {event.current}" if event.current else "")
            if event.phase not in self._tasks:
                self._tasks[event.phase] = bar.add_task(label, total=event.total)
            bar.update(self._tasks[event.phase], completed=event.done, total=event.total,
                       description=masking.redact(label[:60]))
            return
        # Under cron the output is mailed: a line when a phase starts, one when it finishes,
        # and one every `interval` seconds between, never one per event.
        now = self._clock()
        finished = event.total is not None and event.done >= event.total
        new_phase = event.phase != self._last_phase
        if new_phase:
            self._phase_finished = False
        elif finished and self._phase_finished:
            return
        elif not finished and now - self._last_line < self._interval:
            return
        self._last_line = now
        self._last_phase = event.phase
        self._phase_finished = finished
        if event.unit == "bytes":
            amount = formatting.size(event.done)
            if event.total:
                amount += f" of {formatting.size(event.total)}"
        else:
            if event.total is not None:
                amount = f"{event.done}/{event.total} {event.unit}"
            else:  # "1 file", not "1 files"
                amount = formatting.plural(event.done, event.unit.removesuffix("s"), event.unit)
        line = f"{event.phase}: {amount}" + (f" {event.message}" if event.message else "")
        sys.stderr.write(masking.redact(line) + "\n")
