"""Progress on stderr when it is not a terminal (cron mails it): a few lines, not one per event."""

from __future__ import annotations

from fovea_tui.cli.progress import StderrProgress
from fovea_tui.engine.progress import ProgressEvent


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_line_mode_prints_phase_starts_ends_and_one_line_per_interval(capsys):
    clock = Clock()
    progress = StderrProgress(interval=5.0, clock=clock)
    assert not progress.interactive  # pytest's stderr is not a terminal
    progress(ProgressEvent("scan", 1, None, "files", message="1 to transfer"))
    progress(ProgressEvent("scan", 3000, 3000, "files", message="3000 to transfer"))
    total = 30 * 1024 * 1024
    for i in range(301):  # 30 s of uploading, an event every 0.1 s, each with a new message
        clock.t += 0.1
        progress(ProgressEvent("upload", i * total // 300, total, "bytes", message=f"{i}/300 files"))
    progress(ProgressEvent("upload", total, total, "bytes", message="300/300 files"))  # the end, again
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "scan: 1 file 1 to transfer"
    assert lines[1] == "scan: 3000/3000 files 3000 to transfer"
    upload = [line for line in lines if line.startswith("upload:")]
    assert upload[0].startswith("upload: 0 Bytes of 30.0 MiB")
    assert upload[-1] == "upload: 30.0 MiB of 30.0 MiB 300/300 files"
    assert 6 <= len(upload) <= 9  # start, one per 5 s, the end once


def test_an_empty_phase_finishes_once(capsys):
    progress = StderrProgress(clock=Clock())
    for _ in range(2):
        progress(ProgressEvent("upload", 0, 0, "bytes", message="0/0 files"))
    assert capsys.readouterr().err.splitlines() == ["upload: 0 Bytes 0/0 files"]


def test_stop_ends_the_live_bar_before_a_prompt_and_a_later_event_starts_a_new_one():
    """The restore's "Type the database name" prompt stops the bar first: a live bar still
    refreshing would redraw itself under the prompt, and the typed name would land after it."""
    import io

    from rich.console import Console

    progress = StderrProgress(enabled=True)
    progress.interactive = True
    progress.console = Console(file=io.StringIO(), force_terminal=True, width=80)
    progress(ProgressEvent("safety_dump", 10, 100, "bytes"))
    live = progress._progress.live
    assert live.is_started
    progress.stop()
    assert not live.is_started  # nothing redraws while the operator types
    progress(ProgressEvent("restore", 5, 100, "bytes"))
    assert progress._progress.live.is_started and list(progress._tasks) == ["restore"]
    progress.stop()
