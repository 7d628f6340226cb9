"""Detached jobs: work that must outlive the terminal that started it.

A job is a JSON state file, `<state_dir>/jobs/<id>.json`, and a runner process,
`python -m fovea_tui.engine.infra.jobs run <id> --jobs-dir DIR`, started in its own session
(`start_new_session=True`) so an SSH drop or a closed TUI does not stop it half-way. The
runner rewrites the state file (atomically: temp file + rename) after every step and, throttled,
while a step makes progress; the faces (CLI, TUI) follow that file and draw it.

Liveness is a `flock` on `<id>.lock` held by the runner for its whole life: the kernel drops it
when the runner dies, however it dies, so "running in the state file but nobody holds the lock"
means the runner crashed and the job can be resumed or rolled back.

The state file never holds a secret: `database.url` is stored without its password, and the
runner reads the URL again from the config file the job came from (`settings_of`); only
settings that came from no file (or differ from it) are handed to the runner through its
environment, never through a file or its command line.

Faces talk back to a runner through small control files beside the state file:
`<id>.confirm` (what the operator typed) and `<id>.cancel`.

What a job does is its kind's business: `KINDS` maps a kind to `module:function`, called as
`function(handle, action)` with action "run", "resume" or "rollback".
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import functools
import gc
import importlib
import json
import os
import secrets as _random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fovea_tui import masking
from fovea_tui.config import Settings, load_file, settings_from_dict
from fovea_tui.engine.infra.files import write_atomic
from fovea_tui.engine.infra.locks import ensure_private_dir, open_if_held
from fovea_tui.engine.progress import CancelToken
from fovea_tui.envfile import without_password
from fovea_tui.errors import OperationFailed, SafetyRefusal

JOBS_DIRNAME = "jobs"
KINDS: dict[str, str] = {"restore": "fovea_tui.engine.restore.runner:execute"}
ACTIONS = ("run", "resume", "rollback")
CONTROLS = ("confirm", "accept", "cancel")  # files a face writes to talk to a runner
#: Statuses after which the runner has nothing left to do.
FINAL = ("ok", "failed", "refused", "cancelled", "rolled_back", "rollback_failed", "held")
#: Statuses of a runner at work (or that should be: "interrupted" when its runner is gone).
ACTIVE = ("pending", "running", "waiting", "rolling_back")
OUTPUT_TAIL = 400  # lines of output kept per step in the state file
#: How a runner gets a database URL that is in no config file (settings built in memory).
URL_ENV = "FOVEA_TUI_JOB_DATABASE_URL"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def jobs_dir(settings: Settings) -> Path:
    return settings.state_dir / JOBS_DIRNAME


def state_path(directory: Path, job_id: str) -> Path:
    if not job_id or "/" in job_id or job_id.startswith("."):
        raise SafetyRefusal(f"bad job id {job_id!r}")
    return directory / f"{job_id}.json"


def new_job_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{kind}-{stamp}-{_random.token_hex(2)}"


def write_json_atomic(path: Path, data: dict) -> None:
    # Not passed through masking.redact: paths and names must survive intact. What lands here
    # from tools (output lines, error details) is redacted where it is recorded.
    write_atomic(path, json.dumps(data, indent=1, default=str, ensure_ascii=False) + "\n")


def read_state(directory: Path, job_id: str) -> dict:
    path = state_path(directory, job_id)
    for _ in range(5):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OperationFailed(f"no job {job_id} in {directory}") from None
        except ValueError:
            time.sleep(0.05)  # never happens with rename, but a torn copy on some filesystems
    raise OperationFailed(f"state file of job {job_id} is unreadable")


def load_job(settings: Settings, job_id: str) -> dict:
    """The state of job `job_id`, with `alive` (is its runner running now) filled in."""
    data = read_state(jobs_dir(settings), job_id)
    data["alive"] = is_alive(jobs_dir(settings), job_id)
    return data


def list_jobs(settings: Settings, kind: str | None = None) -> list[dict]:
    """Every job's state, newest first (unreadable files skipped)."""
    directory = jobs_dir(settings)
    out = []
    try:
        names = sorted((p for p in directory.glob("*.json") if not p.name.startswith(".")), reverse=True)
    except OSError:
        return []
    for path in names:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if kind is None or data.get("kind") == kind:
            data["alive"] = is_alive(directory, data.get("id", path.stem))
            out.append(data)
    out.sort(key=lambda d: d.get("created_at", ""), reverse=True)
    return out


