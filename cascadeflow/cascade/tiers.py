"""What a cascade is made of: tiers, each a model, several deployments of one, or a static answer.

    Tier("openai/gpt-4o", timeout=10)
    Tier(deployments=[Deployment("openai/gpt-4o", params=east, weight=2),
                      Deployment("azure/gpt-4o", params=west)], strategy="least_busy")
    Tier(static="unclassified", degraded=True)

A tier with several deployments serves the same model from several endpoints or providers: each
attempt goes to one of them, chosen by the tier's strategy, and a retry goes to another one when
another is available (see `cascadeflow.balance`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascadeflow.balance import STRATEGIES
from cascadeflow.breakers import BreakerSettings
from cascadeflow.errors import ConfigError
from cascadeflow.failures import DISPOSITION, FATAL


@dataclass(frozen=True)
class Deployment:
    """One endpoint serving a tier: a model name with its own call parameters (api_base, key, ...)."""

    model: str
    params: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass(frozen=True)
class Tier:
    """One rung: a model (with its own call parameters), several deployments, or a final static answer."""

    model: str | None = None
    timeout: float | None = None
    degraded: bool = False
    static: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    deployments: Sequence[Deployment] = ()
    strategy: str = "weighted"

    @property
    def label(self) -> str:
        if self.model:
            return self.model
        if self.deployments:
            return " | ".join(d.model for d in self.deployments)
        return "static answer"

    def choices(self) -> tuple[Deployment, ...]:
        """The deployments an attempt can go to (a plain tier is one)."""
        if self.deployments:
            return tuple(self.deployments)
        return (Deployment(self.model or "", self.params),)


def tier(value: Tier | str) -> Tier:
    return value if isinstance(value, Tier) else Tier(model=value)


def check_tiers(tiers: Sequence[Tier], setting: str, source: str) -> None:
    """Each tier is exactly one of a model, deployments or a static answer; a static answer only last."""
    for index, t in enumerate(tiers):
        where = f"{setting}[{index}]"
        shown = {"model": t.model, "static": t.static, "deployments": [d.model for d in t.deployments]}
        kinds = (t.model is not None) + (t.static is not None) + bool(t.deployments)
        if kinds != 1:  # (shown, not the tier: its parameters may hold a key)
            raise ConfigError(where, shown, source, "a tier has exactly one of a model, deployments or a "
                                                    "static answer")
        if t.static is not None and index != len(tiers) - 1:
            raise ConfigError(where, shown, source, "a static answer can only be the last tier of the chain")
        if t.timeout is not None:
            check_seconds(t.timeout, f"{where}.timeout", source)
        if t.strategy not in STRATEGIES:
            raise ConfigError(f"{where}.strategy", t.strategy, source, f"one of {', '.join(STRATEGIES)}")
        for n, d in enumerate(t.deployments):
            if not _positive(d.weight):
                raise ConfigError(f"{where}.deployments[{n}].weight", d.weight, source,
                                  "a positive, finite number")


def check_seconds(value: Any, setting: str, source: str) -> None:
    """A deadline or a timeout: a positive, finite number of seconds (not a bool, not a string)."""
    if not _positive(value):
        raise ConfigError(setting, value, source, "seconds: a positive, finite number")


def _positive(value: Any) -> bool:
    """A positive, finite int or float; not a bool (`weight=True` is no weight of 1)."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def check_breaker(settings: BreakerSettings, setting: str, source: str) -> None:
    """Breaker settings a breaker can recover with, as the config file's are checked: a
    half-open breaker with no probe slot, or a NaN recovery timeout, would stay open for good."""
    for name in ("failure_threshold", "window", "min_calls", "half_open_max_calls"):
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"{setting}.{name}", value, source, "a whole number, 1 or more")
    rate = settings.failure_rate
    if not _positive(rate) or rate > 1:
        raise ConfigError(f"{setting}.failure_rate", rate, source, "a share of calls: more than 0, at most 1")
    check_seconds(settings.recovery_timeout, f"{setting}.recovery_timeout", source)
    check_seconds(settings.probe_timeout, f"{setting}.probe_timeout", source)


def check_failure_classes(values: Mapping[str, Any], setting: str, source: str) -> None:
    """Keys of per-failure settings are failure classes a cascade can do something about."""
    for kind in values:
        if kind not in DISPOSITION:
            raise ConfigError(f"{setting}.{kind}", kind, source,
                              f"not a failure class; one of {', '.join(sorted(DISPOSITION))}")
        if DISPOSITION[kind] == FATAL:
            raise ConfigError(f"{setting}.{kind}", kind, source,
                              "a fatal failure ends the cascade: no tier will serve the request")
