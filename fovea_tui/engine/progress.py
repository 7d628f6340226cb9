"""Progress events and the cancel token that every long operation takes.

The engine calls `progress(event)` from whatever thread does the work; the CLI draws a
bar on stderr, the TUI posts a message from its worker. `cancel.check()` raises
`Cancelled` at safe points so the operation can clean up what it started.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from fovea_tui.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One step forward in a long operation.

    `done` and `total` are in `unit` ("bytes" or "files"); `total` is None when unknown.
    `phase` names the stage ("dump", "upload", "restore"...), `current` the item at hand.
    """

    phase: str
    done: int = 0
    total: int | None = None
    unit: str = "bytes"
    current: str = ""
    message: str = ""
    started_at: float = field(default_factory=time.monotonic)


class ProgressCallback(Protocol):
    def __call__(self, event: ProgressEvent) -> None: ...


def no_progress(event: ProgressEvent) -> None:
    """The callback for callers that do not draw progress."""


class CancelToken:
    """A flag a face sets (Ctrl-C, a Cancel button) and the engine polls."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled by the operator"

    def cancel(self, reason: str | None = None) -> None:
        if reason:
            self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True if cancelled meanwhile."""
        return self._event.wait(seconds)


class Throttle:
    """Rate-limits progress callbacks from hot loops (at most one per interval, plus the last)."""

    def __init__(self, progress: Callable[[ProgressEvent], None], interval: float = 0.1) -> None:
        self._progress = progress
        self._interval = interval
        self._last = 0.0

    def __call__(self, event: ProgressEvent, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            self._progress(event)
