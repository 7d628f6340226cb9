"""The nightly run, scheduled: a systemd timer + service, or a cron entry.

`plan_install(settings, at="02:30", cron=False)` says exactly which files (or crontab
block) would be written and which commands run; `apply(plan)` does it; `plan_remove()`
and `show()` are the other two verbs of `fovea-tui schedule`.

Where the files go:
- systemd: `$FOVEA_TUI_SYSTEMD_DIR` or `/etc/systemd/system` (`fovea-tui-nightly.service`
  and `.timer`). `systemctl daemon-reload` and `enable --now` run only when writing to the
  real directory on a host where systemd runs (`/run/systemd/system` exists).
- cron: `$FOVEA_TUI_CRON_DIR` or `/etc/cron.d` (file `fovea-tui`, with the user field).
  Not root and no override: a marked block in the user's own crontab (`crontab -`).
The two environment variables exist so tests (and packagers) never touch the real system.

The schedule's time lives in the installed files themselves (there is no config key), so
`show` reads it back from `OnCalendar=` or the cron fields. Both run on the host's local
time. Commands are argument lists, never a shell.
"""

from __future__ import annotations

import difflib
import getpass
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fovea_tui.config import Settings
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.ops import policy
from fovea_tui.engine.ops.nightly import read_last
from fovea_tui.errors import OperationFailed, UsageError

SYSTEMD_DIR_ENV = "FOVEA_TUI_SYSTEMD_DIR"
CRON_DIR_ENV = "FOVEA_TUI_CRON_DIR"
REAL_SYSTEMD_DIR = Path("/etc/systemd/system")
REAL_CRON_DIR = Path("/etc/cron.d")
SYSTEMD_RUNNING_MARKER = Path("/run/systemd/system")

UNIT = "fovea-tui-nightly"
SERVICE_NAME = f"{UNIT}.service"
TIMER_NAME = f"{UNIT}.timer"
CRON_FILE_NAME = "fovea-tui"          # cron.d ignores names with dots
CRONTAB_BEGIN = "# BEGIN fovea-tui nightly (managed by `fovea-tui schedule`)"
CRONTAB_END = "# END fovea-tui nightly"

DEFAULT_AT = "02:30"
RANDOMIZED_DELAY = "15min"

_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_ONCALENDAR = re.compile(r"^\s*OnCalendar\s*=\s*\*-\*-\*\s+(\d{1,2}):(\d{2})(?::00)?\s*$", re.M)
_CRON_LINE = re.compile(r"^\s*(\d{1,2})\s+(\d{1,2})\s+\*\s+\*\s+\*\s+(.*run-nightly.*)$")


# ---------------------------------------------------------------- time -----------------

def parse_at(value: str) -> tuple[int, int]:
    """'HH:MM' (24 h) -> (hour, minute); UsageError (exit 2) naming --at otherwise."""
    m = _AT.match(value.strip()) if isinstance(value, str) else None
    if not m:
        raise UsageError(f"--at {value!r} is not a time of day HH:MM (00:00 to 23:59)", key="--at")
    return int(m.group(1)), int(m.group(2))


def format_at(hour: int, minute: int) -> str:
    return f"{hour:02d}:{minute:02d}"


def next_run(hour: int, minute: int, now: datetime | None = None) -> datetime:
    """The next daily run at HH:MM host-local time, as an aware datetime."""
    local_now = (now or datetime.now(UTC)).astimezone()
    naive = local_now.replace(tzinfo=None)
    candidate = naive.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= naive:
        candidate += timedelta(days=1)
    return candidate.astimezone()  # naive -> host local zone (DST applied for that day)


# ---------------------------------------------------------------- the command ----------

def nightly_command(settings: Settings, executable: list[str] | None = None) -> list[str]:
    """The absolute fovea-tui invocation, with the config file baked in."""
    argv = list(executable or fovea_executable())
    if settings.source is not None:
        argv += ["--config", str(Path(settings.source).absolute())]
    return argv + ["run-nightly"]


def fovea_executable() -> list[str]:
    """The console script of this installation (beside the interpreter), else `python -m`."""
    here = Path(sys.executable).absolute().parent / "fovea-tui"
    if here.is_file() and os.access(here, os.X_OK):
        return [str(here)]
    found = shutil.which("fovea-tui")
    if found:
        return [str(Path(found).absolute())]
    return [str(Path(sys.executable).absolute()), "-m", "fovea_tui"]


def _systemd_quote(arg: str) -> str:
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r"[\s\"'\\;]", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _cron_quote(arg: str) -> str:
    return shlex.quote(arg).replace("%", "\\%")  # cron turns a bare % into a newline


