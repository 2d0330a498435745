"""Before the send, on the caller's thread: decide, admit, and in enforce mode change or stop.

`begin` runs the stages in order: freeze the request, approve a tool, scan the input when a rule
may change it, ask the policy engine, then, under the chain's lock, number the step, reserve
its worst-case cost, build its trace entries and queue them for the worker. In enforce mode a
stop raises here, before anything is sent; switches, clamps and redactions change the kwargs.
"""

from __future__ import annotations

from cascadeflow.errors import (
    BudgetExceeded,
    ComplianceViolation,
    GuardrailBlocked,
    PolicyStop,
    StepLimitReached,
    ToolDenied,
)
from cascadeflow.pipeline import edit, guard, record
from cascadeflow.pipeline.runtime import Runtime, attempting
from cascadeflow.pipeline.step import Step
from cascadeflow.policy.decision import Decision
from cascadeflow.request import Request
from cascadeflow.session import current

_STOPS: dict[str, type[PolicyStop]] = {
    "budget_exceeded": BudgetExceeded,
    "max_steps_reached": StepLimitReached,
    "compliance_no_allowed_model": ComplianceViolation,
}


def begin(rt: Runtime, request: Request) -> Step:
    """Admit one step in enforce mode; raise its `PolicyStop` when enforcement stops it.
    (Observe mode captures the call instead: see `cascadeflow.pipeline.observe`.)"""
    session = current() or rt.ambient
    if attempting.get():
        request.pinned = True
    view = rt.engine.view(session.chain, rt.policy())
    step = Step(rt, request, session, view)
    edited = None
    if request.operation == "tool":
        _approve(step)
    else:
        if view.input_rules:
            if rt.enforce and view.input_acts:
                edited = guard.scan_input(step)
            else:
                step.scan_input_later = True
        if step.scan_input_later or rt.reads_prompts or request.stream:
            request.freeze()  # read later: keep it as sent, whatever the caller does to its list
    error = admit(step)
    if error is not None:
        raise error
    if step.findings:
        guard.alert_findings(step, step.findings)
    if rt.enforce:
        step.kwargs = edit.apply(request, step.decisions, edited)
    return step


def _approve(step: Step) -> None:
    """An irreversible tool (or one a guardrail profile lists) asks the approver, if there is one."""
    request, rt = step.request, step.rt
    approver = rt.engine.approver
    if approver is None or not (request.irreversible or request.tool in step.view.approval_tools):
        return
    args, kwargs = request.kwargs.get("args", ()), request.kwargs.get("kwargs", {})
    request.kwargs["approved"] = bool(approver(request.model, tuple(args), dict(kwargs)))


def admit(step: Step) -> PolicyStop | None:
    """Decide and account under the chain's lock, so concurrent steps never both spend the same
    money; queue the step's record in step order. Returns the stop to raise (enforce only).

    Enforce runs this on the caller's thread; observe replays it on the worker."""
    rt, request, session, view = step.rt, step.request, step.session, step.view
    enforce = rt.enforce
    chain = step.chain
    tool = request.operation == "tool"
    with session.lock:
        decisions = rt.engine.decide_in(request, view)
        primary = decisions[0]
        stopped = primary.action == "stop" or (tool and primary.action == "deny_tool")
        if step.findings and enforce and not stopped:
            blocked = next((f for f in step.findings if f.action == "block"), None)
            if blocked is not None:
                primary = Decision("block", blocked.reason, message=blocked.message)
                stopped = True
        stopped = stopped and enforce
        if len(chain) == 1:
            session.steps += 1
            step.numbers = (session.steps,)
        else:
            step.numbers = tuple(s.next_step() for s in chain)
        step.step_no = step.numbers[0]
        if view.budgeted:
            step.remaining = min(b.limits.budget - b.spent for b in view.budgeted
                                 if b.limits.budget is not None)
        step.decisions = decisions
        if stopped:
            for s in chain:
                s.stopped = True
            return _stop(step, primary)
        if primary.reservation:
            for b in view.budgeted:
                b.reserved += primary.reservation
        if tool:
            for s in chain:
                s.tool_executions += 1
        step.primary = primary
        target = primary.target_model if enforce else None
        if target and target != request.model:
            step.model, step.provider = target, rt.engine.names(target, None)[0]
        else:
            step.model, step.provider = request.model, request.provider
        step.post(guard.input_later if step.scan_input_later else record.admitted, step)
    return None


def _stop(step: Step, primary: Decision) -> PolicyStop:
    """Enforce stopped the step (under the chain's lock): its entries now, for the error."""
    step.stopped = True
    step.primary = Decision(primary.action, primary.reason, price_known=primary.price_known)
    step.model, step.provider = step.request.model, step.request.provider
    entries = record.entries(step)
    for entry in entries:
        entry.status = "stopped"
        entry.cost = 0.0
    step.entries, step.entry = entries, entries[0]
    error = _stop_error(step, primary)
    step.stop_error = type(error).__name__
    step.post(record.stopped, step)
    return error


def _stop_error(step: Step, decision: Decision) -> PolicyStop:
    run_id, number, entry = step.session.run_id, step.step_no, step.entry.as_dict(step.step_no)
    if decision.action == "block":
        return GuardrailBlocked(decision.message, reason=decision.reason, run_id=run_id, step=number,
                                entry=entry)
    kind = ToolDenied if decision.action == "deny_tool" else _STOPS.get(decision.reason, PolicyStop)
    message = decision.message or decision.reason
    return kind(f"cascadeflow stopped step {number}: {message} ({decision.reason})",
                reason=decision.reason, run_id=run_id, step=number, entry=entry)
