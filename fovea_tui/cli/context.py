"""What every command gets: settings (loaded once), output helpers, progress and cancel."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from fovea_tui import masking
from fovea_tui.config import Settings, load_settings
from fovea_tui.engine.progress import CancelToken, ProgressEvent
from fovea_tui.envfile import EnvFile


@dataclass
class CliContext:
    config_path: str | None
    json: bool = False
    quiet: bool = False
    cancel: CancelToken = field(default_factory=CancelToken)

    @cached_property
    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @cached_property
    def env(self) -> EnvFile:
        return EnvFile.load(self.settings.install.env_file)

    def emit(self, result: dict[str, Any], text: str | None = None) -> None:
        """The result: one JSON document on stdout with --json, else human text."""
        if self.json:
            sys.stdout.write(masking.redact(json.dumps(result, indent=2, default=str, ensure_ascii=False)) + "\n")
        elif text is not None:
            sys.stdout.write(masking.redact(text) + ("" if text.endswith("\n") else "\n"))
        sys.stdout.flush()

    def info(self, message: str) -> None:
        """A progress or log line: always stderr, so --json stdout stays one document."""
        if not self.quiet:
            sys.stderr.write(masking.redact(message) + "\n")
            sys.stderr.flush()

    def progress(self):
        """A progress callback drawing on stderr (a bar on a terminal, sparse lines otherwise)."""
        from fovea_tui.cli.progress import StderrProgress

        return StderrProgress(enabled=not self.quiet)

    def drawn(self, event: ProgressEvent) -> None:  # pragma: no cover - convenience alias
        self.progress()(event)
