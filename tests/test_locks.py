"""The general lock: flock on a file in state_dir, naming its holder; released when the
holder dies, however it dies."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest

from fovea_tui.config import settings_from_dict
from fovea_tui.engine.infra import audit
from fovea_tui.engine.infra.locks import acquire, holder
from fovea_tui.errors import EXIT_REFUSED, LockHeld


@pytest.fixture
def settings(tmp_path):
    return settings_from_dict({"backups": {"dir": str(tmp_path / "backups")}})


def test_holder_is_named_and_state_dir_is_private(settings):
    with acquire(settings, "backups", purpose="prune") as lock:
        data = json.loads(lock.path.read_text())
        assert data["pid"] == os.getpid() and data["purpose"] == "prune" and data["started_at"]
        assert stat.S_IMODE(settings.state_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(lock.path.stat().st_mode) == 0o600
        assert holder(settings, "backups").purpose == "prune"
    assert holder(settings, "backups") is None


def test_reentrant_in_a_thread_refused_in_another(settings):
    errors = []
    with acquire(settings, "backups", purpose="restore"):
        with acquire(settings, "backups", purpose="pre-restore backup") as inner:
            assert inner.info.purpose == "restore"

        def other():
            try:
                with acquire(settings, "backups", purpose="backup"):
                    pass
            except LockHeld as exc:
                errors.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert len(errors) == 1 and errors[0].exit_code == EXIT_REFUSED
    assert "restore" in str(errors[0]) and f"pid {os.getpid()}" in str(errors[0])
    with acquire(settings, "backups", purpose="backup"):  # free again
        pass


def test_lock_of_a_killed_process_is_released(settings, tmp_path):
    code = (
        "import sys, time\n"
        "from fovea_tui.config import settings_from_dict\n"
        "from fovea_tui.engine.infra.locks import acquire\n"
        f"s = settings_from_dict({{'backups': {{'dir': {str(settings.backups_dir)!r}}}}})\n"
        "with acquire(s, 'backups', purpose='sync'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(LockHeld) as info:
        with acquire(settings, "backups", purpose="backup"):
            pass
    assert "sync" in str(info.value) and f"pid {proc.pid}" in str(info.value)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with acquire(settings, "backups", purpose="backup", wait=5):
        pass


def test_wait_gives_up_after_the_timeout(settings):
    def hold():
        with acquire(settings, "volume", purpose="sync"):
            time.sleep(1.0)

    t = threading.Thread(target=hold)
    t.start()
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(LockHeld):
        with acquire(settings, "volume", purpose="prune", wait=0.3):
            pass
    assert 0.25 < time.monotonic() - started < 0.9
    t.join()
    with acquire(settings, "volume", purpose="prune", wait=2):
        pass


def test_audit_log_lines(settings):
    audit.record(settings, "backup", "ok", {"name": "fovea-x.sql.gz"})
    audit.record(settings, "prune", "refused", {"reason": "no verified dump"})
    entries = audit.read(settings)
    assert [e["action"] for e in entries] == ["backup", "prune"]
    assert audit.read(settings, action="prune")[0]["outcome"] == "refused"
    assert stat.S_IMODE(audit.audit_path(settings).stat().st_mode) == 0o600