def latest_job(settings: Settings, kind: str) -> dict | None:
    jobs = list_jobs(settings, kind)
    return jobs[0] if jobs else None


def effective_status(data: dict) -> str:
    """The status an operator should see: a "running" job whose runner is gone is "interrupted"."""
    status = data.get("status", "pending")
    if status in ("running", "waiting", "rolling_back") and not data.get("alive", True):
        return "interrupted"
    return status


@dataclass(frozen=True)
class JobState:
    """A job as the faces see it: read from its state file, with liveness and the status an
    operator should see already worked out. The state file stays a dict (the runner's)."""

    id: str
    kind: str
    status: str                     # effective: "interrupted" when the runner is gone
    recorded_status: str            # what the state file says
    phase: str                      # "forward" | "rollback"
    alive: bool
    pid: int | None
    created_at: str
    updated_at: str
    message: str
    params: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: dict) -> JobState:
        """Typed from a state file; what has the wrong shape (a hand-edited or torn file) is
        dropped rather than trusted."""
        def mapping(value: Any) -> dict[str, Any]:
            return dict(value) if isinstance(value, dict) else {}

        raw_steps = data.get("steps")
        steps: list[Any] = raw_steps if isinstance(raw_steps, list) else []
        pid = data.get("pid")
        return cls(id=str(data.get("id", "")), kind=str(data.get("kind", "")),
                   status=str(effective_status(data)), recorded_status=str(data.get("status", "pending")),
                   phase=str(data.get("phase") or "forward"), alive=bool(data.get("alive", False)),
                   pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                   created_at=str(data.get("created_at") or ""), updated_at=str(data.get("updated_at") or ""),
                   message=str(data.get("message") or ""), params=mapping(data.get("params")),
                   facts=mapping(data.get("facts")),
                   steps=[s for s in steps if isinstance(s, dict)
                          and all(isinstance(s.get(k), str) for k in ("name", "title", "status"))])

    def as_state(self) -> dict[str, Any]:
        """The fields the restore's wording helpers read, from the checked values."""
        return {"id": self.id, "kind": self.kind, "status": self.recorded_status, "alive": self.alive,
                "phase": self.phase, "message": self.message, "params": self.params, "facts": self.facts,
                "steps": self.steps}

    @property
    def active(self) -> bool:
        """A runner is at work on it (or should be, and a face must say so)."""
        return self.status in ACTIVE

    @property
    def current_step(self) -> dict[str, Any] | None:
        """The step running now (or running when the runner died), else the first one not done."""
        running = next((s for s in self.steps if s.get("status") == "running"), None)
        if running is not None or self.status not in ACTIVE:
            return running
        return next((s for s in self.steps if s.get("status") == "pending"), None)


def load_state(settings: Settings, job_id: str) -> JobState:
    """Job `job_id`, typed (OperationFailed when there is no such job)."""
    return JobState.from_dict(load_job(settings, job_id))


def latest_state(settings: Settings, kind: str) -> JobState | None:
    """The newest job of `kind`, typed; None when there is none."""
    data = latest_job(settings, kind)
    return JobState.from_dict(data) if data is not None else None


def is_alive(directory: Path, job_id: str) -> bool:
    """True while a runner holds the job's lock."""
    with open_if_held(directory / f"{job_id}.lock") as fd:
        return fd is not None


def create_job(settings: Settings, kind: str, params: dict[str, Any], *, steps: list[dict] | None = None) -> str:
    """Write a new job's state file (status "pending"); returns its id."""
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}")
    directory = ensure_private_dir(jobs_dir(settings))
    job_id = new_job_id(kind)
    data = {
        "id": job_id,
        "kind": kind,
        "status": "pending",
        "phase": "forward",
        "created_at": now_iso(),
        "updated_at": now_iso(),
        "pid": None,
        "settings": _redacted_settings(settings),
        "config_source": str(settings.source) if settings.source else None,
        "params": params,
        "steps": steps or [],
        "facts": {},
        "message": "",
        "history": [],
    }
    write_json_atomic(state_path(directory, job_id), data)
    return job_id


