"""After the call, on the caller's thread: what it cost replaces what was reserved.

Settling is what the next decision reads (spend, tool calls, observed latency), so it happens
before the caller gets the response back; writing it into the trace is queued for the worker.
A step is settled exactly once, whether it finished, failed, or its stream was dropped.
"""

from __future__ import annotations

import time

from cascadeflow.alert import Alert
from cascadeflow.pipeline import record
from cascadeflow.pipeline.step import Step
from cascadeflow.session import Session
from cascadeflow.usage import Usage


def finish(step: Step, usage: Usage, status: str = "ok", ended: float | None = None,
           ended_ns: int | None = None) -> None:
    """Settle with the call's usage: its cost replaces the reservation on every enclosing session.
    `ended` (perf_counter) and `ended_ns` are when the response arrived, if not now."""
    if step.settled:
        return
    step.settled = True
    latency = step.latency_ms = ((time.perf_counter() if ended is None else ended) - step.t0) * 1000.0
    step.ended_ns = time.time_ns() if ended_ns is None else ended_ns
    step.usage = usage
    step.status = status
    if step.request.operation != "tool":
        engine = step.rt.engine
        model, provider = step.model, step.provider
        price = engine.prices.price(model, provider)
        if price is None and usage.model:
            price = engine.prices.price(usage.model, provider)
        if price is None:
            step.price_known, step.cost = False, None
        else:
            step.cost = price.cost(usage.tokens_in, usage.tokens_out, usage.cached_tokens)
        engine.latency.observe(engine.names(model, provider)[2], latency)
    _settle(step, usage.tokens_in, usage.tokens_out, usage.cached_tokens, usage.tool_calls)


def fail(step: Step, exc: BaseException, usage: Usage | None = None, status: str = "error",
         ended: float | None = None, ended_ns: int | None = None) -> None:
    """Settle a call that raised (or a stream that broke): the error type is recorded."""
    if step.settled:
        return
    step.error = type(exc).__name__
    if usage is not None:
        finish(step, usage, status, ended, ended_ns)
        return
    step.settled = True
    step.status = status
    step.latency_ms = ((time.perf_counter() if ended is None else ended) - step.t0) * 1000.0
    step.ended_ns = time.time_ns() if ended_ns is None else ended_ns
    _settle(step, 0, 0, 0, 0)


def _settle(step: Step, tokens_in: int, tokens_out: int, cached: int, tool_calls: int) -> None:
    rt = step.rt
    reservation = step.primary.reservation
    cost = step.cost
    crossed: list[Session] = []
    with step.session.lock:
        for session in step.chain:
            budget = session.limits.budget
            if reservation and budget is not None:
                session.reserved -= reservation
            session.charge(cost, tokens_in, tokens_out, cached, tool_calls)
            if budget and not session.alerted and session.spent >= rt.config.budget_alert * budget:
                session.alerted = True
                crossed.append(session)
    step.post(record.settled, step)
    for session in crossed:
        _alert(step, session)


def _alert(step: Step, session: Session) -> None:
    threshold = step.rt.config.budget_alert
    step.rt.emit(Alert(
        "budget_threshold", f"{session.agent or 'run'} {session.run_id[:8]} spent "
        f"{session.spent:.6f} of {session.limits.budget} USD ({threshold:.0%} threshold)",
        run_id=session.run_id, step=step.step_no,
        attributes={"budget": session.limits.budget, "spent": session.spent, "agent": session.agent}))
