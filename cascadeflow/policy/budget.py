"""Budgets that cannot be overrun: worst-case pre-flight cost, clamping, waiting, pressure switches.

The worst case is what the provider can bill (see `cascadeflow.billing`): every input part times
the input price, plus `max_tokens` times `n` times the output price. The input bound starts from
UTF-8 lengths (free); only when that bound does not fit is the text tokenized, and only for
models whose tokenizer tiktoken knows.

Money held by calls in flight (their reservations) is not spent: when only reservations stand in
the way, the rule answers `budget_reserved`, and the pipeline waits for settlements instead of
stopping (see `cascadeflow.pipeline.admit`). A call is stopped when what is *spent* leaves no
room for its smallest useful answer.
"""

from __future__ import annotations

import math

from cascadeflow import billing
from cascadeflow.policy.context import Context
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.policy.state import SessionState
from cascadeflow.policy.view import ChainView
from cascadeflow.pricing import Price
from cascadeflow.request import Request

MIN_ANSWER_TOKENS = 16  # below this a clamped answer is useless: stop instead
# When what is left is at least this many times the most one call to the model can cost, the
# prompt is not measured: the call cannot overrun, and that maximum is what it reserves.
CEILING_SHARE = 4.0
_TIKTOKEN_PROVIDERS = frozenset({"openai", "azure", "text-completion-openai", None})
WAIT = "budget_reserved"  # the reason that asks the pipeline to wait for settlements


def check(engine: Context, request: Request, view: ChainView, model: str, patient: bool = True
          ) -> Decision:
    """Reserve, clamp, switch under pressure, wait or stop; `allow` with the reservation otherwise.

    `patient`: when reservations of calls in flight are all that stand in the way, answer
    `budget_reserved` (wait) rather than a smaller clamp or a stop."""
    budgeted = view.budgeted
    if not budgeted:
        return ALLOW
    remaining = headroom = math.inf
    pressured: SessionState | None = None
    tightest = budgeted[0]
    share = engine.config.budget_pressure
    for session in budgeted:
        cap = session.limits.budget or 0.0
        unspent = cap - session.spent
        if unspent - session.reserved < remaining:
            remaining, tightest = unspent - session.reserved, session
        if unspent < headroom:
            headroom = unspent
        if pressured is None and cap and unspent / cap < share:  # spent, not held by calls in flight
            pressured = session
    if pressured is None:
        ceiling = engine.ceiling(model, request.provider if model == request.model else None,
                                 request.max_tokens, billing.choices(request), billing.inputs(request),
                                 billing.service_tier(request))
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
    fit = _fit(engine, request, model, remaining)
    if fit.reason == "budget_exceeded" and tightest.exceeded_reason != fit.reason:
        fit = Decision("stop", tightest.exceeded_reason, message=f"{tightest!r}: {fit.message}")
    if (fit.action == "allow" and fit.max_tokens is None) or not patient or headroom <= remaining:
        return fit
    later = _fit(engine, request, model, headroom)  # once the calls in flight have settled
    if later.action == "allow" and (fit.action != "allow" or later.max_tokens is None
                                    or (fit.max_tokens or 0) < later.max_tokens):
        return Decision("stop", WAIT, reservation=later.reservation,
                        message=f"{max(remaining, 0):.6f} USD free, {headroom - remaining:.6f} "
                                f"held by calls in flight")
    return fit


def _fit(engine: Context, request: Request, model: str, remaining: float) -> Decision:
    provider, price = engine.priced(model, request.provider if model == request.model else None)
    if price is None:
        return unbounded(engine, model, "no price is known for it")
    price = price.for_tier(billing.service_tier(request))
    embeddings = request.operation == "embeddings"
    asked = request.max_tokens
    max_out = 0 if embeddings else price.output_limit(asked)
    n = billing.choices(request)
    bounded = embeddings or asked is not None or price.max_output_tokens is not None
    bound = billing.input_tokens(request, model, price.max_input_tokens, exact=False)
    if bound is None:
        return unbounded(engine, model, "its input has audio or file parts and its context "
                                        "window is unknown")
    # (a prompt of up to `bound` tokens: billed at most at the long-context tier `bound` is in)
    rated = price.at(bound)
    in_price = max(price.input_bound, rated.input_bound)
    out_price = max(price.output_bound, rated.output_bound) * n
    worst = bound * in_price + max_out * out_price
    if bounded and worst <= remaining:
        return Decision("allow", "ok", reservation=worst)
    tokens_in = bound
    if provider in _TIKTOKEN_PROVIDERS:
        tokens_in = billing.input_tokens(request, model, price.max_input_tokens, exact=True) or bound
    in_cost = tokens_in * in_price
    if embeddings or out_price <= 0:
        worst = in_cost + max_out * out_price
        if worst <= remaining:
            return Decision("allow", "ok", reservation=worst)
        return _stop(worst, remaining, model)
    affordable = math.floor((remaining - in_cost) / out_price) if remaining > in_cost else 0
    if bounded and max_out <= affordable:
        return Decision("allow", "ok", reservation=in_cost + max_out * out_price)
    if affordable < MIN_ANSWER_TOKENS:
        return _stop(in_cost + MIN_ANSWER_TOKENS * out_price, remaining, model)
    clamp = min(affordable, max_out)
    return Decision("allow", "max_tokens_clamped", max_tokens=clamp,
                    reservation=in_cost + clamp * out_price,
                    message=f"max_tokens clamped to {clamp} so the worst case fits "
                            f"{remaining:.6f} USD")


def unbounded(engine: Context, model: str, why: str) -> Decision:
    """A budgeted call whose cost cannot be bounded: the `unknown_price` setting decides."""
    model = model or "a call that names no model (a Responses API stored prompt picks it)"
    if engine.config.unknown_price == "allow":
        return Decision("allow", "price_unknown", price_known=False,
                        message=f"{model}: {why}; sent unbudgeted (unknown_price='allow')")
    return Decision("stop", "price_unknown", price_known=False,
                    message=f"{model}: {why}, so the budget cannot bound it (unknown_price='stop'; "
                            f"set a price in [models] or unknown_price='allow')")


def _stop(needed: float, remaining: float, model: str) -> Decision:
    return Decision("stop", "budget_exceeded",
                    message=f"{model} needs at least {needed:.6f} USD; {max(remaining, 0):.6f} left")


def _cheaper(engine: Context, request: Request, view: ChainView, model: str) -> str | None:
    """The best allowed candidate cheaper than `model` and than the model asked for (a switch
    under pressure never costs more than the request), by KPI weights (or quality)."""
    references = []
    for name in {model, request.model}:
        provider, _bare, _name = engine.names(name, request.provider if name == request.model else None)
        price: Price | None = engine.prices.price(name, provider)
        if price is not None:
            references.append(price.cost(1000, 300))
    if not references:
        return None
    reference = min(references)
    options = [c for c in engine.candidates(request, view)
               if (cost := c.unit_cost()) is not None and cost < reference]
    if not options:
        return None
    scores = engine.scores(options, view.weights or {"quality": 1.0})
    return max(options, key=lambda c: (scores[c.name], -(c.unit_cost() or 0.0))).name

