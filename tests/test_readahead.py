"""Pre-flight's read of the dump begun ahead, in a child of the CLI (engine/backups/readahead.py).
Its answer may only stand in for pre-flight's own read of the very same bytes; anything else
(the file changed, the child killed, nobody taking it, a cancel) must leave pre-flight reading
the file itself, and no child reading on behind anyone's back.

Each case runs in a fresh interpreter: a process with threads (this test process) may not fork."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from test_preflight_read import SQL, VIDEOS, incompressible_dump

REPO = Path(__file__).resolve().parent.parent

# Each script gets the dump's path as argv[1]; its last line of output is a JSON answer.
PRELUDE = """
import json, os, signal, sys, time
from pathlib import Path
from fovea_tui.engine.backups import readahead
from fovea_tui.engine.backups.dumpscan import verify_and_scan
path = Path(sys.argv[1])
"""


def run(script: str, path: Path, timeout: float = 120) -> dict:
    proc = subprocess.run([sys.executable, "-c", PRELUDE + script, str(path)], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_answer_taken_is_the_read_of_the_same_file(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    size = incompressible_dump(path, 60_000)
    got = run("""
assert readahead.begin(path)
seen = []
read = readahead.take(path, on_progress=seen.append)
ahead, scan = verify_and_scan(path, None, read=read)
here, scan_here = verify_and_scan(path, None)
print(json.dumps({"taken": read is not None, "ahead": [ahead.status, ahead.sha256, ahead.size, ahead.tables,
                  ahead.uncompressed_size], "here": [here.status, here.sha256, here.size, here.tables,
                  here.uncompressed_size], "videos": scan.videos, "videos_here": scan_here.videos, "seen": seen}))
""", path)
    assert got["taken"]
    assert got["ahead"] == got["here"] and got["ahead"][0] == "verified" and got["ahead"][2] == size
    assert got["videos"] == got["videos_here"] == [list(v) for v in VIDEOS]
    assert got["seen"] == sorted(got["seen"]) and all(0 < d <= size for d in got["seen"])


def test_a_file_rewritten_in_place_with_its_size_and_mtime_kept_is_read_again(tmp_path):
    """The lying-cache case: same size, same mtime, other bytes. The child may have read the
    old bytes; the answer is not taken, and pre-flight's own read finds the dump corrupt."""
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    incompressible_dump(path, 20_000)
    got = run("""
st = path.stat()
assert readahead.begin(path)
time.sleep(0.3)
data = bytearray(path.read_bytes())
data[len(data) // 2] ^= 0xFF
with open(path, "r+b") as fh:
    fh.write(data)
os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
read = readahead.take(path)
result, _ = verify_and_scan(path, None, read=read)
print(json.dumps({"taken": read is not None, "status": result.status}))
""", path)
    assert got == {"taken": False, "status": "corrupt"}


