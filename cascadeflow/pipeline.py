"""The step pipeline: the one path every intercepted call walks, whatever client made it.

`begin` finds the session chain, asks the policy engine, records the decision, reserves budget
and (in enforce mode only) rewrites the request. The returned `Step` is settled exactly once,
by `finish` or `fail`, when the response, the stream or the error is known.
"""

from __future__ import annotations

import time
from typing import Any

from cascadeflow import runtime
from cascadeflow.errors import (
    BudgetExceeded,
    ComplianceViolation,
    GuardrailBlocked,
    PolicyStop,
    StepLimitReached,
    ToolDenied,
)
from cascadeflow.guardrails.enforce import PROMPT_KEYS, alert_findings, finding_entry, scan_input
from cascadeflow.guardrails.scan import Finding
from cascadeflow.policy.decision import Decision
from cascadeflow.policy.view import ChainView
from cascadeflow.request import MAX_TOKEN_KEYS, Request, Usage, attempting, tool_name
from cascadeflow.secrets import scrub
from cascadeflow.session import Entry, Session, current
from cascadeflow.telemetry.alerts import Alert

_STOPS: dict[str, type[PolicyStop]] = {
    "budget_exceeded": BudgetExceeded,
    "max_steps_reached": StepLimitReached,
    "compliance_no_allowed_model": ComplianceViolation,
}


class Step:
    """One call between decision and settlement."""

    __slots__ = ("_settled", "_t0", "args", "chain", "decision", "entry", "kwargs", "model",
                 "request", "rt", "session", "span", "step_no", "view")

    def __init__(self, rt: runtime.Runtime, request: Request, session: Session, step_no: int,
                 decision: Decision, entry: Entry) -> None:
        self.rt = rt
        self.request = request
        self.session = session
        self.chain = session.chain
        self.step_no = step_no
        self.decision = decision
        self.entry = entry
        self.model = entry.model or request.model
        self.kwargs = request.kwargs
        self.args: tuple[Any, ...] = request.args
        self.span: Any = None
        self.view: ChainView | None = None
        self._settled = False
        self._t0 = time.perf_counter()

    def finish(self, usage: Usage) -> None:
        """Settle with the call's usage: cost replaces the reservation on every enclosing session."""
        if self._settled:
            return
        entry = self.entry
        entry.latency_ms = (time.perf_counter() - self._t0) * 1000.0
        entry.tokens_in = usage.tokens_in
        entry.tokens_out = usage.tokens_out
        entry.cached_tokens = usage.cached_tokens
        entry.reasoning_tokens = usage.reasoning_tokens
        entry.usage_estimated = usage.estimated
        entry.tool_calls = usage.tool_calls
        entry.finish_reason = usage.finish_reason
        if entry.status == "pending":
            entry.status = "ok"
        if self.request.operation != "tool":
            price = self.rt.engine.prices.price(self.model, entry.provider)
            if price is None and usage.model:
                price = self.rt.engine.prices.price(usage.model, entry.provider)
            entry.price_known = price is not None
            entry.cost = None if price is None else price.cost(usage.tokens_in, usage.tokens_out,
                                                               usage.cached_tokens)
            self.rt.engine.latency.observe(self.rt.engine.names(self.model, entry.provider)[2],
                                           entry.latency_ms)
            if self.rt.capture_content(self.chain):
                entry.content = {"prompt": scrub(self.request.prompt), "completion": scrub(usage.text)}
        self._settle(usage)

    def fail(self, exc: BaseException, usage: Usage | None = None, status: str = "error") -> None:
        """Settle a call that raised (or a stream that broke): the error type is recorded."""
        if self._settled:
            return
        self.entry.error = type(exc).__name__
        self.entry.status = status
        if usage is not None:
            self.finish(usage)
        else:
            self.entry.latency_ms = (time.perf_counter() - self._t0) * 1000.0
            self.entry.cost = 0.0
            self._settle(None)

    def _settle(self, usage: Usage | None) -> None:
        self._settled = True
        entry = self.entry
        reservation = self.decision.reservation
        crossed: list[Session] = []
        threshold = self.rt.config.budget_alert
        with self.session.lock:
            for session in self.chain:
                budget = session.limits.budget
                if reservation and budget is not None:
                    session.reserved -= reservation
                session.settle(entry)
                if budget and not session.alerted and session.spent >= threshold * budget:
                    session.alerted = True
                    crossed.append(session)
        if self.span is not None and self.rt.telemetry is not None:
            self.rt.telemetry.step_finished(self, self.span, usage)
            self.span = None
        for session in crossed:
            self.rt.alerts.emit(Alert(
                "budget_threshold", f"{session.agent or 'run'} {session.run_id[:8]} spent "
                f"{session.spent:.6f} of {session.limits.budget} USD ({threshold:.0%} threshold)",
                run_id=session.run_id, step=self.step_no,
                attributes={"budget": session.limits.budget, "spent": session.spent,
                            "agent": session.agent}))