# ---------------------------------------------------------------- rendering -------------

def render_service(command: list[str]) -> str:
    return "\n".join([
        "# Written by `fovea-tui schedule install`; remove with `fovea-tui schedule remove`.",
        "[Unit]",
        "Description=Fovea nightly backup, prune and volume sync (fovea-tui run-nightly)",
        "Wants=network-online.target",
        "After=network-online.target docker.service",
        "",
        "[Service]",
        "Type=oneshot",
        "ExecStart=" + " ".join(_systemd_quote(a) for a in command),
        "TimeoutStartSec=12h",
        "Nice=10",
        "IOSchedulingClass=best-effort",
        "IOSchedulingPriority=7",
        "UMask=0077",
        # Hardening that leaves the docker socket (AF_UNIX under /run) and the backup
        # directories (any path outside /usr, /boot, /efi, /etc) usable.
        "NoNewPrivileges=true",
        "PrivateTmp=true",
        "ProtectSystem=full",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectKernelLogs=true",
        "ProtectControlGroups=true",
        "ProtectClock=true",
        "ProtectHostname=true",
        "RestrictSUIDSGID=true",
        "RestrictRealtime=true",
        "RestrictNamespaces=true",
        "LockPersonality=true",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "",
    ])


def render_timer(hour: int, minute: int) -> str:
    return "\n".join([
        "# Written by `fovea-tui schedule install`; remove with `fovea-tui schedule remove`.",
        "[Unit]",
        f"Description=Run fovea-tui nightly at {format_at(hour, minute)}",
        "",
        "[Timer]",
        f"OnCalendar=*-*-* {format_at(hour, minute)}:00",
        "Persistent=true",
        f"RandomizedDelaySec={RANDOMIZED_DELAY}",
        "AccuracySec=1min",
        f"Unit={SERVICE_NAME}",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])


def cron_line(hour: int, minute: int, command: list[str], user: str | None) -> str:
    """One cron line: 5 time fields, the user (cron.d only), the command."""
    fields = [str(minute), str(hour), "*", "*", "*"]
    if user is not None:
        fields.append(user)
    return " ".join(fields + [" ".join(_cron_quote(a) for a in command)])


def render_cron_file(hour: int, minute: int, command: list[str], user: str) -> str:
    return "\n".join([
        "# Written by `fovea-tui schedule install`; remove with `fovea-tui schedule remove`.",
        "# The nightly backup, prune and volume sync of the Fovea install (host local time).",
        "SHELL=/bin/sh",
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        cron_line(hour, minute, command, user),
        "",
    ])


# ---------------------------------------------------------------- where ----------------

def is_root() -> bool:
    return os.geteuid() == 0


def current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # pragma: no cover - a uid without a passwd entry
        return str(os.geteuid())


def systemd_dir() -> Path:
    return Path(os.environ.get(SYSTEMD_DIR_ENV) or REAL_SYSTEMD_DIR)


def cron_dir() -> Path:
    return Path(os.environ.get(CRON_DIR_ENV) or REAL_CRON_DIR)


def systemd_is_real() -> bool:
    """Writing to the real unit directory of a host where systemd runs."""
    return not os.environ.get(SYSTEMD_DIR_ENV) and SYSTEMD_RUNNING_MARKER.is_dir()


def systemd_available() -> bool:
    """systemd can take the schedule: it runs here (and we are root), or the dir is overridden."""
    if os.environ.get(SYSTEMD_DIR_ENV):
        return True
    return SYSTEMD_RUNNING_MARKER.is_dir() and is_root()


def uses_user_crontab() -> bool:
    return not os.environ.get(CRON_DIR_ENV) and not is_root()


# ---------------------------------------------------------------- plans ----------------

@dataclass
class FileChange:
    path: Path
    content: str | None          # None: delete
    old: str | None               # what is there now (None: nothing)
    mode: int = 0o644

    @property
    def changed(self) -> bool:
        return self.content != self.old

    def diff(self) -> str:
        old = (self.old or "").splitlines(keepends=True)
        new = (self.content or "").splitlines(keepends=True)
        a = str(self.path) if self.old is not None else "/dev/null"
        b = str(self.path) if self.content is not None else "/dev/null"
        return "".join(difflib.unified_diff(old, new, a, b))

    def as_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "action": "delete" if self.content is None else "write",
                "content": self.content, "changed": self.changed}


