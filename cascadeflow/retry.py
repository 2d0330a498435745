"""Retry behaviour composed from small named strategies: when to stop, how long to wait.

    RetryPolicy(stop=stop_after_attempt(3) | stop_after_delay(10), wait=wait_full_jitter(0.25, 4))
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field


class Stop:
    """`stop(attempt, elapsed_s)` is True when no further attempt should be made on a tier."""

    def __init__(self, check: Callable[[int, float], bool], name: str) -> None:
        self._check = check
        self.name = name

    def __call__(self, attempt: int, elapsed: float) -> bool:
        return self._check(attempt, elapsed)

    def __or__(self, other: Stop) -> Stop:
        return Stop(lambda a, e: self(a, e) or other(a, e), f"{self.name} | {other.name}")

    def __repr__(self) -> str:
        return self.name


def stop_after_attempt(attempts: int) -> Stop:
    return Stop(lambda attempt, _elapsed: attempt >= attempts, f"stop_after_attempt({attempts})")


def stop_after_delay(seconds: float) -> Stop:
    return Stop(lambda _attempt, elapsed: elapsed >= seconds, f"stop_after_delay({seconds})")


class Wait:
    """`wait(attempt, retry_after)` is the pause before the next attempt, in seconds."""

    def __init__(self, compute: Callable[[int, float | None], float], name: str) -> None:
        self._compute = compute
        self.name = name

    def __call__(self, attempt: int, retry_after: float | None) -> float:
        return self._compute(attempt, retry_after)

    def __repr__(self) -> str:
        return self.name


def wait_full_jitter(initial: float = 0.25, maximum: float = 8.0, rng: random.Random | None = None) -> Wait:
    """Exponential backoff with full jitter: uniform in [0, min(maximum, initial * 2**(n-1))],
    and never less than the provider's Retry-After."""
    source = rng or random.Random()

    def compute(attempt: int, retry_after: float | None) -> float:
        ceiling = min(maximum, initial * 2 ** max(attempt - 1, 0))
        pause = source.uniform(0, ceiling)
        return max(pause, retry_after or 0.0)

    return Wait(compute, f"wait_full_jitter({initial}, {maximum})")


def wait_fixed(seconds: float) -> Wait:
    return Wait(lambda _a, retry_after: max(seconds, retry_after or 0.0), f"wait_fixed({seconds})")


@dataclass(frozen=True)
class RetryPolicy:
    """Retries on one tier; the cascade's deadline caps them all."""

    stop: Stop = field(default_factory=lambda: stop_after_attempt(3))
    wait: Wait = field(default_factory=wait_full_jitter)
