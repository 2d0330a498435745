"""KPI weights and latency targets: switch to a better candidate when the gain is worth it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cascadeflow.policy.candidates import Candidate, score
from cascadeflow.policy.decision import Decision
from cascadeflow.request import Request
from cascadeflow.session import Session

if TYPE_CHECKING:
    from cascadeflow.policy.engine import Engine


def _same_kind(request: Request, options: list[Candidate]) -> list[Candidate]:
    embedding = request.operation == "embeddings"
    return [c for c in options if ("embedding" in c.spec.tags) == embedding]


def check_weights(engine: Engine, request: Request, chain: Sequence[Session]) -> Decision | None:
    """`kpi_better_model`: the best-scoring candidate beats the requested model by the hysteresis."""
    weights = engine.weights(chain)
    if not weights:
        return None
    options = _same_kind(request, engine.candidates(request, chain))
    provider, _bare, name = engine.names(request.model, request.provider)
    current = engine.pool.lookup(request.model, provider)
    if current is None or current not in options:
        return None  # the requested model is not in the pool: nothing to compare it with
    scores = score(options, weights, engine.latency)
    best = max(options, key=lambda c: (scores[c.name], c.name))
    gain = scores[best.name] - scores[current.name]
    if best is current or gain <= engine.config.kpi_hysteresis:
        return None
    return Decision("switch_model", "kpi_better_model", target_model=best.name,
                    message=f"{best.name} scores {scores[best.name]:.3f} vs {scores[current.name]:.3f} "
                            f"for {name} under {weights}")


def check_latency(engine: Engine, request: Request, chain: Sequence[Session]) -> Decision | None:
    """`latency_target_exceeded`: the requested model is observed slower than `max_latency_ms`."""
    targets = [s.limits.max_latency_ms for s in chain if s.limits.max_latency_ms is not None]
    if not targets:
        return None
    target = min(targets)
    provider, _bare, name = engine.names(request.model, request.provider)
    current = engine.pool.lookup(request.model, provider)
    observed = engine.latency.expected(name, current.spec.latency_ms if current else None)
    if observed is None or observed <= target:
        return None
    options = [c for c in _same_kind(request, engine.candidates(request, chain)) if c is not current]
    fast = [(c, lat) for c in options
            if (lat := engine.latency.expected(c.key, c.spec.latency_ms)) is not None and lat <= target]
    if not fast:
        return None
    weights = engine.weights(chain) or {"quality": 1.0}
    scores = score([c for c, _ in fast], weights, engine.latency)
    best = max(fast, key=lambda item: (scores[item[0].name], -item[1]))[0]
    return Decision("switch_model", "latency_target_exceeded", target_model=best.name,
                    message=f"{name} observed {observed:.0f} ms > max_latency_ms={target:.0f}; "
                            f"using {best.name}")
