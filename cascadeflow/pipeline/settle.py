"""After the call: what it cost replaces what was reserved.

The caller's thread only notes that the response arrived (and when: the latency it observes is
what latency targets read on the next decision); reading the usage, pricing it and charging it
to every enclosing session is the worker's. Until then the step's worst-case reservation stays
held, so a decision taken in between is only ever more cautious; when the policy engine would
stop, clamp or switch for want of budget, or a tool cap is in play, admission first waits for
the worker to settle what has arrived (see `admit`).

A step is settled exactly once, whether it finished, failed, or its stream was dropped.
"""

from __future__ import annotations

import time
from typing import Any

from cascadeflow import billing, tokens
from cascadeflow.alert import Alert
from cascadeflow.entry import Entry
from cascadeflow.errors import GuardrailBlocked
from cascadeflow.pipeline import guard, record
from cascadeflow.pipeline.step import Step
from cascadeflow.policy import tools
from cascadeflow.policy.decision import Decision
from cascadeflow.pricing import DEFAULT_MAX_OUTPUT
from cascadeflow.request import output_limit
from cascadeflow.session import Session
from cascadeflow.usage import Usage, carried_usage, read_usage


def respond(step: Step, response: Any, operation: str, usage: Usage | None = None,
            ended: int | None = None) -> None:
    """The call returned `response` (at `ended`, `time.perf_counter_ns()`, if not now); the
    worker reads its usage, unless given, and settles it. (The usual end of an enforced call:
    kept to the few operations it needs.)"""
    if step.settled:
        return
    step.settled = True
    step.t1 = time.perf_counter_ns() if ended is None else ended
    if step.view.reads_latency:
        _observe_latency(step)
    step.worker.submit(_settle_response, step, response, operation, usage)


def settle_output(step: Step, response: Any) -> None:
    """Settle an unstreamed answer that the caller's thread may still edit: output rules that
    act in enforce, then the originals of reversible placeholders. Its usage (and, with capture,
    its text) is read after the rules' edits: on the worker, as for any answer, unless the
    originals go back into it (read here, before they do, so the trace never holds them) or
    the rules withheld it (read here, without its text)."""
    operation, arrived = step.request.operation, time.perf_counter_ns()
    withheld, texts, blocked = True, [], None
    try:
        if step.view.output_acts:
            guard.check_output(step, response)
        elif step.view.output_rules:  # rules that change nothing: their texts, read before restoring
            texts = guard.output_texts(operation, response)
        withheld = False
    except GuardrailBlocked as exc:
        blocked = exc
        raise
    finally:  # a blocked answer is settled too, as the provider billed it
        usage = None
        if withheld or step.placeholders is not None:
            usage = read_usage(operation, response)
            if withheld:  # the trace keeps what the rules let through: none of a blocked answer's text
                usage.text = ""
        if blocked is not None:  # the caller gets the error: `blocked`, as a blocked stream is
            fail(step, blocked, usage, status="blocked", ended=arrived)
        else:
            respond(step, response, operation, usage, arrived)
    if texts:
        step.post(guard.output_later, step, *texts)
    if step.placeholders is not None:
        guard.restore_output(step, response)


def finish(step: Step, usage: Usage, status: str = "ok", ended: int | None = None) -> None:
    """Settle with a usage already known (a stream's, a tool's). `ended` is when the response
    arrived (`time.perf_counter_ns()`), if not now."""
    if _arrived(step, ended):
        step.post(_settle, step, usage, status)


def fail(step: Step, exc: BaseException, usage: Usage | None = None, status: str = "error",
         ended: int | None = None) -> None:
    """Settle a call that raised (or a stream that broke): the error type is recorded, and the
    usage of a billed response that the client rejected after it arrived is charged.

    Its latency is observed for latency targets and KPIs only when a whole response arrived (a
    blocked answer, one the client rejected): an error's latency (an instant 429) says nothing
    of the model's speed, and would make a failing model look fastest and draw the calls."""
    if step.settled:
        return
    answered = status == "blocked"
    if usage is None and step.request.operation != "tool":
        usage = carried_usage(step.request.operation, exc)
        answered = usage is not None
    step.answered = answered
    if _arrived(step, ended):
        step.error = type(exc).__name__
        step.post(_settle, step, usage, status)


def _arrived(step: Step, ended: int | None) -> bool:
    """Mark the step settled-to-be (False if it already was) and note when. Latency targets and
    latency-weighted KPIs read observed latency at the next decision, so when the chain has
    either it is observed here; otherwise the worker observes it."""
    if step.settled:
        return False
    step.settled = True
    step.t1 = time.perf_counter_ns() if ended is None else ended
    if step.view.reads_latency:
        _observe_latency(step)
    return True


def _observe_latency(step: Step) -> None:
    if step.request.operation != "tool" and step.answered:
        engine = step.rt.engine
        latency = (step.t1 - step.t0) / 1e6
        engine.latency.observe(engine.names(step.model, step.provider)[2], latency)


