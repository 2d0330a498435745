"""The engine: runs the rule families in a fixed order over one request and its session chain.

Rules are pure: they read the request, the sessions' counters and the configuration, and return
decisions. Whether a decision is applied is the pipeline's business (observe vs enforce).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cascadeflow.config import ComplianceProfile, Config, RunLimits
from cascadeflow.latency import LatencyStats
from cascadeflow.policy import budget, compliance, kpi, steps, tools
from cascadeflow.policy.candidates import Candidate, Pool, canonical, split
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.pricing import PriceBook
from cascadeflow.request import Request
from cascadeflow.session import Session

Approver = Callable[[str, tuple[Any, ...], dict[str, Any]], bool]

__all__ = ["Decision", "Engine"]


class Engine:
    """Holds what the rules read besides the request: config, prices, the pool, observed latency."""

    def __init__(self, config: Config, prices: PriceBook | None = None,
                 latency: LatencyStats | None = None, approver: Approver | None = None) -> None:
        self.config = config
        self.prices = prices or PriceBook(config.models)
        self.pool = Pool(config.models, self.prices)
        self.latency = latency or LatencyStats()
        self.approver = approver

    # -- what rules share ------------------------------------------------------------------
    def profiles(self, chain: Sequence[Session]) -> list[ComplianceProfile]:
        names = {s.limits.compliance for s in chain if s.limits.compliance}
        return [self.config.compliance[n] for n in sorted(names)]

    def weights(self, chain: Sequence[Session]) -> dict[str, float] | None:
        """KPI weights of the innermost session that sets them."""
        return next((s.limits.kpi_weights for s in chain if s.limits.kpi_weights), None)

    def candidates(self, request: Request, chain: Sequence[Session]) -> list[Candidate]:
        """Configured models this client can reach and every compliance profile allows."""
        profiles = self.profiles(chain)
        return [c for c in self.pool.reachable(request.reachable)
                if all(compliance.allows(p, c.bare, c.provider, c.spec) for p in profiles)]

    def names(self, model: str, provider: str | None) -> tuple[str | None, str, str]:
        """(provider, bare, canonical) of a requested model."""
        prov, bare = split(model, self.prices)
        prov = provider or prov
        return prov, bare, canonical(bare, prov)

    @staticmethod
    def limits(chain: Sequence[Session]) -> list[RunLimits]:
        return [s.limits for s in chain]

    # -- the decision ----------------------------------------------------------------------
    def decide(self, request: Request, chain: Sequence[Session]) -> list[Decision]:
        """Decisions for one step, most important first; `[ALLOW]`-like when nothing applies."""
        if request.operation == "tool":
            denied = steps.check(request, chain) or tools.check_execution(self, request, chain)
            return [denied] if denied else [ALLOW]
        stop = steps.check(request, chain)
        if stop:
            return [stop]
        out: list[Decision] = []
        model = request.model
        switch = compliance.check(self, request, chain)
        if switch and switch.action == "stop":
            return [switch]
        if switch is None:
            switch = kpi.check_latency(self, request, chain) or kpi.check_weights(self, request, chain)
        if switch is not None:
            out.append(switch)
            model = switch.target_model or model
        money = budget.check(self, request, chain, model)
        if money.action == "stop":
            return [money]
        if money.action == "switch_model":
            out = [d for d in out if d.action != "switch_model"]
            out.insert(0, money)
        denied = tools.check_request(self, request, chain)
        if denied:
            out.append(denied)
        if not out:
            return [money]
        if money.action == "allow":
            # the reservation rides on the primary decision; a clamp is its own entry
            first = out[0]
            out[0] = Decision(first.action, first.reason, first.target_model, first.tools_denied,
                              money.max_tokens, first.message, money.reservation, money.price_known)
            if money.max_tokens is not None:
                out.append(Decision("allow", money.reason, max_tokens=money.max_tokens,
                                    message=money.message))
        return out
