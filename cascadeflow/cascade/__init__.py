"""Cascades: ordered per-step fallback across providers, retries, circuit breakers."""

from cascadeflow.breakers import (
    BreakerRegistry,
    BreakerSettings,
    BreakerStore,
    CircuitBreaker,
    InMemoryBreakerStore,
    breakers,
)
from cascadeflow.cascade.cascade import Cascade, StreamInterrupted, Tier
from cascadeflow.cascade.clients import ClientPool, clients
from cascadeflow.failures import DISPOSITION, Expectations, Failure, classify
from cascadeflow.retry import (
    RetryPolicy,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_full_jitter,
)

__all__ = [
    "DISPOSITION",
    "BreakerRegistry",
    "BreakerSettings",
    "BreakerStore",
    "Cascade",
    "CircuitBreaker",
    "ClientPool",
    "Expectations",
    "Failure",
    "InMemoryBreakerStore",
    "RetryPolicy",
    "StreamInterrupted",
    "Tier",
    "breakers",
    "classify",
    "clients",
    "stop_after_attempt",
    "stop_after_delay",
    "wait_fixed",
    "wait_full_jitter",
]