@dataclass
class Plan:
    """What install or remove would do; `apply` does it."""

    action: str                     # "install" | "remove"
    kind: str | None                # "systemd" | "cron" | "crontab" | None (remove: whatever is there)
    at: str | None = None
    command: list[str] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    crontab: FileChange | None = None   # the user's crontab, old and new text
    commands: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> list[FileChange]:
        return [f for f in self.files + ([self.crontab] if self.crontab else []) if f.changed]

    def diff(self) -> str:
        return "".join(c.diff() for c in self.changes)

    def preview(self) -> str:
        """Exactly what would be written: each file in full, the crontab, the commands."""
        out: list[str] = []
        for f in self.files:
            if not f.changed:
                out.append(f"# {f.path}: unchanged")
            elif f.content is None:
                out.append(f"# would delete {f.path}")
            else:
                out.append(f"# would write {f.path} (mode {f.mode:04o}):\n{f.content}")
        if self.crontab is not None and self.crontab.changed:
            out.append(f"# would set the crontab of {current_user()} to:\n{self.crontab.content}")
        for cmd in self.commands:
            out.append("# would run: " + shlex.join(cmd))
        out += [f"# note: {n}" for n in self.notes]
        if not out:
            out.append("# nothing to do")
        return "\n".join(out).rstrip("\n") + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action, "kind": self.kind, "at": self.at, "command": self.command,
            "files": [f.as_dict() for f in self.files],
            "crontab": self.crontab.content if self.crontab and self.crontab.changed else None,
            "commands": self.commands, "notes": self.notes, "diff": self.diff(),
        }


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OperationFailed(f"cannot read {path}: {exc.strerror}") from None


def read_crontab() -> str:
    """The current user's crontab ('' when there is none or no crontab command)."""
    exe = shutil.which("crontab")
    if not exe:
        return ""
    try:
        proc = subprocess.run([exe, "-l"], capture_output=True, text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def _strip_block(text: str) -> str:
    lines, out, inside = text.splitlines(), [], False
    for line in lines:
        if line.strip() == CRONTAB_BEGIN:
            inside = True
        elif inside and line.strip() == CRONTAB_END:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out) + ("\n" if out else "")


def _crontab_block(text: str) -> str | None:
    m = re.search(re.escape(CRONTAB_BEGIN) + r"\n(.*?)" + re.escape(CRONTAB_END), text, re.S)
    return m.group(1) if m else None


def _systemctl() -> str | None:
    return shutil.which("systemctl")


def _systemd_files(content_service: str | None, content_timer: str | None) -> list[FileChange]:
    d = systemd_dir()
    return [FileChange(d / SERVICE_NAME, content_service, _read(d / SERVICE_NAME)),
            FileChange(d / TIMER_NAME, content_timer, _read(d / TIMER_NAME))]


def _removal_of_everything(plan: Plan, keep: str | None) -> None:
    """Add to `plan` the removal of every installed schedule except the `keep` kind."""
    if keep != "systemd":
        files = [f for f in _systemd_files(None, None) if f.old is not None]
        if files:
            plan.files += files
            systemctl = _systemctl() if systemd_is_real() else None
            if systemctl:
                plan.commands.insert(0, [systemctl, "disable", "--now", TIMER_NAME])
                plan.commands.append([systemctl, "daemon-reload"])
    if keep != "cron":
        path = cron_dir() / CRON_FILE_NAME
        old = _read(path)
        if old is not None:
            plan.files.append(FileChange(path, None, old))
    if keep != "crontab" and uses_user_crontab():
        current = read_crontab()
        if _crontab_block(current) is not None:
            plan.crontab = FileChange(Path("crontab"), _strip_block(current), current)


def plan_install(settings: Settings, at: str | None = None, *, cron: bool = False,
                 executable: list[str] | None = None) -> Plan:
    """What `schedule install` would write. Without `at`, keeps an installed time, else 02:30."""
    if at is None:
        installed = show(settings, probe_systemctl=False)
        at = installed.get("at") or DEFAULT_AT
    hour, minute = parse_at(at)
    command = nightly_command(settings, executable)
    if not cron and systemd_available():
        kind = "systemd"
    elif uses_user_crontab():
        kind = "crontab"
    else:
        kind = "cron"
    plan = Plan(action="install", kind=kind, at=format_at(hour, minute), command=command)
    if settings.source is None:
        plan.notes.append("no config file: the nightly run will use the built-in defaults "
                          "(save the settings or pass --config first)")
    if not cron and kind != "systemd":
        plan.notes.append("systemd is not running here (or needs root): using cron instead")
    if kind == "systemd":
        plan.files = _systemd_files(render_service(command), render_timer(hour, minute))
        systemctl = _systemctl() if systemd_is_real() else None
        if systemctl:
            plan.commands = [[systemctl, "daemon-reload"],
                             [systemctl, "enable", "--now", TIMER_NAME]]
    elif kind == "cron":
        path = cron_dir() / CRON_FILE_NAME
        plan.files = [FileChange(path, render_cron_file(hour, minute, command, current_user()), _read(path))]
    else:
        current = read_crontab()
        block = f"{CRONTAB_BEGIN}\n{cron_line(hour, minute, command, None)}\n{CRONTAB_END}\n"
        plan.crontab = FileChange(Path("crontab"), _strip_block(current) + block, current)
    _removal_of_everything(plan, keep=kind)
    return plan


