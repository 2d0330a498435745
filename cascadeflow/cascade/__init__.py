"""Cascades: ordered per-step fallback across providers, retries, circuit breakers."""

from cascadeflow.cascade.breaker import (
    BreakerRegistry,
    BreakerSettings,
    BreakerStore,
    CircuitBreaker,
    InMemoryBreakerStore,
    breakers,
)
from cascadeflow.cascade.cascade import Cascade, StreamInterrupted, Tier
from cascadeflow.cascade.retry import (
    RetryPolicy,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_full_jitter,
)
from cascadeflow.cascade.taxonomy import DISPOSITION, Expectations, Failure, classify

__all__ = [
    "DISPOSITION",
    "BreakerRegistry",
    "BreakerSettings",
    "BreakerStore",
    "Cascade",
    "CircuitBreaker",
    "Expectations",
    "Failure",
    "InMemoryBreakerStore",
    "RetryPolicy",
    "StreamInterrupted",
    "Tier",
    "breakers",
    "classify",
    "stop_after_attempt",
    "stop_after_delay",
    "wait_fixed",
    "wait_full_jitter",
]
