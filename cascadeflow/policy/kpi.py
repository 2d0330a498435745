"""KPI weights and latency targets: switch to a better candidate when the gain is worth it."""

from __future__ import annotations

from cascadeflow.policy.context import Context
from cascadeflow.policy.decision import Decision
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request


def check_weights(engine: Context, request: Request, view: ChainView) -> Decision | None:
    """`kpi_better_model`: the best-scoring candidate beats the requested model by the hysteresis."""
    if not view.weights:
        return None
    weights = view.weights or {}
    options = engine.candidates(request, view)
    provider, _bare, name = engine.names(request.model, request.provider)
    current = engine.pool.lookup(request.model, provider)
    if current is None or current not in options:
        return None  # the requested model is not in the pool: nothing to compare it with
    scores = engine.scores(options, weights)
    best = max(options, key=lambda c: (scores[c.name], c.name))
    gain = scores[best.name] - scores[current.name]
    if best is current or gain <= engine.config.kpi_hysteresis:
        return None
    return Decision("switch_model", "kpi_better_model", target_model=best.name,
                    message=f"{best.name} scores {scores[best.name]:.3f} vs {scores[current.name]:.3f} "
                            f"for {name} under {weights}")


def check_latency(engine: Context, request: Request, view: ChainView) -> Decision | None:
    """`latency_target_exceeded`: the requested model is observed slower than `max_latency_ms`."""
    if view.latency_target is None:
        return None
    target = view.latency_target or 0.0
    provider, _bare, name = engine.names(request.model, request.provider)
    current = engine.pool.lookup(request.model, provider)
    observed = engine.latency.expected(name, current.spec.latency_ms if current else None)
    if observed is None or observed <= target:
        return None
    options = [c for c in engine.candidates(request, view) if c is not current]
    fast = [(c, lat) for c in options
            if (lat := engine.latency.expected(c.key, c.spec.latency_ms)) is not None and lat <= target]
    if not fast:
        return None
    scores = engine.scores([c for c, _ in fast], view.weights or {"quality": 1.0})
    best = max(fast, key=lambda item: (scores[item[0].name], -item[1]))[0]
    return Decision("switch_model", "latency_target_exceeded", target_model=best.name,
                    message=f"{name} observed {observed:.0f} ms > max_latency_ms={target:.0f}; "
                            f"using {best.name}")
