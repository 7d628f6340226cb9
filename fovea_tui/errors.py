"""Errors an operator can act on, each carrying the contract's exit code.

Anything raised as a `FoveaError` is shown as one line (no traceback) by both faces.
Messages must never contain a secret: build them from names and paths, not values.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3


class FoveaError(Exception):
    """Base: a message for the operator and the exit code of the contract."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class OperationFailed(FoveaError):
    """The operation ran and failed (exit 1)."""


class ConfigError(FoveaError):
    """Bad configuration or bad usage, naming the key or flag (exit 2)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, key: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.key = key


class UsageError(ConfigError):
    """A bad flag or argument (exit 2)."""


class SafetyRefusal(FoveaError):
    """A safety guard refused: corrupt dump, delete guard, lock held (exit 3)."""

    exit_code = EXIT_REFUSED


class LockHeld(SafetyRefusal):
    """Another fovea-tui operation holds the lock (exit 3)."""


class Cancelled(FoveaError):
    """The operator cancelled a long operation; whatever it started was cleaned up."""
