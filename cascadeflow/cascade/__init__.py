"""Cascades: ordered per-step fallback across providers, retries, circuit breakers."""

from cascadeflow.balance import STRATEGIES, Load, load
from cascadeflow.breakers import (
    BreakerRegistry,
    BreakerSettings,
    BreakerStore,
    CircuitBreaker,
    InMemoryBreakerStore,
    Ticket,
    breakers,
)
from cascadeflow.cascade.cascade import Cascade
from cascadeflow.cascade.clients import ClientPool, clients
from cascadeflow.cascade.streams import StreamInterrupted
from cascadeflow.cascade.tiers import Deployment, Tier
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
    "STRATEGIES",
    "BreakerRegistry",
    "BreakerSettings",
    "BreakerStore",
    "Cascade",
    "CircuitBreaker",
    "ClientPool",
    "Deployment",
    "Expectations",
    "Failure",
    "InMemoryBreakerStore",
    "Load",
    "RetryPolicy",
    "StreamInterrupted",
    "Ticket",
    "Tier",
    "breakers",
    "classify",
    "clients",
    "load",
    "stop_after_attempt",
    "stop_after_delay",
    "wait_fixed",
    "wait_full_jitter",
]
