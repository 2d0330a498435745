"""Compliance: a model outside any enclosing profile is switched to an allowed one, or stopped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cascadeflow.config import ComplianceProfile, ModelSpec
from cascadeflow.policy.candidates import allowed, score
from cascadeflow.policy.decision import Decision
from cascadeflow.request import Request
from cascadeflow.session import Session

if TYPE_CHECKING:
    from cascadeflow.policy.engine import Engine


def allows(profile: ComplianceProfile, model: str, provider: str | None, spec: ModelSpec | None) -> bool:
    return allowed(profile, model, provider, spec)


def check(engine: Engine, request: Request, chain: Sequence[Session]) -> Decision | None:
    profiles = engine.profiles(chain)
    if not profiles:
        return None
    provider, bare, name = engine.names(request.model, request.provider)
    configured = engine.pool.lookup(request.model, provider)
    spec = configured.spec if configured else None
    if all(allows(p, bare, provider, spec) for p in profiles):
        return None
    options = engine.candidates(request, chain)
    if request.operation == "embeddings":
        options = [c for c in options if "embedding" in c.spec.tags]
    else:
        options = [c for c in options if "embedding" not in c.spec.tags]
    names = sorted(n for s in chain if (n := s.limits.compliance))
    if not options:
        return Decision("stop", "compliance_no_allowed_model",
                        message=f"{name} is not allowed by compliance {names} and no configured "
                                "model that this client can reach is")
    weights = engine.weights(chain) or {"quality": 1.0}
    scores = score(options, weights, engine.latency)
    best = max(options, key=lambda c: (scores[c.name], c.name))
    return Decision("switch_model", "compliance_model_not_allowed", target_model=best.name,
                    message=f"{name} is not allowed by compliance {names}; using {best.name}")
