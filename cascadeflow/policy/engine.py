"""The engine: runs the rule families in a fixed order over one request and its session chain.

Rules are pure: they read the request, the sessions' counters and the configuration, and return
decisions. Whether a decision is applied is the pipeline's business (observe vs enforce).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cascadeflow.config import Config, ModelSpec
from cascadeflow.latency import LatencyStats
from cascadeflow.policy import budget, compliance, kpi, steps, tools
from cascadeflow.policy.candidates import Candidate, Pool, canonical, score, split
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.policy.view import ChainView, view_of
from cascadeflow.pricing import PriceBook
from cascadeflow.request import Request
from cascadeflow.session import Session

Approver = Callable[[str, tuple[Any, ...], dict[str, Any]], bool]

__all__ = ["Decision", "Engine"]


class Engine:
    """Holds what the rules read besides the request: config, prices, the pool, observed latency.

    Decisions repeat the same questions step after step and the answers depend only on the
    frozen config (and, for scores, on the latency version), so they are memoised here.
    """

    def __init__(self, config: Config, prices: PriceBook | None = None,
                 latency: LatencyStats | None = None, approver: Approver | None = None) -> None:
        self.config = config
        self.prices = prices or PriceBook(config.models)
        self.pool = Pool(config.models, self.prices)
        self.latency = latency or LatencyStats()
        self.approver = approver
        self._names: dict[tuple[str, str | None], tuple[str | None, str, str]] = {}
        self._allowed: dict[tuple[tuple[str, ...], str], bool] = {}
        self._candidates: dict[tuple[Any, ...], tuple[Candidate, ...]] = {}
        self._scores: dict[tuple[Any, ...], dict[str, float]] = {}
        self._memo: dict[tuple[Any, ...], Decision | None] = {}
        self.guardrails: Any = None  # the PolicyStore, set by the runtime

    # -- what rules share ------------------------------------------------------------------
    def view(self, chain: Sequence[Session]) -> ChainView:
        policy = self.guardrails.current() if self.guardrails is not None else None
        return view_of(tuple(chain), self.config, policy)

    def allowed(self, profiles: tuple[str, ...], model: str, provider: str | None,
                spec: ModelSpec | None) -> bool:
        """Whether every named profile allows `provider/model`."""
        key = (profiles, canonical(model, provider))
        found = self._allowed.get(key)
        if found is None:
            found = all(compliance.allows(self.config.compliance[p], model, provider, spec)
                        for p in profiles)
            self._allowed[key] = found
        return found

    def candidates(self, request: Request, view: ChainView) -> list[Candidate]:
        """Configured models of the request's kind that this client can reach and every
        compliance profile allows (embedding models only replace embedding models)."""
        embedding = request.operation == "embeddings"
        key = (request.reachable, view.profiles, embedding)
        found = self._candidates.get(key)
        if found is None:
            found = tuple(c for c in self.pool.reachable(request.reachable)
                          if ("embedding" in c.spec.tags) == embedding
                          and self.allowed(view.profiles, c.bare, c.provider, c.spec))
            self._candidates[key] = found
        return list(found)

    def memo(self, key: tuple[Any, ...], compute: Callable[[], Decision | None]) -> Decision | None:
        """A rule's answer for `key`, computed once; keys must hold everything the answer reads."""
        try:
            return self._memo[key]
        except KeyError:
            if len(self._memo) > 4096:
                self._memo.clear()
            found = self._memo[key] = compute()
            return found

    def switch_key(self, request: Request, view: ChainView) -> tuple[Any, ...]:
        """What a model-switch rule's answer depends on besides the rule's own limits."""
        return (request.model, request.provider, request.reachable, request.operation == "embeddings",
                view.profiles, view.weights_key, self.latency.version)

    def scores(self, options: Sequence[Candidate], weights: dict[str, float]) -> dict[str, float]:
        """KPI scores of `options`, cached until observed latencies move."""
        key = (tuple(c.name for c in options), tuple(sorted(weights.items())), self.latency.version)
        found = self._scores.get(key)
        if found is None:
            if len(self._scores) > 512:
                self._scores.clear()
            found = score(options, weights, self.latency)
            self._scores[key] = found
        return found

    def names(self, model: str, provider: str | None) -> tuple[str | None, str, str]:
        """(provider, bare, canonical) of a requested model."""
        key = (model, provider)
        found = self._names.get(key)
        if found is None:
            prov, bare = split(model, self.prices)
            prov = provider or prov
            found = self._names[key] = (prov, bare, canonical(bare, prov))
        return found

    # -- the decision ----------------------------------------------------------------------
    def decide(self, request: Request, chain: Sequence[Session]) -> list[Decision]:
        """Decisions for one step, most important first; `[ALLOW]` when nothing applies."""
        view = self.view(chain)
        if request.operation == "tool":
            denied = steps.check(view) or tools.check_execution(self, request, view)
            return [denied] if denied else [ALLOW]
        stop = steps.check(view)
        if stop:
            return [stop]
        out: list[Decision] = []
        model = request.model
        switch = None if request.pinned else compliance.check(self, request, view)
        if switch and switch.action == "stop":
            return [switch]
        if switch is None and not request.pinned:
            switch = kpi.check_latency(self, request, view) or kpi.check_weights(self, request, view)
        if switch is not None:
            out.append(switch)
            model = switch.target_model or model
        money = budget.check(self, request, view, model)
        if money.action == "stop":
            return [money]
        if money.action == "switch_model":
            out = [d for d in out if d.action != "switch_model"]
            out.insert(0, money)
        denied = tools.check_request(self, request, view)
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
