"""What one volume sync did (or, with dry_run, would do): the contract's JSON shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fovea_tui.errors import OperationFailed, SafetyRefusal

MAX_LISTED = 200             # errors/warnings kept in a result (the count is always exact)


@dataclass
class SyncResult:
    """What one run did (or, with dry_run, would do). `as_dict()` is the contract's shape."""

    direction: str                      # "push" | "pull"
    source: str
    target: str
    dry_run: bool = False
    uploaded: int = 0
    downloaded: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0                      # bytes transferred (uploaded or downloaded)
    errors: list[str] = field(default_factory=list)
    error_count: int = 0
    warnings: list[str] = field(default_factory=list)
    warning_count: int = 0
    changed: list[str] = field(default_factory=list)    # size differs from the off-site copy
    replaced: int = 0                   # changed files transferred because replace_changed
    planned: list[dict[str, Any]] = field(default_factory=list)  # dry run: the transfers
    deletions: list[str] = field(default_factory=list)  # planned (dry run) or done
    pending: int = 0                    # planned transfers that did not happen
    vanished: int = 0                   # planned transfers whose file was deleted meanwhile
    local_files: int = 0
    local_bytes: int = 0
    remote_objects: int = 0
    to_transfer: int = 0
    to_transfer_bytes: int = 0
    to_delete: int = 0                  # deletions planned (the guard's numerator)
    refused: str | None = None          # the delete guard's reason, when it refused
    cancelled: bool = False
    cleaned_up: int = 0                 # incomplete uploads aborted at start
    listing: dict[str, Any] | None = None  # push: full listing or trusted snapshot, and why
    copies: str | None = None           # how bucket objects travelled: server-side or streamed
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    duration_s: float = 0.0

    # -- bookkeeping used by the engine (thread-safe through the caller's lock)
    def error(self, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append(message)

    def warn(self, message: str) -> None:
        self.warning_count += 1
        if len(self.warnings) < MAX_LISTED:
            self.warnings.append(message)

    @property
    def ok(self) -> bool:
        return not self.error_count and not self.refused and not self.cancelled

    @property
    def exit_code(self) -> int:
        if self.refused:
            return SafetyRefusal.exit_code
        if self.error_count or self.cancelled:
            return OperationFailed.exit_code
        return 0

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "ok": self.ok,
            "direction": self.direction,
            "source": self.source,
            "target": self.target,
            "dry_run": self.dry_run,
            "uploaded": self.uploaded,
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "bytes": self.bytes,
            "errors": list(self.errors),
            "error_count": self.error_count,
            "warnings": list(self.warnings),
            "warning_count": self.warning_count,
            "changed": list(self.changed),
            "replaced": self.replaced,
            "deletions": list(self.deletions),
            "pending": self.pending,
            "local_files": self.local_files,
            "local_bytes": self.local_bytes,
            "remote_objects": self.remote_objects,
            "to_transfer": self.to_transfer,
            "to_transfer_bytes": self.to_transfer_bytes,
            "to_delete": self.to_delete,
            "refused": self.refused,
            "cancelled": self.cancelled,
            "cleaned_up": self.cleaned_up,
            "listing": self.listing,
            "copies": self.copies,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "duration_s": round(self.duration_s, 3),
            "exit_code": self.exit_code,
        }
        if self.dry_run:
            data["planned"] = list(self.planned)
        return data
