"""Tool rules: the tool-call cap, allow and deny lists, and approval of irreversible tools."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from cascadeflow.policy.context import Context
from cascadeflow.policy.decision import Decision
from cascadeflow.policy.state import SessionState
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request

APPROVER_FAILED = "approver_failed"  # the approver raised or gave no bool: denied with `approver_error`
WOULD_ASK = "would_need_approval"  # the approver's answer (not yet asked) decides


def cap_reached(view: ChainView, executed: bool) -> SessionState | None:
    """The first session whose `max_tool_calls` is used up.

    Model requests are checked against the tool calls models asked for, `@tool` executions
    against the executions, so a requested call that is then executed counts once.
    """
    for session in view.tool_capped:
        cap = session.limits.max_tool_calls
        used = session.tool_executions if executed else session.tool_calls
        if cap is not None and used >= cap:
            return session
    return None


def _listed(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def not_allowed(name: str, view: ChainView) -> bool:
    """True when any session's or compliance profile's lists forbid the tool."""
    for allow, deny in view.tool_lists:
        if _listed(name, deny):
            return True
        if allow is not None and not _listed(name, allow):
            return True
    return False


def needs_approval(request: Request, view: ChainView) -> bool:
    """An irreversible tool, or one a guardrail profile's `require_approval` names (globs, as
    the tool lists take)."""
    return request.irreversible or _listed(request.tool or request.model, view.approval_tools)


def exempt(name: str, patterns: Sequence[str]) -> bool:
    """A tool the caps and lists leave alone: an agent framework's own (`tools_exempt`), such as
    pydantic-ai's `final_result` output tool or an Agents SDK `transfer_to_*` handoff. Stripping
    those breaks the framework, not the agent's reach."""
    return bool(patterns) and _listed(name, patterns)


def counted(names: Sequence[str], calls: int, patterns: Sequence[str]) -> int:
    """Tool calls that count toward `max_tool_calls`: the calls to exempt tools are left out."""
    if not names or not patterns:
        return calls
    return max(calls - sum(1 for n in names if exempt(n, patterns)), 0)


def check_request(engine: Context, request: Request, view: ChainView) -> Decision | None:
    """Tools to strip from a model request (never the exempt ones)."""
    if not request.offers_tools:
        return None
    names = [n for n in request.tool_names() if not exempt(n, view.tools_exempt)]
    if not names:
        return None
    full = cap_reached(view, executed=False)
    if full is not None:
        return Decision("deny_tool", "max_tool_calls_reached", tools_denied=tuple(names),
                        message=f"max_tool_calls={full.limits.max_tool_calls} reached")
    denied = tuple(n for n in names if not_allowed(n, view))
    if denied:
        return Decision("deny_tool", "tool_not_allowed", tools_denied=denied,
                        message=f"tools not allowed here: {', '.join(denied)}")
    return None


def check_execution(engine: Context, request: Request, view: ChainView) -> Decision | None:
    """Whether a `@tool` function may run."""
    name = request.tool or request.model
    full = cap_reached(view, executed=True)
    if full is not None:
        return Decision("deny_tool", "max_tool_calls_reached", tools_denied=(name,),
                        message=f"max_tool_calls={full.limits.max_tool_calls} reached")
    if view.tool_lists and not_allowed(name, view):
        return Decision("deny_tool", "tool_not_allowed", tools_denied=(name,),
                        message=f"tool {name!r} is not allowed here")
    needed = needs_approval(request, view)
    approved = request.kwargs.get("approved")
    if needed and approved == APPROVER_FAILED:
        error = request.kwargs.get("approver_error", "raised an error")
        return Decision("deny_tool", "approver_error", tools_denied=(name,),
                        message=f"the approver {error} for irreversible tool {name!r}: denied")
    if needed and approved is not True:
        if engine.approver is not None and approved is None:  # observe mode does not ask it
            return Decision("deny_tool", WOULD_ASK, tools_denied=(name,),
                            message=f"irreversible tool {name!r} would be put to the approver")
        why = "no approver is configured" if engine.approver is None else "the approver declined"
        return Decision("deny_tool", "tool_requires_approval", tools_denied=(name,),
                        message=f"irreversible tool {name!r} needs approval: {why}")
    return None
