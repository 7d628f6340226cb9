"""A running client tool as a byte stream, whether it runs on this host or in a container.

`ToolProcess` is what `database.py` hands out for pg_dump (read its stdout) and psql
(write its stdin). Two implementations: a local subprocess, and a `docker exec` whose
socket carries stdin up and multiplexed stdout/stderr frames down.
"""

from __future__ import annotations

import collections
import os
import socket
import struct
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence

from fovea_tui import masking

STDERR_TAIL_BYTES = 64 * 1024
EXEC_LOST = 137  # the exit code reported when the container (and its exec) vanished mid-run
EXIT_STATE_WAIT_S = 60  # how long a docker exec's state may say "running" after its stream ended
_STDOUT, _STDERR = 1, 2


def condense(stderr: str, limit: int = 5) -> str:
    """The last few meaningful lines of a tool's stderr, redacted, for a one-line error."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    picked = [ln for ln in lines if ("ERROR" in ln or "FATAL" in ln or "error" in ln)] or lines
    text = " | ".join(picked[-limit:])
    return masking.redact(text)[:600] or "no error output"


class ToolProcess(ABC):
    """Common surface: read(), write(), close_stdin(), wait() -> exit code, stderr text."""

    description: str
    _stdout_tail: collections.deque[bytes]

    @abstractmethod
    def read(self, size: int = 1 << 20) -> bytes:
        """Up to `size` bytes of stdout; b"" at the end."""

    @abstractmethod
    def write(self, data: bytes) -> None:
        """Send bytes to the tool's stdin."""

    @abstractmethod
    def close_stdin(self) -> None:
        """End the tool's stdin (it sees EOF)."""

    @abstractmethod
    def drain_stdout(self) -> None:
        """Collect stdout in the background so the tool never blocks on a full pipe."""

    @abstractmethod
    def wait(self) -> int:
        """Wait for the tool to end; its exit code."""

    @abstractmethod
    def kill(self) -> None:
        """Stop the tool now."""

    @property
    @abstractmethod
    def stderr_text(self) -> str:
        """The tail of the tool's stderr."""

    def output_text(self) -> str:
        """stdout collected by `drain_stdout` (psql's messages during a restore)."""
        return b"".join(self._stdout_tail).decode("utf-8", "replace")


