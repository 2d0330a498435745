"""Load balancing across the deployments of a tier: where the next attempt goes.

The strategies LiteLLM Router users know:

- `weighted`: at random, in proportion to each deployment's weight;
- `least_busy`: the one with the fewest calls in flight from this process;
- `lowest_latency`: the one with the smallest moving average of answered calls' latency (one
  never measured goes first, so every deployment gets measured).

Whatever the strategy, an attempt prefers a deployment this call has not tried yet, so a retry
lands on another deployment while there is one, and a deployment whose breaker is open is passed
over. Counts and averages are kept per process, even where breakers are shared through Redis.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import get_args

from cascadeflow.config import Strategy

STRATEGIES: tuple[str, ...] = get_args(Strategy)


@dataclass
class _Stats:
    in_flight: int = 0
    latency_s: float | None = None  # exponential moving average of answered calls


class Load:
    """Calls in flight and latency per deployment key; thread- and asyncio-safe (one short lock)."""

    def __init__(self, smoothing: float = 0.3) -> None:
        self.smoothing = smoothing
        self._stats: dict[str, _Stats] = {}
        self._lock = threading.Lock()

    def started(self, key: str) -> None:
        with self._lock:
            self._stats.setdefault(key, _Stats()).in_flight += 1

    def ended(self, key: str, latency_s: float | None) -> None:
        """The attempt is over; `latency_s` when it was answered (failures say nothing of speed)."""
        with self._lock:
            stats = self._stats.setdefault(key, _Stats())
            stats.in_flight = max(stats.in_flight - 1, 0)
            if latency_s is not None:
                old = stats.latency_s
                stats.latency_s = latency_s if old is None else \
                    old + self.smoothing * (latency_s - old)

    def in_flight(self, key: str) -> int:
        with self._lock:
            stats = self._stats.get(key)
            return 0 if stats is None else stats.in_flight

    def latency(self, key: str) -> float | None:
        with self._lock:
            stats = self._stats.get(key)
            return None if stats is None else stats.latency_s

    def order(self, strategy: str, keys: Sequence[str], weights: Sequence[float], tried: set[str],
              rng: random.Random) -> list[int]:
        """Indices of `keys` from most to least preferred: untried ones first, each group by the
        strategy, ties broken at random (so equal deployments share the load)."""
        with self._lock:
            stats = [self._stats.get(key) or _Stats() for key in keys]
        ranked = []
        for index, (key, weight, s) in enumerate(zip(keys, weights, stats, strict=True)):
            if strategy == "least_busy":
                rank: float = s.in_flight
            elif strategy == "lowest_latency":
                rank = s.latency_s or 0.0
            else:  # weighted: a random key that favours weight (Efraimidis-Spirakis), smallest first
                rank = -(rng.random() ** (1.0 / weight))
            ranked.append((key in tried, rank, rng.random(), index))
        ranked.sort()
        return [index for *_rest, index in ranked]

    def reset(self) -> None:
        with self._lock:
            self._stats.clear()


load = Load()
