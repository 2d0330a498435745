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
from cascadeflow.pricing import Price, PriceBook
from cascadeflow.request import Request

Approver = Callable[[str, tuple[Any, ...], dict[str, Any]], bool]


_UNSEEN = Decision("allow", "unseen")  # a memo miss (None is a remembered answer: no maximum known)


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
        self._priced: dict[tuple[str, str | None], tuple[str | None, Price | None]] = {}
        self._ceilings: dict[tuple[Any, ...], Decision | None] = {}

    def view(self, chain: Sequence[SessionState], policy: Policy | None = None, shared: Any = None,
             shared_budgets: tuple[SessionState, ...] = ()) -> ChainView:
        """What the rules need to know of `chain` (cached on its innermost session)."""
        cached = chain[0].policy_view
        if cached is not None and cached[0] is self.config and cached[2] is policy:
            view: ChainView = cached[1]
            return view
        return view_of(tuple(chain), self.config, policy, shared, shared_budgets)

    def ceiling(self, model: str, provider: str | None, asked: int | None, choices: Any,
                inputs: int = 1, service_tier: str | None = None) -> Decision | None:
        """An `allow` reserving the most one call to `model` can cost (see `budget.ceiling`),
        built once per (model, max_tokens, n, inputs, service tier); None when that maximum is
        unknown."""
        key = (model, provider, asked, choices, inputs, service_tier)
        found = self._ceilings.get(key, _UNSEEN)  # one read: another thread may clear it meanwhile
        if found is not _UNSEEN:
            return found
        price = self.priced(model, provider)[1]
        if price is not None:
            price = price.for_tier(service_tier)
        worst = None if price is None else price.most(asked, choices, inputs)
        found = None if worst is None else Decision("allow", "ok", reservation=worst)
        if len(self._ceilings) > 4096:
            self._ceilings.clear()
        self._ceilings[key] = found
        return found

    def priced(self, model: str, provider: str | None) -> tuple[str | None, Price | None]:
        """(provider, price) of a model as called; `provider` as the client knows it, if it does."""
        key = (model, provider)
        found = self._priced.get(key)
        if found is None:
            resolved = self.names(model, provider)[0]
            found = self._priced[key] = (resolved, self.prices.price(model, resolved))
        return found

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