def _redacted_settings(settings: Settings) -> dict[str, dict[str, Any]]:
    """The settings as the state file may hold them: `database.url` without its password."""
    data = settings.to_toml_dict()
    data["database"]["url"] = without_password(settings.database.url)
    return data


def _url_from_file(source: Path | None) -> str:
    """`database.url` as the config file says it now ("" when there is no readable file)."""
    if source is None:
        return ""
    try:
        return load_file(source).database.url
    except Exception:  # noqa: BLE001 - any config error: the file is no source for the URL
        return ""


def spawn(settings: Settings, job_id: str, action: str = "run", *, fork: bool = False,
          keep_fds: tuple[int, ...] = ()) -> int:
    """Start the runner for `job_id` in a new session, detached from this terminal; its pid.

    With `fork`, the runner is a fork of this process, which has the engine imported already
    (a fresh interpreter takes a quarter of a second to import it: time the application is
    down during a restore). Only a process without threads may fork (the CLI; the TUI has
    threads, and a thread's lock held at the fork would stay held in the child): otherwise,
    and without `fork`, the runner is a fresh interpreter. `keep_fds`: descriptors a forked
    runner keeps (a read begun ahead for it); a fresh interpreter gets none."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    directory = jobs_dir(settings)
    if is_alive(directory, job_id):
        raise SafetyRefusal(f"job {job_id} is already running")
    url = settings.database.url if settings.database.url and _url_from_file(settings.source) != settings.database.url \
        else None  # in memory only: never in the state file
    # The runner's raw output (tracebacks, a tool's stderr) may name what it read: 0600.
    log_fd = os.open(directory / f"{job_id}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if fork and threading.active_count() == 1:
            pid = _fork_runner(directory, job_id, action, log_fd, url, keep_fds)
            reap: Callable[[], object] = functools.partial(os.waitpid, pid, 0)
        else:
            proc = _exec_runner(directory, job_id, action, log_fd, url)
            pid, reap = proc.pid, proc.wait
    finally:
        os.close(log_fd)
    # Wait (briefly) until the runner holds the lock, so `is_alive` is true when we return.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if is_alive(directory, job_id) or _exited(pid):
            break
        time.sleep(0.005)
    in_background(reap)  # collected when it ends: never a zombie
    return pid


def in_background(target: Callable[[], object]) -> None:
    """Run `target` in a daemon thread that never takes SIGINT or SIGTERM. The kernel gives a
    process's signal to any thread that does not block it; one given to a helper thread does
    not interrupt the main thread's blocking read, so a Ctrl-C at a question on the terminal
    went unheard until Enter. The thread is started with both blocked, and inherits that."""
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        threading.Thread(target=target, daemon=True).start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _exec_runner(directory: Path, job_id: str, action: str, log_fd: int, url: str | None) -> subprocess.Popen:
    # The runner imports the same fovea_tui as this process, wherever that was found.
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
    env.pop(URL_ENV, None)
    if url:
        env[URL_ENV] = url
    return subprocess.Popen(
        [sys.executable, "-m", "fovea_tui.engine.infra.jobs", action, job_id, "--jobs-dir", str(directory)],
        stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True, env=env, cwd="/",
    )


def _fork_runner(directory: Path, job_id: str, action: str, log_fd: int, url: str | None,
                 keep_fds: tuple[int, ...] = ()) -> int:
    """The runner as a child of this process: a new session, stdin from /dev/null, stdout and
    stderr to the job's log, then the runner's own `main`; it never returns to the caller."""
    sys.stdout.flush()
    sys.stderr.flush()
    gc.collect()  # no garbage file object left to close, in the child, a descriptor it reuses
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setsid()
        os.chdir("/")
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        close_descriptors(keep=keep_fds)  # as close_fds does for the exec'd runner
        os.environ.pop(URL_ENV, None)
        if url:
            os.environ[URL_ENV] = url
        code = main([action, job_id, "--jobs-dir", str(directory)])
    finally:
        os._exit(code)  # never the caller's atexit handlers, buffers or finally blocks


def close_descriptors(keep: tuple[int, ...] = ()) -> None:
    """In a forked child: close every descriptor above stderr but `keep`, so the child holds
    none of its parent's files, terminal or pipes."""
    low = 3
    for fd in sorted(fd for fd in keep if fd >= low):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