# -- on the worker (or at once, when the worker is replaying an observed step) ---------------
def _settle_response(step: Step, response: Any, operation: str, usage: Usage | None = None) -> None:
    """(`usage` given: `settle_output` read it, and ran the output rules, on the caller's thread.)"""
    view = step.view
    if usage is None:
        usage = read_usage(operation, response)
        texts = guard.output_texts(operation, response) if view.output_rules and not view.output_acts else []
    else:
        texts = []
    _settle(step, usage, "ok")
    if texts:  # rules that change nothing
        guard.output_later(step, *texts)


def _settle(step: Step, usage: Usage | None, status: str) -> None:
    step.usage = usage
    step.status = status
    step.latency_ms = (step.t1 - step.t0) / 1e6
    rt = step.rt
    if not step.view.reads_latency:
        _observe_latency(step)
    if usage is not None and step.request.operation != "tool":
        prices = rt.engine.prices
        price = prices.price(step.model, step.provider)
        if price is None and usage.model:
            price = prices.price(usage.model, step.provider)
        if price is None:
            step.price_known, step.cost = False, None
        else:
            served = price.for_tier(usage.service_tier)  # (`priority` is billed higher)
            step.cost = served.cost(usage.tokens_in, usage.tokens_out, usage.cached_tokens,
                                    usage.cache_write_tokens, usage.audio_tokens_in, usage.audio_tokens_out)
    if usage is not None and usage.response_id and step.request.operation == "responses":
        rt.stored.settled(str(usage.response_id), usage.tokens_in + usage.tokens_out)
    calls = 0 if usage is None else tools.counted(usage.tool_names, usage.tool_calls,
                                                   step.view.tools_exempt)
    reservation = step.primary.reservation
    if (status == "unread" or _background(step, usage)) and step.cost is not None:
        step.cost = max(step.cost, reservation)  # billed, usage never seen: the worst case
    cost = step.cost
    crossed: list[Session] = []
    with step.session.lock:
        for session in step.chain:
            budget = session.limits.budget
            if reservation and budget is not None:
                session.reserved -= reservation
            if usage is not None:
                session.charge(cost, usage.tokens_in, usage.tokens_out, usage.cached_tokens, calls)
            if budget and not session.alerted and session.spent >= rt.config.budget_alert * budget:
                session.alerted = True
                crossed.append(session)
    record.settled(step)
    for session in crossed:
        _alert(step, session)


def _background(step: Step, usage: Usage | None) -> bool:
    """A Responses API call made with `background=True`: answered at once, queued, no usage
    yet; the provider bills the answer later, when no call of this process sees it. Charged
    its worst case (its usage marked estimated), or a background call would cost nothing."""
    if usage is None or step.request.operation != "responses" or usage.tokens_in or usage.tokens_out \
            or usage.finish_reason not in ("queued", "in_progress"):
        return False
    usage.estimated = True
    return True


def _alert(step: Step, session: Session) -> None:
    threshold = step.rt.config.budget_alert
    step.rt.emit(Alert(
        "budget_threshold", f"{session.agent or 'run'} {session.run_id[:8]} spent "
        f"{session.spent:.6f} of {session.limits.budget} USD ({threshold:.0%} threshold)",
        run_id=session.run_id, step=step.step_no,
        attributes={"budget": session.limits.budget, "spent": session.spent, "agent": session.agent}))


def output_cap(step: Step) -> int:
    """Output tokens the step's reservation pays for: its `max_tokens` (as sent, after a clamp)
    or the model's limit the reservation assumed, times `n`. Enforce cuts a stream past it."""
    asked = output_limit(step.kwargs)
    price = step.rt.engine.priced(step.model, step.provider)[1]
    limit = price.output_limit(asked) if price is not None else asked or DEFAULT_MAX_OUTPUT
    return int(limit) * billing.choices(step.request)


def would_cut(step: Step, usage: Usage | None) -> None:
    """Worker task, observe mode: a stream whose output passed what its reservation pays for
    (a provider that ignores `max_tokens`) is one enforce would have cut: a would-be stop on
    the step's entries, as enforce raises `BudgetExceeded` there (its entry's status `cut`)."""
    if usage is None or step.stopped or not step.primary.reservation:
        return
    cap = output_cap(step)
    text = usage.text + "".join(call[2] for call in usage.calls)
    if len(text.encode()) <= cap:  # no token is shorter than a byte: no cut possible, no tokenizing
        return
    used = tokens.count(text, step.model)
    if used <= cap:
        return
    cut(step, f"enforce would have cut the stream: its output ({used} tokens) passed the {cap} "
        f"tokens its budget reservation pays for")


def cut(step: Step, message: str, entry: Entry | None = None) -> None:
    """Worker task: the stop that cut the step's stream (enforce), or would have (observe), as
    an entry after the step's own, so both modes' traces name the same decision (`entry`: the
    one the enforce error carries)."""
    entry = entry or cut_entry(step, message)
    entry.status = step.status
    record.append(step, [entry])


def cut_entry(step: Step, message: str) -> Entry:
    """The entry of the stop that cuts (or would cut) a stream: the trace's, and the error's."""
    return record.decision_entry(step, Decision("stop", "budget_exceeded", message=message))
