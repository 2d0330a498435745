"""Compliance: a model outside any enclosing profile is switched to an allowed one, or stopped."""

from __future__ import annotations

from cascadeflow.policy.context import Context
from cascadeflow.policy.decision import Decision
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request


def check(engine: Context, request: Request, view: ChainView) -> Decision | None:
    """Stop, or switch to the best allowed candidate, when a profile excludes the model."""
    if not view.profiles:
        return None
    provider, bare, name = engine.names(request.model, request.provider)
    configured = engine.pool.lookup(request.model, provider)
    if engine.allowed(view.profiles, bare, provider, configured.spec if configured else None):
        return None
    options = engine.candidates(request, view)
    names = list(view.profiles)
    if not options:
        return Decision("stop", "compliance_no_allowed_model",
                        message=f"{name} is not allowed by compliance {names} and no configured "
                                "model that this client can reach is")
    scores = engine.scores(options, view.weights or {"quality": 1.0})
    best = max(options, key=lambda c: (scores[c.name], c.name))
    return Decision("switch_model", "compliance_model_not_allowed", target_model=best.name,
                    message=f"{name} is not allowed by compliance {names}; using {best.name}")