def plan_remove(settings: Settings) -> Plan:
    plan = Plan(action="remove", kind=None)
    _removal_of_everything(plan, keep=None)
    return plan


def apply(plan: Plan) -> dict[str, Any]:
    """Write/delete the files, set the crontab, run systemctl; returns what was done."""
    done: dict[str, Any] = {"written": [], "deleted": [], "ran": []}
    # systemctl disable (on removal) must run before its unit files go.
    pre = [c for c in plan.commands if "disable" in c]
    post = [c for c in plan.commands if "disable" not in c]
    for cmd in pre:
        _run(cmd, done)
    try:
        for f in plan.changes:
            if f is plan.crontab:
                continue
            if f.content is None:
                f.path.unlink(missing_ok=True)
                done["deleted"].append(str(f.path))
            else:
                f.path.parent.mkdir(parents=True, exist_ok=True)
                write_atomic(f.path, f.content, f.mode)
                done["written"].append(str(f.path))
    except PermissionError as exc:
        raise OperationFailed(f"cannot write {exc.filename}: permission denied",
                              hint="run `fovea-tui schedule` as root, or use --cron for your own crontab") from None
    except OSError as exc:
        raise OperationFailed(f"cannot write {exc.filename}: {exc.strerror}") from None
    if plan.crontab is not None and plan.crontab.changed:
        exe = shutil.which("crontab")
        if not exe:
            raise OperationFailed("no `crontab` command on this host", hint="install cron, or run as root for /etc/cron.d")
        proc = subprocess.run([exe, "-"], input=plan.crontab.content, capture_output=True, text=True,
                              timeout=30, check=False)
        if proc.returncode != 0:
            raise OperationFailed(f"crontab - failed: {proc.stderr.strip() or proc.returncode}")
        done["written"].append("crontab")
    for cmd in post:
        _run(cmd, done)
    return done


