"""What a drill found: its checks and its result, in the report's and the contract's shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui import masking

# The runbook's step 5, to tick when the full drill runs on a separate host.
MANUAL_CHECKLIST = [
    "A user can log in (POST /api/auth/login, or the login page in a browser)",
    "A previously annotated video loads and plays",
    "Its annotations render on the timeline",
    "A re-run of summarization on a video produces output",
]

CHECK_TITLES = {
    "dump": "Newest dump fetched and verified",
    "restore": "Restored into a scratch database",
    "rows": "Rows per table as in the manifest",
    "migrations": "Migrations as in the manifest",
    "env_copy": "Env copy off-site with its secrets",
    "videos": "Every referenced video off-site",
    "cleanup": "Scratch database dropped",
}
CHECK_ORDER = list(CHECK_TITLES)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    status: str = ""        # "ok" | "failed" | "skipped"
    duration_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.status:
            self.status = "ok" if self.ok else "failed"
        self.detail = masking.redact(self.detail)

    @property
    def title(self) -> str:
        return CHECK_TITLES.get(self.name, self.name)

    def as_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "ok": self.ok, "status": self.status, "detail": self.detail,
                "title": self.title}
        if self.duration_s is not None:
            data["duration_s"] = round(self.duration_s, 3)
        data.update(self.extra)
        return data


@dataclass
class DrillResult:
    dump: str | None
    source: str                      # "offsite" | "local"
    started_at: datetime
    finished_at: datetime | None = None
    checks: list[Check] = field(default_factory=list)
    rto_s: float | None = None
    rpo_s: float | None = None
    dump_time: datetime | None = None
    scratch_database: str = ""
    offsite: str | None = None
    volume_target: str | None = None
    env_key: str | None = None
    dump_key: str | None = None
    warnings: list[str] = field(default_factory=list)
    report_json: Path | None = None
    report_md: Path | None = None
    guide: list[dict[str, Any]] = field(default_factory=list)
    monitor: list[dict[str, Any]] = field(default_factory=list)   # dead-man's switch pings

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    @property
    def duration_s(self) -> float:
        end = self.finished_at or datetime.now(UTC)
        return (end - self.started_at).total_seconds()

    def check(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)

    def passed(self, name: str) -> bool:
        """True when the named check ran and passed."""
        check = self.check(name)
        return check is not None and check.ok

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "dump": self.dump,
            "rto_s": None if self.rto_s is None else round(self.rto_s, 3),
            "rpo_s": None if self.rpo_s is None else round(self.rpo_s, 1),
            "checks": [c.as_dict() for c in self.checks],
            "failed": self.failed,
            "source": self.source,
            "dump_key": self.dump_key,
            "dump_time": iso(self.dump_time),
            "env_key": self.env_key,
            "offsite": self.offsite,
            "volume_target": self.volume_target,
            "scratch_database": self.scratch_database,
            "started_at": iso(self.started_at),
            "finished_at": iso(self.finished_at),
            "duration_s": round(self.duration_s, 3),
            "warnings": list(self.warnings),
            "checklist": [{"item": item, "done": False} for item in MANUAL_CHECKLIST],
            "guide": self.guide,
            "monitor": self.monitor,
            "report": {"json": str(self.report_json) if self.report_json else None,
                       "markdown": str(self.report_md) if self.report_md else None},
        }


def iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat() if t else None