def begin(request: Request) -> Step | None:
    """Decide and record one step; raise the stop in enforce mode; None when mode is off."""
    rt = runtime.state()
    if rt.mode == "off":
        return None
    session = current() or rt.ambient
    enforce = rt.mode == "enforce"
    chain = session.chain
    view = rt.engine.view(chain)
    if attempting.get():
        request.pinned = True
    if request.operation == "tool":
        if (request.irreversible or request.tool in view.approval_tools) and rt.engine.approver is not None:
            args, kwargs = request.kwargs.get("args", ()), request.kwargs.get("kwargs", {})
            request.kwargs["approved"] = bool(rt.engine.approver(request.model, tuple(args), dict(kwargs)))
        findings: list[Finding] = []
        edited = None
    else:
        findings, edited = scan_input(request, view, enforce)
    agent = session.agent_in_chain
    with session.lock:
        decisions = rt.engine.decide(request, chain)
        primary = decisions[0]
        stopped = primary.action == "stop" or (request.operation == "tool"
                                               and primary.action == "deny_tool")
        blocked = next((f for f in findings if f.action == "block"), None)
        if blocked is not None and enforce and not stopped:
            primary = Decision("block", blocked.reason, message=blocked.message)
            stopped = True
        steps = [s.next_step() for s in chain]
        remaining = _remaining(chain)
        entries = [_entry(rt, request, d, enforce, agent, session.run_id, remaining) for d in decisions]
        entries += [finding_entry(rt, f, request, enforce, agent, session.run_id, view.policy_version)
                    for f in findings]
        for extra_entry in entries[1:]:
            extra_entry.status = "ok"
        for s, step_no in zip(chain, steps, strict=True):
            for entry in entries:
                s.add_entry(step_no, entry)
            if stopped and enforce:
                s.stopped = True
        if stopped and enforce:
            for entry in entries:
                entry.status = "stopped"
                entry.cost = 0.0
        elif primary.reservation:
            for s in chain:
                if s.limits.budget is not None:
                    s.reserved += primary.reservation
        if request.operation == "tool" and not (stopped and enforce):
            for s in chain:
                s.tool_executions += 1
    entry = entries[0]
    if findings:
        alert_findings(rt, findings, enforce, session, steps[0])
    step = Step(rt, request, session, steps[0], primary if not stopped else _no_reservation(primary),
                entry)
    telemetry = rt.telemetry
    if telemetry is not None:
        telemetry.decisions_made(entries)
    if stopped and enforce:
        if primary.action == "block":
            entry.status = "stopped"
            error: PolicyStop = GuardrailBlocked(primary.message, reason=primary.reason,
                                                 run_id=session.run_id, step=steps[0],
                                                 entry=entry.as_dict(steps[0]))
        else:
            error = _stop_error(primary, session, steps[0], entry)
        if telemetry is not None:
            entry.error = type(error).__name__
            telemetry.step_finished(step, telemetry.step_started(step), None)
            entry.error = None
        raise error
    if enforce:
        step.kwargs = _apply(request, decisions)
        if edited is not None:
            step.kwargs = dict(step.kwargs)
            step.kwargs[PROMPT_KEYS[request.operation]] = edited
    step.view = view
    if telemetry is not None:
        step.span = telemetry.step_started(step)
    return step


def _no_reservation(decision: Decision) -> Decision:
    return Decision(decision.action, decision.reason, price_known=decision.price_known)


def _remaining(chain: tuple[Session, ...]) -> float | None:
    lefts = [s.limits.budget - s.spent for s in chain if s.limits.budget is not None]
    return min(lefts) if lefts else None


def _entry(rt: runtime.Runtime, request: Request, decision: Decision, enforce: bool,
           agent: str | None, run_id: str, remaining: float | None) -> Entry:
    applied = enforce and (decision.action != "allow" or decision.max_tokens is not None)
    target = decision.target_model
    called = target if (target and enforce) else request.model
    provider = request.provider
    if called != request.model:
        provider = rt.engine.names(called, None)[0]
    entry = Entry(
        action=decision.action, reason=decision.reason, applied=applied, mode=rt.mode,
        requested_model=request.model if request.operation != "tool" else None,
        model=called if request.operation != "tool" else None, target_model=target,
        provider=provider, agent=agent, operation=request.operation, run_id=run_id,
        tools_denied=decision.tools_denied, budget_remaining=remaining,
        price_known=decision.price_known,
        tool=request.tool,
    )
    extra: dict[str, Any] = {}
    if decision.message:
        extra["message"] = decision.message
    if decision.max_tokens is not None:
        extra["max_tokens"] = decision.max_tokens
    if extra:
        entry.extra = extra
    return entry


def _stop_error(decision: Decision, session: Session, step_no: int, entry: Entry) -> PolicyStop:
    kind = ToolDenied if decision.action == "deny_tool" else _STOPS.get(decision.reason, PolicyStop)
    message = decision.message or decision.reason
    return kind(f"cascadeflow stopped step {step_no}: {message} ({decision.reason})",
                reason=decision.reason, run_id=session.run_id, step=step_no,
                entry=entry.as_dict(step_no))


def _apply(request: Request, decisions: list[Decision]) -> dict[str, Any]:
    """The kwargs to send in enforce mode: a copy with switches, clamps and tool removals applied."""
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
            _strip_tools(changed, set(decision.tools_denied))
    return kwargs if changed is None else changed


def _strip_tools(kwargs: dict[str, Any], denied: set[str]) -> None:
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

