"""How fovea-tui says an age, on screen and on the command line: one place, so "16 days ago"
never reads "a month ago".

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


def plural(n: int, word: str, many: str | None = None) -> str:
    """"1 dump", "2 dumps", "1,200 files": the count and its noun, agreeing."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


__all__ = ["ago", "duration", "plural"]
