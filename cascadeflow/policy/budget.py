"""Budgets that cannot be overrun: worst-case pre-flight cost, clamping, pressure switches.

The worst case is input tokens times the input price plus `max_tokens` times the output price.
The input bound starts from the prompt's UTF-8 length (free); only when that bound does not fit
is the prompt tokenized, and only for models whose tokenizer tiktoken knows.
"""

from __future__ import annotations

import math

from cascadeflow import tokens
from cascadeflow.policy.context import Context
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.policy.state import SessionState
from cascadeflow.policy.view import ChainView
from cascadeflow.pricing import Price
from cascadeflow.request import Request

DEFAULT_MAX_OUTPUT = 4096  # assumed when neither the request nor the price map bounds the answer
MIN_ANSWER_TOKENS = 16  # below this a clamped answer is useless: stop instead
# When what is left is at least this many times the most one call to the model can cost, the
# prompt is not measured: the call cannot overrun, and that maximum is what it reserves.
CEILING_SHARE = 4.0
_TIKTOKEN_PROVIDERS = frozenset({"openai", "azure", "text-completion-openai", None})


def check(engine: Context, request: Request, view: ChainView, model: str) -> Decision:
    """Reserve, clamp, switch under pressure, or stop; `allow` with the reservation otherwise."""
    budgeted = view.budgeted
    if not budgeted:
        return ALLOW
    remaining = math.inf
    pressured: SessionState | None = None
    share = engine.config.budget_pressure
    for session in budgeted:
        cap = session.limits.budget or 0.0
        left = cap - session.spent - session.reserved
        remaining = min(remaining, left)
        if pressured is None and cap and left / cap < share:
            pressured = session
    if pressured is None:
        ceiling = engine.ceiling(model, request.provider if model == request.model else None,
                                 request.max_tokens, request.kwargs.get("n"))
        if ceiling is not None and ceiling.reservation * CEILING_SHARE <= remaining:
            return ceiling
    if pressured is not None and remaining > 0 and not request.pinned:
        cheaper = _cheaper(engine, request, view, model)
        if cheaper is not None:
            fit = _fit(engine, request, cheaper, remaining)
            if fit.action == "allow":
                return Decision("switch_model", "budget_pressure", target_model=cheaper,
                                max_tokens=fit.max_tokens, reservation=fit.reservation,
                                message=f"{remaining:.6f} USD left of "
                                        f"{pressured.limits.budget}; using cheaper {cheaper}")
    return _fit(engine, request, model, remaining)


def _fit(engine: Context, request: Request, model: str, remaining: float) -> Decision:
    provider, price = engine.priced(model, request.provider if model == request.model else None)
    if price is None:
        return Decision("allow", "price_unknown", price_known=False)
    embeddings = request.operation == "embeddings"
    asked = request.max_tokens
    max_out = 0 if embeddings else (asked or price.max_output_tokens or DEFAULT_MAX_OUTPUT)
    bounded = embeddings or asked is not None or price.max_output_tokens is not None
    bound = request.input_bound()
    worst = bound * price.input + max_out * price.output
    if bounded and worst <= remaining:
        return Decision("allow", "ok", reservation=worst)
    tokens_in = bound
    if provider in _TIKTOKEN_PROVIDERS:
        tokens_in = tokens.count(request.prompt_text(), model) + tokens.message_overhead(request.prompt)
    in_cost = tokens_in * price.input
    if embeddings or price.output <= 0:
        worst = in_cost + max_out * price.output
        if worst <= remaining:
            return Decision("allow", "ok", reservation=worst)
        return _stop(worst, remaining, model)
    affordable = math.floor((remaining - in_cost) / price.output) if remaining > in_cost else 0
    if bounded and max_out <= affordable:
        return Decision("allow", "ok", reservation=in_cost + max_out * price.output)
    if affordable < MIN_ANSWER_TOKENS:
        return _stop(in_cost + MIN_ANSWER_TOKENS * price.output, remaining, model)
    clamp = min(affordable, max_out)
    return Decision("allow", "max_tokens_clamped", max_tokens=clamp,
                    reservation=in_cost + clamp * price.output,
                    message=f"max_tokens clamped to {clamp} so the worst case fits "
                            f"{remaining:.6f} USD")


def _stop(needed: float, remaining: float, model: str) -> Decision:
    return Decision("stop", "budget_exceeded",
                    message=f"{model} needs at least {needed:.6f} USD; {max(remaining, 0):.6f} left")


def _cheaper(engine: Context, request: Request, view: ChainView, model: str) -> str | None:
    """The best allowed candidate cheaper than `model`, by KPI weights (or quality)."""
    provider, _bare, _name = engine.names(model, request.provider if model == request.model else None)
    current: Price | None = engine.prices.price(model, provider)
    if current is None:
        return None
    reference = current.cost(1000, 300)
    options = [c for c in engine.candidates(request, view)
               if (cost := c.unit_cost()) is not None and cost < reference]
    if not options:
        return None
    scores = engine.scores(options, view.weights or {"quality": 1.0})
    return max(options, key=lambda c: (scores[c.name], -(c.unit_cost() or 0.0))).name
