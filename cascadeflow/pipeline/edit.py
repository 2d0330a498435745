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
    input guardrails edited (the prompt, `instructions`, tool descriptions)."""
    kwargs = request.kwargs
    changed: dict[str, Any] | None = None
    if edited is not None:  # first: a tool denied below is removed from edited tools too
        changed = {**kwargs, **edited}
    for decision in decisions:
        if decision.action == "switch_model" and decision.target_model:
            changed = changed or dict(kwargs)
            changed["model"] = sent_model(request, decision.target_model)
        if decision.max_tokens is not None:
            changed = changed or dict(kwargs)
            key = request.max_tokens_key
            extra = kwargs.get("extra_body")
            extra = extra if isinstance(extra, dict) else {}
            inside = [k for k in MAX_TOKEN_KEYS if isinstance(extra.get(k), int)]
            if inside:  # merged into the body over the argument: the clamp goes there too
                changed["extra_body"] = {**extra, **dict.fromkeys(inside, decision.max_tokens)}
            if key is not None or not inside:
                changed[key or _limit_key(request)] = decision.max_tokens
        if decision.action == "deny_tool" and decision.tools_denied:
            changed = changed or dict(kwargs)
            strip_tools(changed, set(decision.tools_denied))
    return kwargs if changed is None else changed


def sent_model(request: Request, target: str) -> str:
    """The name a switch to `target` (a litellm name) sends: an openai SDK client takes it
    without litellm's `provider/` prefix."""
    if request.client == "openai" and "/" in target:
        return target.split("/", 1)[1]
    return target


def _limit_key(request: Request) -> str:
    """Where a clamp goes when the caller set no limit: the Responses API's key, and for chat
    through the openai SDK `max_completion_tokens`, which OpenAI takes for every model (it
    rejects `max_tokens` for reasoning models); litellm maps its `max_tokens` per model."""
    if request.operation == "responses":
        return "max_output_tokens"
    if request.operation == "chat" and request.client == "openai":
        return "max_completion_tokens"
    return "max_tokens"


def strip_tools(kwargs: dict[str, Any], denied: set[str]) -> None:
    """Remove denied tools, from `tools` and the legacy `functions` (and a `tool_choice` or
    `function_call` naming one); none left in a list removes it and its companions."""
    _strip(kwargs, denied, "tools", ("tool_choice", "parallel_tool_calls"))
    _strip(kwargs, denied, "functions", ("function_call",))


def _strip(kwargs: dict[str, Any], denied: set[str], key: str, companions: tuple[str, ...]) -> None:
    tools = [t for t in kwargs.get(key) or () if tool_name(t) not in denied]
    choice_key = companions[0]
    choice = kwargs.get(choice_key)
    if tools:
        kwargs[key] = tools
        named = choice.get("function", choice) if isinstance(choice, dict) else None
        if isinstance(named, dict) and named.get("name") in denied:
            kwargs.pop(choice_key, None)
    else:
        for name in (key, *companions):
            kwargs.pop(name, None)
