"""Measuring on a noisy machine: paired calls, CPU time of the calling thread, rotating order.

What cascadeflow adds to a call is the difference between the instrumented call and the same
call made through the original, unpatched function, measured back to back in the same process
state. Pairs alternate which side runs first; rounds rotate the order of the variants; the
figure is the median of the per-round medians of the pair differences, given with the spread
of those round medians. The clock is the calling thread's CPU time (`time.thread_time_ns`):
the machine's load changes how long a call waits, not how much work it does on its thread.
Wall time is kept as a second column, and work moved to cascadeflow's background worker is
measured on the worker thread's own CPU clock.

While pairs run, the interpreter's GIL switch interval is raised to a second: background threads
(litellm's logging pool, cascadeflow's worker) then run when the measured thread waits between
pairs instead of preempting it mid-call, which halves the noise of a CPU-bound call's time. Their
own CPU time is not hidden: the worker's is reported per call.
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

Call = Callable[[], Any]
# a variant: entering it sets cascadeflow up and yields (the original call, the instrumented call)
Variant = Callable[[], contextlib.AbstractContextManager[tuple[Call, Call]]]
AsyncCall = Callable[[], Awaitable[Any]]
AsyncVariant = Callable[[], contextlib.AbstractContextManager[tuple[AsyncCall, AsyncCall]]]


@dataclass
class Stats:
    median_us: float
    p99_us: float
    n: int

    @classmethod
    def of(cls, samples_ns: list[int]) -> Stats:
        ordered = sorted(samples_ns)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return cls(statistics.median(ordered) / 1000.0, p99 / 1000.0, len(ordered))


@dataclass
class Added:
    """What a variant adds per call, against the original function, over all rounds."""

    cpu_us: list[float] = field(default_factory=list)  # per-round medians of pair differences
    wall_us: list[float] = field(default_factory=list)
    base_cpu_us: list[float] = field(default_factory=list)  # per-round medians of the baseline
    worker_cpu_ns: int = 0  # CPU time the background worker spent, over all rounds
    calls: int = 0

    def row(self) -> dict[str, Any]:
        quart = statistics.quantiles(self.cpu_us, n=4) if len(self.cpu_us) > 1 else [self.cpu_us[0]] * 3
        base = statistics.median(self.base_cpu_us)
        added = statistics.median(self.cpu_us)
        return {"added_us": added, "added_p25_us": quart[0], "added_p75_us": quart[2],
                "added_pct": 100.0 * added / base, "baseline_us": base,
                "wall_added_us": statistics.median(self.wall_us),
                "worker_us": self.worker_cpu_ns / max(self.calls, 1) / 1000.0,
                "rounds": len(self.cpu_us), "n": self.calls}


def thread_cpu_ns(thread: threading.Thread | None) -> int:
    """CPU time another thread of this process has used (0 when it does not exist)."""
    if thread is None or thread.ident is None or not thread.is_alive():
        return 0
    try:
        return time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
    except (OSError, AttributeError):
        return 0


def _order(names: list[str], r: int) -> list[str]:
    k = r % len(names)
    return names[k:] + names[:k]


class _Round:
    """One variant's pairs in one round.

    The first call of a pair runs right after the worker wrote the pair before, and pays for it
    in cache misses whichever side it is; alternating the order and averaging each two
    consecutive pairs (one of each order) cancels that. The round's figure is the median of
    those balanced differences.
    """

    def __init__(self) -> None:
        self.cpu: list[int] = []
        self.wall: list[int] = []
        self.base: list[int] = []

    def add(self, instrumented_first: bool, c: tuple[int, int, int], w: tuple[int, int, int]) -> None:
        one, two = c[1] - c[0], c[2] - c[1]
        wall_one, wall_two = w[1] - w[0], w[2] - w[1]
        if instrumented_first:
            self.cpu.append(one - two)
            self.wall.append(wall_one - wall_two)
            self.base.append(two)
        else:
            self.cpu.append(two - one)
            self.wall.append(wall_two - wall_one)
            self.base.append(one)

    def into(self, added: Added, pairs: int, worker_ns: int) -> None:
        added.cpu_us.append(_balanced(self.cpu) / 1000.0)
        added.wall_us.append(_balanced(self.wall) / 1000.0)
        added.base_cpu_us.append(statistics.median(self.base) / 1000.0)
        added.worker_cpu_ns += worker_ns
        added.calls += pairs


def _balanced(diffs: list[int]) -> float:
    """Median of the means of consecutive pairs of differences (orders alternate)."""
    means = [(a + b) / 2 for a, b in zip(diffs[0::2], diffs[1::2], strict=False)]
    return statistics.median(means or diffs)


def _clocks() -> tuple[int, int]:
    return time.thread_time_ns(), time.perf_counter_ns()


@contextlib.contextmanager
def long_switch_interval(seconds: float = 1.0) -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def paired(variants: dict[str, Variant], rounds: int, pairs: int,
           worker: Callable[[], Sequence[threading.Thread | None]] = lambda: (),
           settle: Callable[[], Any] = lambda: None, warmup: int = 5) -> dict[str, Added]:
    """`pairs` back-to-back (original, instrumented) pairs per variant per round.

    `settle()` runs after every pair, outside the clocks: it waits for the background worker, so
    a pair never pays for the records of the pair before it. `worker()` is the worker threads
    (records, telemetry), whose CPU time is added up per variant.
    """
    out = {name: Added() for name in variants}
    for r in range(rounds):
        for name in _order(list(variants), r):
            with variants[name]() as (original, instrumented), long_switch_interval():
                for _ in range(warmup):
                    original()
                    instrumented()
                settle()
                one = _Round()
                spent = 0
                for i in range(pairs):
                    first, second = (instrumented, original) if i % 2 else (original, instrumented)
                    c0, w0 = _clocks()
                    first()
                    c1, w1 = _clocks()
                    second()
                    c2, w2 = _clocks()
                    one.add(first is instrumented, (c0, c1, c2), (w0, w1, w2))
                    threads = worker()
                    before = sum(thread_cpu_ns(thread) for thread in threads)
                    settle()
                    spent += sum(thread_cpu_ns(thread) for thread in threads) - before
            one.into(out[name], pairs, spent)
    return out


async def paired_async(variants: dict[str, AsyncVariant], rounds: int, pairs: int,
                       settle: Callable[[], Any] = lambda: None, warmup: int = 5) -> dict[str, Added]:
    """`paired` for coroutines, inside one event loop (`asyncio.run`)."""
    out = {name: Added() for name in variants}
    for r in range(rounds):
        for name in _order(list(variants), r):
            with variants[name]() as (original, instrumented), long_switch_interval():
                for _ in range(warmup):
                    await original()
                    await instrumented()
                settle()
                one = _Round()
                for i in range(pairs):
                    first, second = (instrumented, original) if i % 2 else (original, instrumented)
                    c0, w0 = _clocks()
                    await first()
                    c1, w1 = _clocks()
                    await second()
                    c2, w2 = _clocks()
                    one.add(first is instrumented, (c0, c1, c2), (w0, w1, w2))
                    settle()
            one.into(out[name], pairs, 0)
    return out


def timed(call: Callable[[], Any], n: int) -> Stats:
    """Per-call CPU time of the calling thread, `n` calls."""
    samples = []
    for _ in range(n):
        t0 = time.thread_time_ns()
        call()
        samples.append(time.thread_time_ns() - t0)
    return Stats.of(samples)


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
