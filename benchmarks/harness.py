"""Interleaved timing: every figure is compared with a baseline measured in the same run.

Variants run in alternating order in short batches (baseline, candidate, candidate, baseline,
...), so drift and noise on a busy machine hit every variant alike. Per-call times are kept and
summarised as median and p99.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

Setup = Callable[[], contextlib.AbstractContextManager[Any]]


@dataclass
class Stats:
    median_us: float
    p99_us: float
    n: int
    round_medians_us: list[float] | None = None

    @classmethod
    def of(cls, samples_ns: list[int], rounds: list[list[int]] | None = None) -> Stats:
        ordered = sorted(samples_ns)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        per_round = [statistics.median(r) / 1000.0 for r in rounds] if rounds else None
        return cls(statistics.median(ordered) / 1000.0, p99 / 1000.0, len(ordered), per_round)

    def paired_added_us(self, baseline: Stats) -> float:
        """Median over rounds of (this round's median - the baseline's median in that round).

        Pairing by round cancels the slow drifts of a shared machine that an unpaired
        difference of two overall medians would pick up.
        """
        if not self.round_medians_us or not baseline.round_medians_us:
            return self.median_us - baseline.median_us
        diffs = [a - b for a, b in zip(self.round_medians_us, baseline.round_medians_us, strict=True)]
        return statistics.median(diffs)


def _schedule(names: list[str], rounds: int) -> Iterator[tuple[str, bool]]:
    """(variant, is_warmup): one warm-up batch each, then `rounds` passes in alternating order."""
    for name in names:
        yield name, True
    for r in range(rounds):
        for name in names if r % 2 == 0 else list(reversed(names)):
            yield name, False


def _stats(per_round: dict[str, list[list[int]]]) -> dict[str, Stats]:
    return {name: Stats.of([x for batch in batches for x in batch], batches)
            for name, batches in per_round.items()}


def interleaved(variants: dict[str, tuple[Setup, Callable[[], Any]]], rounds: int, batch: int,
                warmup: int = 3) -> dict[str, Stats]:
    """Time each variant's call `rounds * batch` times, alternating the variant order per round."""
    per_round: dict[str, list[list[int]]] = {name: [] for name in variants}
    for name, warming in _schedule(list(variants), rounds):
        setup, call = variants[name]
        with setup():
            out: list[int] = []
            for _ in range(warmup if warming else batch):
                t0 = time.perf_counter_ns()
                call()
                out.append(time.perf_counter_ns() - t0)
        if not warming:
            per_round[name].append(out)
    return _stats(per_round)


async def interleaved_async(variants: dict[str, tuple[Setup, Callable[[], Awaitable[Any]]]], rounds: int,
                            batch: int, warmup: int = 3) -> dict[str, Stats]:
    """`interleaved` for coroutines, run inside one event loop (`asyncio.run`)."""
    per_round: dict[str, list[list[int]]] = {name: [] for name in variants}
    for name, warming in _schedule(list(variants), rounds):
        setup, call = variants[name]
        with setup():
            out: list[int] = []
            for _ in range(warmup if warming else batch):
                t0 = time.perf_counter_ns()
                await call()
                out.append(time.perf_counter_ns() - t0)
        if not warming:
            per_round[name].append(out)
    return _stats(per_round)


def timed(call: Callable[[], Any], n: int) -> Stats:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - t0)
    return Stats.of(samples)
