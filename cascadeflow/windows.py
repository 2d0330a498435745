"""Time windows of budgets and rate limits: calendar (`hour`, `day`, `month`) or rolling
(`rolling:24h`, `rolling:30m`, `rolling:7d`).

A windowed figure (spend, tokens) is kept in buckets so that every process and machine adds to
the same few counters. A calendar window is one bucket, named by its start in the configured time
zone; it resets when the next one starts. A rolling window is the sum of the buckets that overlap
it: `BUCKETS` buckets of `length / BUCKETS` seconds each, plus the one the window's start falls
into. That last one is counted whole, so a rolling figure errs by at most one bucket (1/60 of the
window) and always on the side of caution: spend that left the window a moment ago may still
count, spend inside it never fails to.
"""

from __future__ import annotations

import calendar
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

BUCKETS = 60
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_AGO = {**_UNITS, "w": 7 * 86400}
_ROLLING = re.compile(r"rolling:(\d+)([smhd])")
CALENDAR = ("hour", "day", "month")


@dataclass(frozen=True)
class Window:
    text: str  # as configured: "day", "rolling:24h"
    calendar: str | None  # "hour" | "day" | "month" for a calendar window
    seconds: int  # a rolling window's length (a calendar window's longest)
    zone: tzinfo

    @property
    def bucket_s(self) -> int:
        """A rolling window's bucket length (at least a second)."""
        return max(1, self.seconds // BUCKETS)

    def buckets(self, now: float) -> tuple[int, ...]:
        """The buckets that hold the window ending at `now`, newest first (epoch seconds of each
        bucket's start)."""
        if self.calendar is not None:
            return (self.start(now),)
        size = self.bucket_s
        newest = int(now // size) * size
        oldest = int((now - self.seconds) // size) * size
        return tuple(range(newest, oldest - 1, -size))

    def bucket(self, now: float) -> int:
        """The bucket that spend made at `now` goes into."""
        return self.buckets(now)[0]

    def start(self, now: float) -> int:
        """When the window holding `now` began (a rolling window: `now` minus its length).

        A day or a month begins at the first midnight that reads 00:00 (`fold=0`): in a repeated
        hour after the clocks fall back across midnight (`now` reads with `fold=1`), replacing
        the hour alone would keep the fold and start a second day an hour after the first, which
        resets a daily budget for that hour. An hour keeps its fold: a repeated hour is an hour
        of its own."""
        if self.calendar is None:
            return int(now - self.seconds)
        local = datetime.fromtimestamp(now, self.zone)
        if self.calendar == "hour":
            begun = local.replace(minute=0, second=0, microsecond=0)
        elif self.calendar == "day":
            begun = local.replace(hour=0, minute=0, second=0, microsecond=0, fold=0)
        else:
            begun = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0, fold=0)
        return int(begun.timestamp())

    def end(self, now: float) -> int:
        """When the bucket holding `now` stops counting: what is kept past it can be purged."""
        if self.calendar is None:
            return self.bucket(now) + self.bucket_s + self.seconds
        local = datetime.fromtimestamp(self.start(now), self.zone)
        if self.calendar == "hour":
            following = local + timedelta(hours=1)
        elif self.calendar == "day":
            following = (local + timedelta(days=1, hours=2)).replace(hour=0, fold=0)  # DST-safe
        else:
            days = calendar.monthrange(local.year, local.month)[1]
            following = (local + timedelta(days=days, hours=2)).replace(day=1, hour=0, fold=0)
        return int(following.timestamp())

    def label(self, now: float) -> str:
        """The window holding `now`, for people: `2026-11-22`, `2026-11`, `last 24h`."""
        if self.calendar is None:
            return f"last {self.text.removeprefix('rolling:')}"
        local = datetime.fromtimestamp(self.start(now), self.zone)
        return local.strftime({"hour": "%Y-%m-%dT%H", "day": "%Y-%m-%d", "month": "%Y-%m"}[self.calendar])


def parse(text: str, zone: str = "UTC") -> Window:
    """`day`, `month`, `hour` or `rolling:<n><s|m|h|d>`; ValueError says what is accepted."""
    tz = time_zone(zone)
    if text in CALENDAR:
        longest = {"hour": 3600, "day": 90000, "month": 31 * 86400 + 3600}[text]
        return Window(text, text, longest, tz)
    match = _ROLLING.fullmatch(text)
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"expected one of {list(CALENDAR)} or rolling:<n><s|m|h|d> "
                         f"such as rolling:24h")
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    if seconds > 366 * 86400:
        raise ValueError("a rolling window is at most a year (rolling:366d)")
    return Window(text, None, seconds, tz)


def time_zone(name: str) -> tzinfo:
    """An IANA time zone (`Europe/Berlin`) or `UTC`; ValueError for an unknown name. (UTC needs
    no time zone database, which slim containers lack.)"""
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as UTC or "
                         f"Europe/Berlin)") from exc


def since(text: str, now: float) -> float:
    """`--since 1h` / `30m` / `1.5d` / `2w` ago, `2026-11-01` (UTC unless it names a zone) or an
    epoch -> epoch seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhdw])", text.strip())
    if match:
        return now - float(match.group(1)) * _AGO[match.group(2)]
    try:
        value = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(value):
            return value
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("expected a duration ago (30m, 24h, 7d, 2w), an ISO date such as "
                         "2026-11-20 or 2026-11-20T08:00 (UTC), or an epoch") from None
    if parsed.tzinfo is None:
        return float(calendar.timegm(parsed.timetuple()))
    return parsed.timestamp()
