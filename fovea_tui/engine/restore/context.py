"""What every restore step gets: the settings, the job's state, the database and the stack.

The database and the stack are opened lazily, so a step that needs neither (choosing a dump)
works when Docker is down, and a resumed runner opens them afresh.
"""

from __future__ import annotations

import sys
import threading
import time
from functools import cached_property
from pathlib import Path
from typing import Any

from fovea_tui import masking
from fovea_tui.config import Settings
from fovea_tui.engine.infra.database import Database, open_database
from fovea_tui.engine.infra.stack import DockerUnavailable, Stack, project_on_engine
from fovea_tui.engine.progress import CancelToken
from fovea_tui.envfile import EnvFile
from fovea_tui.errors import FoveaError

OUTPUT_TAIL = 400  # lines kept per step in the state file (the runner's log has them all)


class RestoreContext:
    """A view of one restore job for its steps; `handle` is an engine.jobs.JobHandle."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.settings: Settings = handle.settings
        self.cancel: CancelToken = handle.cancel
        self.current: dict | None = None  # the step record being run or undone
        # services this runner left stopping in a thread: (thread, names, errors); steps.stop_services
        self.stopping: tuple[threading.Thread, list[str], list[BaseException]] | None = None

    # --- state ---------------------------------------------------------------------

    @property
    def data(self) -> dict:
        return self.handle.data

    @property
    def params(self) -> dict:
        return self.handle.data["params"]

    @property
    def facts(self) -> dict[str, Any]:
        return self.handle.data.setdefault("facts", {})

    def save(self, throttle: float = 0.0) -> None:
        self.handle.save(throttle=throttle)

    def output(self, line: str) -> None:
        """A line of a step's output: into the state file (tail) and the runner's log."""
        line = masking.redact(line.rstrip("\n"))
        if self.current is not None:
            lines = self.current.setdefault("output", [])
            lines.append(line)
            del lines[:-OUTPUT_TAIL]
            self.current["output_total"] = self.current.get("output_total", 0) + 1
        name = self.current.get("name", "-") if self.current else "-"
        sys.stdout.write(f"{time.strftime('%H:%M:%S')} [{name}] {line}\n")
        sys.stdout.flush()
        self.save(throttle=0.3)

    def progress(self, done: int, total: int | None, unit: str = "bytes") -> None:
        if self.current is not None:
            self.current["progress"] = {"done": done, "total": total, "unit": unit}
        self.save(throttle=0.3)

    # --- the install ---------------------------------------------------------------

    @cached_property
    def env(self) -> EnvFile | None:
        """The install's env file, or None when it cannot be read (only some checks need it)."""
        try:
            return EnvFile.load(self.settings.install.env_file)
        except FoveaError:
            return None

    @cached_property
    def stack(self) -> Stack | None:
        """The compose stack; None in direct mode when no Docker engine or no such project."""
        if self.settings.database.mode == "docker":
            return Stack.connect(self.settings.install.compose_project)
        if project_on_engine(self.settings.install.compose_project) is False:
            return None  # asked without the docker SDK: nothing to manage, and its import spared
        try:
            stack = Stack.connect(self.settings.install.compose_project)
        except DockerUnavailable:
            return None
        except Exception:  # noqa: BLE001 - the docker SDK missing or misbehaving: not managed
            return None
        try:
            return stack if stack.services() else None
        except Exception:  # noqa: BLE001
            return None

    @cached_property
    def db(self) -> Database:
        stack = self.stack if self.settings.database.mode == "docker" else None
        return open_database(self.settings, self.env if self.settings.database.mode == "direct" and not self.settings.database.url else None, stack)

    @property
    def db_name(self) -> str:
        return self.db.name

    @property
    def db_service(self) -> str:
        """The compose service of the database: never stopped by a restore."""
        return self.settings.database.service

    @property
    def dump_path(self) -> Path:
        return Path(self.facts["dump_path"])