class LocalProcess(ToolProcess):
    """A client tool on this host; secrets travel in `env`, never in `argv`."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], *, stdin: bool = False) -> None:
        self.description = os.path.basename(argv[0])
        full_env = {**os.environ, **env}
        self._proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            bufsize=0,
        )
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self._stderr_thread = threading.Thread(target=self._collect_stderr, daemon=True)
        self._stderr_thread.start()
        self._stdout_thread: threading.Thread | None = None
        self._stdout_tail: collections.deque[bytes] = collections.deque(maxlen=256)

    def _collect_stderr(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        for chunk in iter(lambda: stderr.read(8192), b""):
            self._stderr.append(chunk)
            self._stderr_size += len(chunk)
            while self._stderr_size > STDERR_TAIL_BYTES and len(self._stderr) > 1:
                self._stderr_size -= len(self._stderr.popleft())

    def drain_stdout(self) -> None:
        """Read stdout in the background (psql during a restore) so the tool never blocks."""

        def run() -> None:
            stdout = self._proc.stdout
            assert stdout is not None
            for chunk in iter(lambda: stdout.read(8192), b""):
                self._stdout_tail.append(chunk)

        self._stdout_thread = threading.Thread(target=run, daemon=True)
        self._stdout_thread.start()

    def read(self, size: int = 1 << 20) -> bytes:
        assert self._proc.stdout is not None
        return self._proc.stdout.read(size)

    def write(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)

    def close_stdin(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass

    def wait(self) -> int:
        self.close_stdin()
        code = self._proc.wait()
        self._stderr_thread.join(timeout=5)
        if self._stdout_thread:
            self._stdout_thread.join(timeout=5)
        return code

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()

    @property
    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")


class DockerExecProcess(ToolProcess):
    """`docker exec -i` through the SDK: stdin streamed up, frames demultiplexed down."""

    def __init__(self, api, container_id: str, argv: Sequence[str], *, stdin: bool = False,
                 env: dict[str, str] | None = None, user: str = "") -> None:
        self.description = f"{argv[0]} in container {container_id[:12]}"
        self.container_id = container_id
        self._api = api
        self._exec_id = api.exec_create(
            container_id, list(argv), stdin=stdin, stdout=True, stderr=True, tty=False,
            environment=env or None, user=user,
        )["Id"]
        self._sock_io = api.exec_start(self._exec_id, socket=True, demux=False)
        self._sock: socket.socket = getattr(self._sock_io, "_sock", self._sock_io)
        # The socket comes with the client's request timeout (10 s): a tool may rightly stay
        # silent and stop reading for longer (psql on one slow statement of a dump), so the
        # stream blocks for as long as the tool runs; its end is the tool's exit.
        self._sock.settimeout(None)
        self._pending = b""  # stdout bytes of a frame not yet returned
        self._frame_left = 0
        self._frame_type = 0
        self._eof = False
        self._stderr: collections.deque[bytes] = collections.deque()
        self._stderr_size = 0
        self._lock = threading.Lock()
        self._stdout_thread: threading.Thread | None = None
        self._stdout_tail: collections.deque[bytes] = collections.deque(maxlen=256)
        if not stdin:
            self.close_stdin()

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(n - len(buf))
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    def _keep_stderr(self, data: bytes) -> None:
        self._stderr.append(data)
        self._stderr_size += len(data)
        while self._stderr_size > STDERR_TAIL_BYTES and len(self._stderr) > 1:
            self._stderr_size -= len(self._stderr.popleft())

    def read(self, size: int = 1 << 20) -> bytes:
        """Up to `size` bytes of stdout; b"" at the end. stderr frames are kept aside."""
        with self._lock:
            while not self._eof:
                if self._frame_left == 0:
                    header = self._recv_exact(8)
                    if len(header) < 8:
                        self._eof = True
                        break
                    self._frame_type = header[0]
                    self._frame_left = struct.unpack(">I", header[4:])[0]
                    continue
                chunk = self._sock.recv(min(self._frame_left, size if self._frame_type == _STDOUT else 65536))
                if not chunk:
                    self._eof = True
                    break
                self._frame_left -= len(chunk)
                if self._frame_type == _STDERR:
                    self._keep_stderr(chunk)
                    continue
                return chunk
            return b""

    def drain_stdout(self) -> None:
        def run() -> None:
            for chunk in iter(self.read, b""):
                self._stdout_tail.append(chunk)

        self._stdout_thread = threading.Thread(target=run, daemon=True)
        self._stdout_thread.start()

    def write(self, data: bytes) -> None:
        self._sock.sendall(data)

    def close_stdin(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def wait(self) -> int:
        self.close_stdin()
        if self._stdout_thread:
            self._stdout_thread.join()
        else:
            while self.read(1 << 16):
                pass
        try:
            self._sock_io.close()
        except OSError:
            pass
        # Docker ends the stream once the tool has exited; its state may lag behind on a busy
        # engine, so wait for it rather than invent an exit code while it still says running.
        deadline = time.monotonic() + EXIT_STATE_WAIT_S
        try:
            while True:
                info = self._api.exec_inspect(self._exec_id)
                if not info.get("Running"):
                    return int(info.get("ExitCode") or 0)
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        except Exception:  # noqa: BLE001 - docker's APIError/NotFound: the exec went with its container
            self._keep_stderr(f"\nerror: the container stopped while {self.description} ran "
                              "(its exit status is lost)\n".encode())
            return EXEC_LOST
        self._keep_stderr(f"\nerror: {self.description} still runs {EXIT_STATE_WAIT_S} s after its output "
                          "ended (its exit status is unknown)\n".encode())
        return EXEC_LOST

    def kill(self) -> None:
        """Closing the socket ends the exec's streams; the tool then sees EOF/EPIPE."""
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    @property
    def stderr_text(self) -> str:
        return b"".join(self._stderr).decode("utf-8", "replace")