def _run(cmd: list[str], done: dict[str, Any]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OperationFailed(f"{shlex.join(cmd)} could not run: {exc}") from None
    done["ran"].append(shlex.join(cmd))
    if proc.returncode != 0 and "disable" not in cmd:
        raise OperationFailed(f"{shlex.join(cmd[1:] if cmd else cmd)} failed: {proc.stderr.strip() or proc.returncode}")


# ---------------------------------------------------------------- show -----------------

def _systemctl_next(now: datetime) -> datetime | None:
    """systemd's own idea of the next elapse (includes the randomized delay)."""
    exe = _systemctl()
    if not exe or not systemd_is_real():
        return None
    try:
        proc = subprocess.run([exe, "show", TIMER_NAME, "--property=NextElapseUSecRealtime", "--value",
                               "--timestamp=unix"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.match(r"^@(\d+)", proc.stdout.strip())
    if proc.returncode != 0 or not m:
        return None
    return datetime.fromtimestamp(int(m.group(1)), UTC).astimezone()


def show(settings: Settings, now: datetime | None = None, *, probe_systemctl: bool = True) -> dict[str, Any]:
    """What is installed (kind, time, files, command) and when it runs next."""
    now = now or datetime.now(UTC)
    found: list[dict[str, Any]] = []
    timer_path = systemd_dir() / TIMER_NAME
    timer = _read(timer_path)
    if timer is not None:
        m = _ONCALENDAR.search(timer)
        service = _read(systemd_dir() / SERVICE_NAME) or ""
        exec_line = next((line[len("ExecStart="):] for line in service.splitlines()
                          if line.startswith("ExecStart=")), "")
        found.append({"kind": "systemd", "files": [str(systemd_dir() / SERVICE_NAME), str(timer_path)],
                      "hm": (int(m.group(1)), int(m.group(2))) if m else None, "command": exec_line,
                      "installed_at": _mtime(timer_path)})
    cron_path = cron_dir() / CRON_FILE_NAME
    cron_text = _read(cron_path)
    if cron_text is not None:
        found.append(_from_cron(cron_text, "cron", [str(cron_path)], _mtime(cron_path)))
    if uses_user_crontab():
        block = _crontab_block(read_crontab())
        if block is not None:
            found.append(_from_cron(block, "crontab", ["crontab"], None))
    if not found:
        return {"installed": False, "kind": None, "at": None, "next_run": None, "files": [],
                "summary": "not installed"}
    entry = found[0]
    info: dict[str, Any] = {"installed": True, "kind": entry["kind"], "files": entry["files"],
                            "command": entry["command"], "installed_at": entry["installed_at"],
                            "at": None, "next_run": None}
    if len(found) > 1:
        info["also_installed"] = [e["kind"] for e in found[1:]]
    if entry["hm"] is not None:
        hour, minute = entry["hm"]
        info["at"] = format_at(hour, minute)
        nxt = _systemctl_next(now) if entry["kind"] == "systemd" and probe_systemctl else None
        info["next_run"] = (nxt or next_run(hour, minute, now)).isoformat(timespec="seconds")
    info["summary"] = (f"{entry['kind']} daily at {info['at'] or '?'}"
                       + (f", next {info['next_run']}" if info["next_run"] else ""))
    return info


def _mtime(path: Path) -> str | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat(timespec="seconds")
    except OSError:
        return None


def _from_cron(text: str, kind: str, files: list[str], installed_at: str | None) -> dict[str, Any]:
    for line in text.splitlines():
        m = _CRON_LINE.match(line)
        if m:
            minute, hour = int(m.group(1)), int(m.group(2))
            command = m.group(3)
            if kind == "cron":  # drop the user field
                command = command.split(None, 1)[1] if " " in command else command
            ok = 0 <= hour <= 23 and 0 <= minute <= 59
            return {"kind": kind, "files": files, "hm": (hour, minute) if ok else None,
                    "command": command, "installed_at": installed_at}
    return {"kind": kind, "files": files, "hm": None, "command": "", "installed_at": installed_at}


# ---------------------------------------------------------------- status ---------------

def _parse_time(value: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(value))
    except (TypeError, ValueError):
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def status_section(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The dashboard's schedule card: what is installed, next run, the last run, and its
    alerts (`alerts`: list of {level, subject, message}, taken out by `collect_status`)."""
    now = now or datetime.now(UTC)
    info = show(settings, now)
    last = read_last(settings)
    alerts: list[dict[str, str]] = []
    section: dict[str, Any] = {k: info.get(k) for k in ("installed", "kind", "at", "next_run", "files")}
    last_end = None
    if last:
        last_end = _parse_time(last.get("finished_at") or last.get("started_at"))
        section["last_run"] = {
            "outcome": last.get("outcome"), "started_at": last.get("started_at"),
            "finished_at": last.get("finished_at"), "duration_s": last.get("duration_s"),
            "steps": [{"name": s.get("name"), "status": s.get("status"), "detail": s.get("detail")}
                      for s in last.get("steps", []) if isinstance(s, dict)],
        }
    else:
        section["last_run"] = None
    if not info["installed"]:
        alerts.append({"level": "warning", "subject": "schedule",
                       "message": "no nightly schedule installed (fovea-tui schedule install)"})
    if last and last.get("outcome") != "ok":
        failed = [s["name"] for s in section["last_run"]["steps"] if s["status"] == "failed"]
        alerts.append({"level": "critical", "subject": "schedule",
                       "message": f"the last nightly run ({last.get('started_at')}) {last.get('outcome')}"
                                  + (f": {', '.join(failed)} failed" if failed else "")})
    if info["installed"]:
        reference = last_end or _parse_time(info.get("installed_at"))
        if reference is not None and now - reference > policy.SCHEDULE_OVERDUE_AFTER:
            hours = int((now - reference).total_seconds() // 3600)
            what = f"the last nightly run ended {hours} h ago" if last_end else \
                f"the schedule was installed {hours} h ago and has never run"
            alerts.append({"level": "critical", "subject": "schedule",
                           "message": f"nightly run overdue: {what} (expected daily at {info.get('at') or '?'})"})
    last_text = ""
    if last:
        last_text = f"; last run {last.get('outcome')} at {last.get('started_at')}"
    section["summary"] = (info["summary"] if info["installed"] else "no nightly schedule") + last_text
    section["alerts"] = alerts
    return section
