"""The model pool from `[models]`: naming, reachability, compliance and scoring helpers."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cascadeflow.config import ComplianceProfile, ModelSpec
from cascadeflow.latency import LatencyStats
from cascadeflow.pricing import Price, PriceBook

TYPICAL_IN, TYPICAL_OUT = 1000, 300  # the call size KPI cost comparisons are made at
DEFAULT_QUALITY = 0.5


@dataclass(frozen=True, slots=True)
class Candidate:
    name: str  # as configured, e.g. "openai/gpt-4o-mini"
    provider: str | None
    bare: str  # without the provider prefix
    spec: ModelSpec
    price: Price | None

    @property
    def key(self) -> str:
        """`provider/model`: the name latency is observed under."""
        return canonical(self.bare, self.provider)

    def unit_cost(self) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(TYPICAL_IN, TYPICAL_OUT)


def split(model: str, prices: PriceBook) -> tuple[str | None, str]:
    """(provider, bare name): from a `provider/model` prefix, else from litellm's map."""
    if "/" in model:
        provider, bare = model.split("/", 1)
        return provider, bare
    return prices.provider_of(model), model


def canonical(model: str, provider: str | None) -> str:
    """`provider/model`, the form compliance globs match."""
    if provider and not model.startswith(provider + "/"):
        return f"{provider}/{model}"
    return model


class Pool:
    """Configured candidates, built once per `init`."""

    def __init__(self, models: Mapping[str, ModelSpec], prices: PriceBook) -> None:
        self.prices = prices
        self.candidates: tuple[Candidate, ...] = tuple(
            Candidate(name, *split(name, prices), spec, prices.price(name, split(name, prices)[0]))
            for name, spec in models.items())
        self.by_name = {c.name: c for c in self.candidates}
        for c in self.candidates:
            self.by_name.setdefault(canonical(c.bare, c.provider), c)

    def lookup(self, model: str, provider: str | None) -> Candidate | None:
        return self.by_name.get(model) or self.by_name.get(canonical(model, provider))

    def reachable(self, reach: tuple[str, ...] | None) -> list[Candidate]:
        if reach is None:
            return list(self.candidates)
        return [c for c in self.candidates if c.provider in reach]


def allowed(profile: ComplianceProfile, model: str, provider: str | None, spec: ModelSpec | None) -> bool:
    """True when the profile allows `provider/model` by glob or by a tag on the configured model."""
    name = canonical(model, provider)
    if any(fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(model, glob)
           for glob in profile.models):
        return True
    return spec is not None and any(tag in profile.model_tags for tag in spec.tags)


def score(candidates: Iterable[Candidate], weights: Mapping[str, float], latency: LatencyStats
          ) -> dict[str, float]:
    """Weighted KPI score in [0, 1] per candidate; cost and latency score best/value."""
    pool = list(candidates)
    costs = {c.name: c.unit_cost() for c in pool}
    lats = {c.name: latency.expected(c.key, c.spec.latency_ms) for c in pool}
    known_costs = [v for v in costs.values() if v is not None]
    known_lats = [v for v in lats.values() if v is not None]
    total = sum(weights.values()) or 1.0
    out: dict[str, float] = {}
    for c in pool:
        quality = c.spec.quality if c.spec.quality is not None else DEFAULT_QUALITY
        value = weights.get("quality", 0.0) * quality
        value += weights.get("cost", 0.0) * _inverse(costs[c.name], known_costs)
        value += weights.get("latency", 0.0) * _inverse(lats[c.name], known_lats)
        out[c.name] = value / total
    return out


def _inverse(value: float | None, known: list[float]) -> float:
    """best / value: 1 for the cheapest (fastest), 0.5 for one twice as costly; unknown scores 0."""
    if value is None or not known:
        return 0.0
    best = min(known)
    if value <= 0:
        return 1.0
    return best / value
