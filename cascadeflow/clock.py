"""One clock read per event: monotonic nanoseconds on the hot path, wall time when recorded.

Latency is a difference of monotonic readings; spans and trace entries want wall-clock time.
Reading both clocks at every event costs twice, so events read `time.perf_counter_ns()` only and
records convert it with an offset taken once and refreshed every minute (a wall clock that
NTP moves is followed within a minute).
"""

from __future__ import annotations

import time

REFRESH_NS = 60_000_000_000
_offset = time.time_ns() - time.perf_counter_ns()
_taken = time.perf_counter_ns()


def wall_ns(monotonic_ns: int) -> int:
    """Wall-clock nanoseconds since the epoch of a `time.perf_counter_ns()` reading."""
    global _offset, _taken
    now = time.perf_counter_ns()
    if now - _taken > REFRESH_NS:
        _offset, _taken = time.time_ns() - time.perf_counter_ns(), now
    return monotonic_ns + _offset