def _exited(pid: int) -> bool:
    """Has this child ended (without collecting it: the reaper thread does)?"""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def write_control(settings: Settings, job_id: str, name: str, value: str = "") -> None:
    """Tell a runner something: "confirm" or "accept" (the typed text), or "cancel". Written
    whole, then renamed into place: the runner polls for it, and a file it found created but
    not yet written read as an empty answer, a wrong one (the restore was held)."""
    if name not in CONTROLS:
        raise ValueError(name)
    write_atomic(jobs_dir(settings) / f"{job_id}.{name}", value)


def read_control(directory: Path, job_id: str, name: str) -> str | None:
    try:
        return (directory / f"{job_id}.{name}").read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


def clear_controls(directory: Path, job_id: str) -> None:
    for name in CONTROLS:
        try:
            (directory / f"{job_id}.{name}").unlink()
        except FileNotFoundError:
            pass


def read_log(settings: Settings, job_id: str, limit: int = 200) -> list[str]:
    try:
        lines = (jobs_dir(settings) / f"{job_id}.log").read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    return [masking.redact(line) for line in lines[-limit:]]


def follow(settings: Settings, job_id: str, on_update: Callable[[dict], None], *,
           interval: float = 0.2, stop: Callable[[], bool] | None = None, timeout: float | None = None) -> dict:
    """Call `on_update(state)` whenever the state file changes, until the runner is done.

    Returns the last state. Done means: a final status, or the runner gone (interrupted).
    """
    directory = jobs_dir(settings)
    path = state_path(directory, job_id)
    last_stamp = None
    data: dict = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    grace = time.monotonic() + 10  # a just-spawned runner may not hold its lock yet
    while True:
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        alive = is_alive(directory, job_id)
        if stamp != last_stamp:
            last_stamp = stamp
            data = read_state(directory, job_id)
            data["alive"] = alive
            on_update(data)
        status = data.get("status")
        if status in FINAL and not alive:
            data["alive"] = False
            return data
        if not alive and time.monotonic() > grace:
            data = read_state(directory, job_id)
            data["alive"] = False
            on_update(data)
            return data
        if stop is not None and stop():
            return data
        if deadline is not None and time.monotonic() > deadline:
            return data
        time.sleep(interval)


# --------------------------------------------------------------------------- runner side


class JobHandle:
    """What a kind's executor gets: the state, a way to save it, the settings, a cancel token."""

    def __init__(self, directory: Path, job_id: str, data: dict, settings: Settings) -> None:
        self.directory = directory
        self.id = job_id
        self.data = data
        self.settings = settings
        self.cancel = CancelToken()
        self._lock = threading.RLock()
        self._last_save = 0.0
        self._stop_watch = threading.Event()
        self._watcher = threading.Thread(target=self._watch_cancel, daemon=True)
        self._watcher.start()

    @property
    def params(self) -> dict:
        return self.data["params"]

    @property
    def facts(self) -> dict:
        return self.data.setdefault("facts", {})

    def _watch_cancel(self) -> None:
        while not self._stop_watch.wait(0.25):
            if read_control(self.directory, self.id, "cancel") is not None and not self.cancel.cancelled:
                self.cancel.cancel("cancelled by the operator")

    def read_control(self, name: str) -> str | None:
        return read_control(self.directory, self.id, name)

    def save(self, *, throttle: float = 0.0) -> None:
        """Write the state file now (or, with `throttle`, at most that often)."""
        with self._lock:
            now = time.monotonic()
            if throttle and now - self._last_save < throttle:
                return
            self._last_save = now
            self.data["updated_at"] = now_iso()
            data = {k: v for k, v in self.data.items() if k != "alive"}
            write_json_atomic(state_path(self.directory, self.id), data)

    def close(self) -> None:
        self._stop_watch.set()