def test_another_file_than_the_one_read_ahead_gets_no_answer(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    other = tmp_path / "fovea-20261102T020000Z.sql.gz"
    incompressible_dump(path, 2_000)
    other.write_bytes(__import__("gzip").compress(SQL))
    got = run(f"""
assert readahead.begin(path)
read = readahead.take(Path({str(other)!r}))
print(json.dumps({{"taken": read is not None, "again": readahead.take(path) is not None}}))
""", path)
    assert got == {"taken": False, "again": False}  # and the one read ahead is gone with it


def test_a_killed_reader_gives_no_answer_and_preflight_reads_itself(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    incompressible_dump(path, 400_000)
    got = run("""
assert readahead.begin(path)
pid = readahead._pending.pid
time.sleep(0.05)
os.kill(pid, signal.SIGKILL)
read = readahead.take(path)
result, scan = verify_and_scan(path, None, read=read)
print(json.dumps({"taken": read is not None, "status": result.status, "videos": len(scan.videos)}))
""", path)
    assert got == {"taken": False, "status": "verified", "videos": len(VIDEOS)}


def test_a_read_nobody_takes_ends_and_is_collected(tmp_path):
    """The restore refused before its runner started (or the runner died before pre-flight):
    the CLI releases its end and the child stops at its next progress frame."""
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    incompressible_dump(path, 1_500_000)  # seconds of reading
    got = run("""
assert readahead.begin(path)
pid = readahead._pending.pid
time.sleep(0.1)
t0 = time.monotonic()
readahead.release()
while time.monotonic() - t0 < 10:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        break
    time.sleep(0.01)
else:
    raise SystemExit("the child read on")
print(json.dumps({"pid": pid, "ended_after_s": time.monotonic() - t0}))
""", path)
    assert got["ended_after_s"] < 2 and not alive(got["pid"])


def test_a_cancel_while_waiting_for_the_answer_cancels(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    incompressible_dump(path, 1_500_000)
    got = run("""
import threading
from fovea_tui.engine.progress import CancelToken
from fovea_tui.errors import Cancelled
assert readahead.begin(path)
pid = readahead._pending.pid
cancel = CancelToken()
threading.Timer(0.2, cancel.cancel).start()
t0 = time.monotonic()
try:
    readahead.take(path, cancel=cancel)
    outcome = "answered"
except Cancelled:
    outcome = "cancelled"
waited = time.monotonic() - t0
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    if os.waitpid(pid, os.WNOHANG) != (0, 0):
        break
    time.sleep(0.01)
else:
    raise SystemExit("the child read on after the cancel")
print(json.dumps({"outcome": outcome, "waited": waited}))
""", path)
    assert got["outcome"] == "cancelled" and got["waited"] < 2


def test_a_process_with_threads_does_not_fork_a_reader(tmp_path):
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    path.write_bytes(__import__("gzip").compress(SQL))
    got = run("""
import threading
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
begun = readahead.begin(path)
stop.set()
print(json.dumps({"begun": begun, "taken": readahead.take(path) is not None}))
""", path)
    assert got == {"begun": False, "taken": False}


def test_the_reader_holds_none_of_the_callers_descriptors(tmp_path):
    """A reader still running must not keep the CLI's terminal or pipes open (whoever reads the
    CLI's output sees its end when the CLI ends), nor any other file of the CLI's."""
    path = tmp_path / "fovea-20261101T020000Z.sql.gz"
    incompressible_dump(path, 1_500_000)  # seconds of reading
    log = open(tmp_path / "caller.log", "w")  # noqa: SIM115 - open across the caller's life
    proc = subprocess.Popen([sys.executable, "-c", PRELUDE + """
assert readahead.begin(path)
print(readahead._pending.pid, flush=True)
time.sleep(3)
""", str(path)], stdout=subprocess.PIPE, stderr=log, cwd=REPO)
    try:
        pid = int(proc.stdout.readline())
        deadline = time.monotonic() + 5  # the child lets go of them first thing after the fork

        def held() -> tuple[dict, list, list]:
            try:
                fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
            except FileNotFoundError:  # a descriptor closed between the listing and its readlink
                return {}, [], []
            others = sorted(target for fd, target in fds.items() if fd > 2)
            return fds, others, [t for t in others if t.startswith("pipe:")]

        while True:  # seen while it is letting go, the listing is a moment's: look until it has
            fds, others, pipes = held()
            settled = fds.get(2) == "/dev/null" and len(pipes) == 1 and set(others) - set(pipes) <= {str(path)}
            if settled or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert [fds.get(fd) for fd in (0, 1, 2)] == ["/dev/null"] * 3, fds
        assert len(pipes) == 1 and set(others) - set(pipes) <= {str(path)}, fds  # the answer's pipe, the dump
    finally:
        proc.kill()
        proc.communicate(timeout=10)
        log.close()
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)  # nobody reads its answer any more: it ends at its next frame
