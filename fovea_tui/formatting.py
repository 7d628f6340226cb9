"""How fovea-tui says an age, a duration, a size or a rate, on screen and on the command
line: one place, so "16 days ago" never reads "a month ago".

humanize rounds days to the nearest month from about two weeks on, which makes a backup
16 days old look a month old. Under a day these are humanize's words ("now", "7 hours
ago"); from one day to 60 they count days; then whole months, then years.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import humanize

DAYS_UNTIL_MONTHS = 60
MONTHS_UNTIL_YEARS = 24


def duration(delta: timedelta) -> str:
    """An amount of time without "ago": "7 hours", "16 days", "3 months", "2 years"."""
    delta = abs(delta)
    days = delta.days
    if days < 1:
        return humanize.naturaldelta(delta)
    if days == 1:
        return "1 day"
    if days < DAYS_UNTIL_MONTHS:
        return f"{days} days"
    months = int(days // 30.44)
    if months < MONTHS_UNTIL_YEARS:
        return f"{months} months"
    return f"{int(days // 365.25)} years"


def clock(seconds: float) -> str:
    """Elapsed time on a running job: "04:07", "1:02:03"."""
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def eta(seconds: float) -> str:
    """A compact time left: "42s", "3m07s", "1h05m"."""
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def rate(bytes_per_s: float) -> str:
    """A transfer rate: "512 B/s", "3.2 MiB/s"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if bytes_per_s < 1024 or unit == "GiB":
            return f"{bytes_per_s:.1f} {unit}/s" if unit != "B" else f"{bytes_per_s:.0f} B/s"
        bytes_per_s /= 1024
    return ""  # pragma: no cover


def step_time(seconds: float | None) -> str:
    """How long one step took: "12.3 s", "1.5 min"; "" when not measured."""
    if seconds is None:
        return ""
    return f"{seconds:.1f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def human_duration(seconds: float | None) -> str:
    """A measured time in one unit: "42.0 s", "7 min", "1.5 h", "2.3 days"; "not measured"."""
    if seconds is None:
        return "not measured"
    seconds = float(seconds)
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def ago(when: datetime | None, now: datetime) -> str:
    """"3 hours ago", "16 days ago", "4 months ago"; "never" without a time; "in 2 days" ahead."""
    if when is None:
        return "never"
    delta = now - when
    if delta < timedelta(0):
        return f"in {duration(delta)}" if -delta >= timedelta(seconds=1) else "now"
    if delta.days < 1:
        return humanize.naturaltime(delta)
    return f"{duration(delta)} ago"


def size(n: int | float | None) -> str:
    """Bytes in binary units ("11.3 MiB"); "?" when unknown."""
    return humanize.naturalsize(n, binary=True) if isinstance(n, (int, float)) else "?"


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 dump", "2 dumps", "1,200 files", "3 summaries": the count and its noun, agreeing."""
    if many is None:
        many = word[:-1] + "ies" if word.endswith("y") and word[-2:-1] not in "aeiou" else word + "s"
    return f"{n:,} {word if n == 1 else many}"


__all__ = ["ago", "duration", "size", "plural"]
