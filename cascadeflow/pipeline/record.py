"""Writing down what happened: trace entries in every enclosing session, per-model totals,
captured content and telemetry.

These are tasks for the background worker (`cascadeflow.worker`): the caller's thread queues
them in step order and never waits for them; `summary()` and `trace()` do. The worker is the
only writer of what they write, so they take no lock the caller's thread could wait on.
"""

from __future__ import annotations

from collections.abc import Sequence

from cascadeflow.entry import Entry
from cascadeflow.guardrails.scan import Finding
from cascadeflow.pipeline import meter
from cascadeflow.pipeline.edit import sent_model
from cascadeflow.pipeline.step import Step
from cascadeflow.policy.decision import Decision
from cascadeflow.secrets import scrub


def entries(step: Step, findings: Sequence[Finding] = ()) -> list[Entry]:
    """The step's trace entries: one per decision (the primary first), then one per finding.

    `budget_remaining` is the tightest budget's remainder as the worker sees it now: every
    settlement that arrived before this step was queued before it, so it is what was spent
    when the step was decided."""
    step.remaining = remaining(step)
    out = [decision_entry(step, d) for d in step.decisions]
    out += [finding_entry(step, f) for f in (*step.findings, *findings)]
    for extra in out[1:]:
        extra.status = "ok"
    return out


def remaining(step: Step) -> float | None:
    """The tightest budget's remainder as the settlements recorded so far leave it."""
    out = step.remaining
    for b in step.view.budgeted:
        left = (b.limits.budget or 0.0) - b.spent
        if out is None or left < out:
            out = left
    return out


def decision_entry(step: Step, decision: Decision) -> Entry:
    rt, request = step.rt, step.request
    applied = rt.enforce and (decision.action != "allow" or decision.max_tokens is not None)
    target = decision.target_model
    # the model called is the name sent (an openai SDK client gets a switch's target bare, as
    # it gets every model it calls): the same model must not be two in the totals and ledger
    litellm_name = target if (target and rt.enforce) else request.model
    called = request.model if litellm_name == request.model else sent_model(request, litellm_name)
    tool = request.operation == "tool"
    provider = request.provider
    if called != request.model or (provider is None and not tool):
        # a bare name: litellm's map knows its provider; one it does not know, sent to an
        # `api_base`, goes to an OpenAI-compatible server
        provider = rt.engine.names(litellm_name, None)[0] or ("openai" if request.api_base else None)
    entry = Entry(
        action=decision.action, reason=decision.reason, applied=applied, mode=rt.mode,
        requested_model=None if tool else request.model, model=None if tool else called,
        target_model=target, provider=provider, agent=step.session.agent_in_chain,
        operation=request.operation, run_id=step.session.run_id, tools_denied=decision.tools_denied,
        budget_remaining=step.remaining, price_known=decision.price_known, tool=request.tool,
        ts=step.started_ns / 1e9, status="pending",
    )
    if decision.message or decision.max_tokens is not None:
        entry.extra = {}
        if decision.message:
            entry.extra["message"] = decision.message
        if decision.max_tokens is not None:
            entry.extra["max_tokens"] = decision.max_tokens
    return entry


def finding_entry(step: Step, finding: Finding) -> Entry:
    """A guardrail finding as a trace entry: never the matched text, only its keyed hash."""
    rt, request = step.rt, step.request
    entry = Entry(action=finding.action, reason=finding.reason,
                  applied=rt.enforce and finding.action != "log_only", mode=rt.mode,
                  requested_model=request.model, model=request.model,
                  agent=step.session.agent_in_chain, operation="guardrail",
                  run_id=step.session.run_id, status="ok")
    entry.extra = {"rule": finding.rule, "detector": finding.detector, "kind": finding.kind,
                   "score": finding.score, "stage": finding.stage,
                   "policy_version": step.view.policy_version, "match_hash": finding.match_hash,
                   "count": finding.count}
    if finding.distinct > 1:
        entry.extra["distinct"] = finding.distinct
        entry.extra["match_hashes"] = list(finding.hashes)
    return entry


def append(step: Step, entries: Sequence[Entry]) -> None:
    """Add entries to the trace of every session of the step's chain, under the step's numbers,
    and keep the non-allow ones in the ledger."""
    for session, number in zip(step.chain, step.numbers, strict=True):
        for entry in entries:
            session.add_entry(number, entry)
    if step.rt.ledger is not None:
        step.rt.ledger.entries(step.chain, step.numbers[-1], entries,
                               step.entries[0] if step.entries else None)
    observer = step.rt.observer
    if observer is not None:
        step.rt.observed(observer.decisions_made, entries)


def admitted(step: Step, findings: Sequence[Finding] = ()) -> None:
    """An admitted step: its entries (decisions, then input findings) into the trace."""
    made = entries(step, findings)
    step.entries, step.entry = made, made[0]
    append(step, made)


def stopped(step: Step) -> None:
    """A step enforcement stopped before sending: its entries, its usage event, and a span
    carrying the stop. Its entries were made on the caller's thread, for the error, while
    earlier steps may still have been settling: their `budget_remaining` is read again here, in
    order, as every other step's is."""
    step.remaining = None
    step.remaining = left = remaining(step)
    for entry in step.entries:
        entry.budget_remaining = left
    append(step, step.entries)
    if step.rt.ledger is not None:
        meter.settle(step, step.rt.ledger)
    observer = step.rt.observer
    if observer is not None:
        if step.request.operation != "tool":
            step.content_allowed = step.rt.capture_allowed(step.view)
        step.rt.observed(observer.step_recorded, step)


def fill(entry: Entry, step: Step) -> None:
    """Copy what the settlement found into the entry."""
    entry.latency_ms = step.latency_ms
    entry.cost = step.cost
    entry.price_known = step.price_known
    entry.status = step.status
    entry.error = step.error
    usage = step.usage
    if usage is not None:
        entry.tokens_in = usage.tokens_in
        entry.tokens_out = usage.tokens_out
        entry.cached_tokens = usage.cached_tokens
        entry.reasoning_tokens = usage.reasoning_tokens
        entry.usage_estimated = usage.estimated
        entry.tool_calls = usage.tool_calls
        entry.finish_reason = usage.finish_reason


def settled(step: Step) -> None:
    """A finished step: its entry completed, totals per model, captured content (opt-in), and
    its span and metrics."""
    entry = step.entry
    usage = step.usage
    fill(entry, step)
    for session in step.chain:
        session.tally(entry)
    rt = step.rt
    if usage is not None and step.request.operation != "tool":
        step.content_allowed = rt.capture_allowed(step.view)
        if rt.config.capture_content and step.content_allowed:
            entry.content = {"prompt": scrub(step.sent_prompt), "completion": scrub(usage.text)}
    if rt.ledger is not None:
        meter.settle(step, rt.ledger)
    if rt.observer is not None:
        rt.observed(rt.observer.step_recorded, step)
