"""A settled or stopped step as a usage event, and what it adds to the shared counters.

Runs on the worker after the step's trace entry is complete; the ledger's writer commits the
result in a batch. Spend goes to every windowed budget of the chain (those only watched too),
tokens and spend to its rate limits, and the step's hold is released in the same commit. A budget
counts the spend in the window that admitted the step (where its hold was), a rate in the one
it ended in.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cascadeflow.ledger import Ledger, Settlement, Shares, UsageEvent, nano
from cascadeflow.ledger.quotas import scope_value
from cascadeflow.ledger.store import Counter
from cascadeflow.pipeline.step import Step


def settle(step: Step, ledger: Ledger) -> None:
    """Queue the step's event and counter amounts for the ledger's writer."""
    shares: Shares | None = step.view.shared
    event = _event(step, ledger)
    amounts: list[tuple[Counter, int]] = []
    if shares is not None and not step.stopped:
        cost = step.cost  # no price: what was held is the best bound of what it cost
        spent = step.held if cost is None else nano(cost, up=False)
        amounts = [(b.counter, spent) for b in (*shares.budgets, *shares.watched)]
        for rate in shares.rates:
            used = event.tokens_in + event.tokens_out if rate.unit == "tokens" else spent
            amounts.append((rate.counter, used))
    elif shares is not None and step.hold is not None:  # stopped after its hold may have been
        amounts = [(b.counter, 0) for b in shares.budgets]  # taken: released, nothing added
    # a budget's spend goes into the window its hold was checked and taken in (a call that
    # started at 23:59:59 and waited past midnight for money was admitted by tomorrow's budget)
    counted = event.ts if step.held_at is None else step.held_at
    ledger.settle(Settlement(event, counted, step.hold, amounts, ended=step.ended_ns / 1e9))


def _event(step: Step, ledger: Ledger) -> UsageEvent:
    entry, chain, usage = step.entry, step.chain, step.usage
    metadata: dict[str, Any] = {}
    for session in reversed(chain):
        metadata.update(session.metadata)
    root, parent = chain[-1], step.session.parent
    event = UsageEvent(
        ts=step.started_ns / 1e9, run_id=step.session.run_id, step=step.step_no,
        user=scope_value("user", chain), project=scope_value("project", chain),
        agent=step.session.agent_in_chain, workflow=chain[-1].agent,
        operation=step.request.operation, requested_model=entry.requested_model, model=entry.model,
        provider=entry.provider, cost=entry.cost, latency_ms=entry.latency_ms, status=entry.status,
        error=entry.error, action=entry.action, reason=entry.reason, applied=entry.applied,
        mode=entry.mode, tool=entry.tool, tool_calls=entry.tool_calls,
        root_run_id=None if root.ambient else root.run_id,
        parent_run_id=None if parent is None else parent.run_id, root_step=step.numbers[-1],
        budget=root.limits.budget, metadata=metadata or None, content=entry.content,
    )
    if usage is not None:
        event.tokens_in, event.tokens_out = usage.tokens_in, usage.tokens_out
        event.cached_tokens, event.cache_write_tokens = usage.cached_tokens, usage.cache_write_tokens
        event.reasoning_tokens = usage.reasoning_tokens
        if step.request.operation == "chat":
            event.prefix_hash = _prefix_hash(step, ledger.hash_key)
    return event


def _prefix_hash(step: Step, key: bytes) -> str | None:
    """A keyed hash of what a provider's prompt cache can reuse: the system messages and the
    tools, in order. The same prefix hashes the same in every process on one ledger; the text
    cannot be recovered from it."""
    kwargs = step.request.kwargs
    messages = kwargs.get("messages")
    if not isinstance(messages, list):
        return None
    system = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "system"]
    tools = kwargs.get("tools")
    if not system and not tools:
        return None
    blob = json.dumps([system, tools], sort_keys=True, default=str).encode()
    return hashlib.blake2b(blob, key=key, digest_size=8).hexdigest()
