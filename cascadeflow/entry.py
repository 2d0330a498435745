"""A trace entry: one decision on one step, filled in as the step goes (decided, sent, settled)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Entries that are not steps of their own: guardrail findings and cascade events (their
# `message` may quote what a provider said).
SIDE_OPERATIONS = frozenset({"guardrail", "cascade"})
# Fallback reasons that answer without another provider: a session does not count them.
NOT_FALLBACKS = frozenset({"degraded_answer", "static_answer"})

# The keys of a trace entry, in the order `trace()` gives them.
TRACE_KEYS = (
    "step", "action", "reason", "applied", "mode", "model", "requested_model", "target_model",
    "provider", "agent", "operation", "cost", "latency_ms", "tokens_in", "tokens_out",
    "cached_tokens", "reasoning_tokens", "usage_estimated", "price_known", "tool_calls", "tool",
    "tools_denied", "budget_remaining", "error", "status", "finish_reason", "run_id", "ts",
)


@dataclass(slots=True, eq=False)
class Entry:
    action: str
    reason: str
    applied: bool
    mode: str
    requested_model: str | None
    model: str | None
    target_model: str | None = None
    provider: str | None = None
    agent: str | None = None
    operation: str = "chat"
    run_id: str = ""
    cost: float | None = 0.0
    latency_ms: float | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    price_known: bool = True
    tool_calls: int = 0
    tool: str | None = None
    tools_denied: tuple[str, ...] = ()
    budget_remaining: float | None = None
    error: str | None = None
    status: str = "pending"
    finish_reason: str | None = None
    ts: float = field(default_factory=time.time)
    content: dict[str, Any] | None = None
    extra: dict[str, Any] | None = None

    def as_dict(self, step: int) -> dict[str, Any]:
        out: dict[str, Any] = {"step": step}
        for key in TRACE_KEYS[1:]:
            value = getattr(self, key)
            out[key] = list(value) if isinstance(value, tuple) else value
        if self.content is not None:
            out["content"] = self.content
        if self.extra:
            out.update(self.extra)
        return out