LOCK_PATIENCE_S = 2.0  # how long a runner waits out others' glances at its job's lock


def _hold_job_lock(directory: Path, job_id: str) -> int:
    """The job's lock, held for the runner's life. `is_alive` (the face that spawned this
    runner polls it until the runner holds the lock) takes the lock shared for an instant:
    a runner that met such a glance used to give up ("already has a runner") and the job
    stayed pending; it tries again for a while, so only a runner that really holds it refuses."""
    fd = os.open(directory / f"{job_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
    deadline = time.monotonic() + LOCK_PATIENCE_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN) or time.monotonic() > deadline:
                os.close(fd)
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise SafetyRefusal(f"job {job_id} already has a runner") from None
                raise
        time.sleep(0.005)


def settings_of(data: dict, live: Settings | None = None) -> Settings:
    """The job's settings, with `database.url` read again (the state file holds it without
    its password): from `live` (a runner in the process that created the job), the
    environment `spawn` handed over, or the config file; only a URL that is the stored one
    but for the password is taken."""
    source = data.get("config_source")
    settings = settings_from_dict(data.get("settings") or {}, source=Path(source) if source else None)
    stored = settings.database.url
    if not stored or without_password(stored) != stored:
        return settings  # no URL, or a job written before the password was left out: as it is
    offered = (live.database.url if live is not None else "", os.environ.get(URL_ENV, ""),
               _url_from_file(settings.source))
    url = next((u for u in offered if u and without_password(u) == stored), None)
    if url is None:
        raise OperationFailed(
            f"database.url of job {data.get('id')} ({stored}) is no longer in "
            f"{settings.source or 'any config file'}: the job never stores its password",
            hint="put database.url back in the config file, or start a new restore")
    settings.database.url = url
    return settings


def run_job(directory: Path, job_id: str, action: str = "run", *,
            install_signals: bool = False, live: Settings | None = None) -> dict:
    """Execute a job in this process (the runner's body; `run_inline` calls it with the
    caller's settings as `live`)."""
    fd = _hold_job_lock(directory, job_id)
    handle: JobHandle | None = None
    try:
        data = read_state(directory, job_id)
        data.pop("alive", None)
        try:
            settings = settings_of(data, live)
        except OperationFailed as exc:  # said in the state file, where the faces look
            data["status"] = "failed" if data.get("status") == "pending" else data.get("status")
            data["message"] = f"Could not {action} the job: {exc}"
            write_json_atomic(state_path(directory, job_id), data)
            raise
        handle = JobHandle(directory, job_id, data, settings)
        data["pid"] = os.getpid()
        data.setdefault("history", []).append({"action": action, "pid": os.getpid(), "at": now_iso()})
        if action != "run":
            clear_controls(directory, job_id)  # an old cancel must not stop a resume
        if install_signals:
            def on_term(signum, _frame):
                handle.cancel.cancel(f"runner received {signal.Signals(signum).name}")

            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGINT, on_term)
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        module_name, func_name = KINDS[data["kind"]].split(":")
        executor = getattr(importlib.import_module(module_name), func_name)
        executor(handle, action)
        return handle.data
    finally:
        if handle is not None:
            handle.close()
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fovea_tui.engine.infra.jobs",
                                     description="run a detached fovea-tui job (started by the CLI or the TUI)")
    parser.add_argument("action", choices=ACTIONS)
    parser.add_argument("job_id")
    parser.add_argument("--jobs-dir", required=True)
    args = parser.parse_args(argv)
    try:
        os.umask(0o077)
        data = run_job(Path(args.jobs_dir), args.job_id, args.action, install_signals=True)
    except Exception as exc:  # noqa: BLE001 - the log file is the only place this can go
        sys.stderr.write(masking.redact(f"{now_iso()} job {args.job_id}: {type(exc).__name__}: {exc}\n"))
        return 1
    return 0 if data.get("status") == "ok" else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
