"""Budgets and rate limits shared with other processes, at admission.

Before the decision, the chain's windowed budgets read what every process settled and holds
(`refresh`); after it, the step takes its hold on each of them and a request slot of each rate
limit in one atomic store operation (`acquire`). Another process may have taken the money in
between: then the step decides again with the figures the store saw (a smaller clamp, a cheaper
model, a wait for calls in flight elsewhere, or a stop). In observe mode the worker replays this
without holding anything: request slots are still counted, so a would-be rate limit is exact.

A store that cannot be reached stops the step (`store_failure = "closed"`, reason
`store_unavailable`) or lets it through with an alert (`"open"`); either way it is counted.
"""

from __future__ import annotations

import time
import uuid

from cascadeflow.alert import Alert
from cascadeflow.ledger import Ledger, Shares, StoreUnavailable, nano
from cascadeflow.pipeline.step import Step
from cascadeflow.policy.budget import WAIT
from cascadeflow.policy.decision import Decision

ATTEMPTS = 4  # decisions again after a refusal, before waiting for settlements instead


def refresh(step: Step, ledger: Ledger, shares: Shares) -> Decision | None:
    """Read the shared figures into the chain's budgets; a stop when the store is down and
    `store_failure` says closed."""
    if not (shares.budgets or shares.watched) or step.request.operation == "tool":
        return None
    try:
        ledger.refresh(shares, time.time())
    except StoreUnavailable as exc:
        return _unreachable(step, ledger, exc)
    return None


def acquire(step: Step, ledger: Ledger, shares: Shares, decisions: list[Decision],
            patient: bool = True) -> list[Decision] | None:
    """Take the step's holds and slots for `decisions` (under the chain's lock): the decisions to
    account, maybe new ones; None when the step must wait for calls in flight to settle."""
    rt, request, view = step.rt, step.request, step.view
    if request.operation == "tool" or step.store_down:  # a tool's execution is no model call;
        return decisions  # a store that just failed this step (store_failure open) is not asked again
    hold = uuid.uuid4().hex
    for _ in range(ATTEMPTS):
        primary = decisions[0]
        if primary.action == "stop" or primary.reason == WAIT or (primary.action == "deny_tool" \
                and request.operation == "tool"):
            return None if primary.reason == WAIT else decisions
        reservation = primary.reservation if shares.budgets else 0.0
        now = time.time()
        try:
            refusal = ledger.acquire(shares, hold, reservation, now)
        except StoreUnavailable as exc:
            if shares.budgets and reservation > 0:  # a timed-out script may still run: the
                step.hold, step.held_at = hold, now  # settlement releases what it took, if any
            stop = _unreachable(step, ledger, exc)
            return decisions if stop is None else [stop]
        if refusal is None:
            if shares.budgets and reservation > 0:  # checked and held in the windows of `now`:
                step.hold, step.held, step.held_at = hold, nano(reservation), now  # spent there
            return decisions
        budgets = len(shares.budgets)
        if refusal.index >= budgets:  # a rate limit: no waiting, the window moves on its own
            return [_rate_limited(shares, refusal.index - budgets, refusal.settled)]
        shares.budgets[refusal.index].update(refusal.settled, refusal.held)
        decisions = rt.engine.decide_in(request, view, patient)
    if patient:
        return None
    return [Decision("stop", "budget_window_exceeded", message="calls in flight in other processes "
                     "hold what is left of a shared budget, and none settled while this call waited")]


def replay(step: Step, ledger: Ledger, shares: Shares, decisions: list[Decision]) -> list[Decision]:
    """Observe mode, on the worker: count the request slots; a would-be rate limit if one is full
    (nothing is held: observe never waits)."""
    if not (shares.slots or shares.rates) or decisions[0].action == "stop" \
            or step.request.operation == "tool":
        return decisions
    try:
        refusal = ledger.acquire(Shares((), (), shares.slots, shares.rates), uuid.uuid4().hex, 0.0,
                                 time.time())
    except StoreUnavailable as exc:
        stop = _unreachable(step, ledger, exc)
        return decisions if stop is None else [stop]
    if refusal is None:
        return decisions
    return [_rate_limited(shares, refusal.index, refusal.settled)]


def _rate_limited(shares: Shares, index: int, used: int) -> Decision:
    """The stop for the rate at `index` (token and spend rates first, then request slots)."""
    rates = shares.rates
    if index < len(rates):
        rate = rates[index]
        shown = f"{used} tokens" if rate.unit == "tokens" else f"{used / 1e9:.6f} USD"
        per = "minute" if rate.unit == "tokens" else "hour"
        message = (f"limit {rate.limit}: {shown} in the last {per}, limit "
                   f"{rate.counter.limit if rate.unit == 'tokens' else rate.counter.limit / 1e9}")
    else:
        name, slot = shares.slots[index - len(rates)]
        message = f"limit {name}: {used} requests in the last minute, limit {slot.limit}"
    return Decision("stop", "rate_limited", message=message)


def _unreachable(step: Step, ledger: Ledger, exc: StoreUnavailable) -> Decision | None:
    """The store failed: count and alert; a stop when `store_failure` is closed."""
    alert = ledger.store_failed()
    step.store_down = True
    closed = ledger.spec.store_failure == "closed"
    if alert:
        step.rt.emit(Alert("store_unavailable", f"the ledger store failed ({exc}); "
                           f"{'calls under shared budgets stop' if closed else 'calls go on unchecked'}"
                           f" (store_failure={ledger.spec.store_failure!r})", severity="error",
                           attributes={"errors": ledger.store_errors}))
    if not closed:
        return None
    return Decision("stop", "store_unavailable",
                    message=f"shared budgets and limits cannot be checked: {exc}")
