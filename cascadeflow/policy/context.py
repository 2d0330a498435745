"""What every rule shares: the config, prices, the model pool, observed latency, and memos.

Decisions repeat the same questions step after step, and the answers depend only on the frozen
config (and, for scores, on the latency version), so they are memoised here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from cascadeflow.config import Config, ModelSpec
from cascadeflow.guardrails.policy import Policy
from cascadeflow.latency import LatencyStats
from cascadeflow.policy.candidates import Candidate, Pool, allowed, canonical, score, split
from cascadeflow.policy.decision import Decision
from cascadeflow.policy.state import SessionState
from cascadeflow.policy.view import ChainView, view_of
from cascadeflow.pricing import PriceBook
from cascadeflow.request import Request

Approver = Callable[[str, tuple[Any, ...], dict[str, Any]], bool]


class Context:
    """Holds what the rules read besides the request and the sessions."""

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

    def view(self, chain: Sequence[SessionState], policy: Policy | None = None) -> ChainView:
        """What the rules need to know of `chain` (cached on its innermost session)."""
        return view_of(tuple(chain), self.config, policy)

    def allowed(self, profiles: tuple[str, ...], model: str, provider: str | None,
                spec: ModelSpec | None) -> bool:
        """Whether every named profile allows `provider/model`."""
        key = (profiles, canonical(model, provider))
        found = self._allowed.get(key)
        if found is None:
            found = all(allowed(self.config.compliance[p], model, provider, spec)
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

