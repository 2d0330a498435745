"""Enforce mode's changes to a request: switched model, clamped `max_tokens`, removed tools.

The caller's kwargs are never edited in place: a changed request is a copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from cascadeflow.policy.decision import Decision
from cascadeflow.request import MAX_TOKEN_KEYS, Request, tool_name


def apply(request: Request, decisions: Sequence[Decision], edited: Mapping[str, Any] | None = None
          ) -> dict[str, Any]:
    """The kwargs to send: a copy with switches, clamps, tool removals and the arguments the
    input guardrails edited (the prompt, `instructions`)."""
    kwargs = request.kwargs
    changed: dict[str, Any] | None = None
    for decision in decisions:
        if decision.action == "switch_model" and decision.target_model:
            changed = changed or dict(kwargs)
            target = decision.target_model
            if request.client == "openai" and "/" in target:
                target = target.split("/", 1)[1]
            changed["model"] = target
        if decision.max_tokens is not None:
            changed = changed or dict(kwargs)
            key = next((k for k in MAX_TOKEN_KEYS if k in kwargs),
                       "max_output_tokens" if request.operation == "responses" else "max_tokens")
            changed[key] = decision.max_tokens
        if decision.action == "deny_tool" and decision.tools_denied:
            changed = changed or dict(kwargs)
            strip_tools(changed, set(decision.tools_denied))
    if edited is not None:
        changed = changed or dict(kwargs)
        changed.update(edited)
    return kwargs if changed is None else changed


def strip_tools(kwargs: dict[str, Any], denied: set[str]) -> None:
    """Remove denied tools (and a `tool_choice` naming one); no tools left removes the keys."""
    tools = [t for t in kwargs.get("tools") or () if tool_name(t) not in denied]
    choice = kwargs.get("tool_choice")
    if tools:
        kwargs["tools"] = tools
        named = choice.get("function", choice) if isinstance(choice, dict) else None
        if isinstance(named, dict) and named.get("name") in denied:
            kwargs.pop("tool_choice", None)
    else:
        for key in ("tools", "tool_choice", "parallel_tool_calls"):
            kwargs.pop(key, None)
