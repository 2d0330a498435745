"""Before the send, on the caller's thread: decide, admit, and in enforce mode change or stop.

`begin` runs the stages in order: freeze the request, approve a tool, scan the input when a rule
may change it, ask the policy engine, then, under the chain's lock, number the step, reserve
its worst-case cost, build its trace entries and queue them for the worker. In enforce mode a
stop raises here, before anything is sent; switches, clamps and redactions change the kwargs.
A call that only the reservations of calls in flight keep out waits here for their settlements
(`begin` sleeps, `abegin` yields to the event loop), as long as they keep settling and at most
`budget_wait_s` without one.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from typing import Any

from cascadeflow.errors import (
    BudgetExceeded,
    ComplianceViolation,
    GuardrailBlocked,
    PolicyStop,
    RateLimited,
    StepLimitReached,
    StoreUnreachable,
    ToolDenied,
)
from cascadeflow.pipeline import edit, guard, record, shared
from cascadeflow.pipeline.runtime import Runtime, attempting
from cascadeflow.pipeline.step import Step
from cascadeflow.policy.budget import WAIT
from cascadeflow.policy.decision import Decision
from cascadeflow.policy.tools import APPROVER_FAILED, WOULD_ASK, needs_approval
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request
from cascadeflow.session import CURRENT

_STOPS: dict[str, type[PolicyStop]] = {
    "budget_exceeded": BudgetExceeded,
    "max_steps_reached": StepLimitReached,
    "compliance_no_allowed_model": ComplianceViolation,
    "price_unknown": BudgetExceeded,
    "budget_window_exceeded": BudgetExceeded,
    "rate_limited": RateLimited,
    "store_unavailable": StoreUnreachable,
}
_POLL_FIRST_S, _POLL_MAX_S = 0.002, 0.05  # how often a waiting call looks for settlements


def begin(rt: Runtime, request: Request) -> Step:
    """Admit one step in enforce mode; raise its `PolicyStop` when enforcement stops it.
    (Observe mode captures the call instead: see `cascadeflow.pipeline.observe`.)

    When only the reservations of calls in flight keep it from fitting the budget, it waits
    for them to settle (at most `budget_wait_s`), sleeping this thread between looks."""
    step, edited, pending = _begin(rt, request)
    if pending:
        wait = _Wait(step)
        while pending:
            if wait.patient():
                time.sleep(wait.delay())
            pending = _retry(step, wait)
        step.t0 = time.perf_counter_ns()  # latency is the provider's, not the wait's
    primary = step.decisions[0]
    if step.stop_pending is not None or step.findings or edited is not None or len(step.decisions) > 1 \
            or primary.action != "allow" or primary.max_tokens is not None:
        return _admitted(step, edited)
    return step  # (the usual step: nothing for `_admitted` to do)


async def abegin(rt: Runtime, request: Request) -> Step:
    """`begin` for coroutines: a waiting call yields to the event loop, where the calls it waits
    for may be the ones that have to finish."""
    step, edited, pending = _begin(rt, request)
    if pending:
        wait = _Wait(step)
        while pending:
            if wait.patient():
                await asyncio.sleep(wait.delay())
            pending = _retry(step, wait)
        step.t0 = time.perf_counter_ns()  # latency is the provider's, not the wait's
    return _admitted(step, edited)


class _Wait:
    """How long a call waits for settlements: while the calls in flight keep settling, and at
    most `budget_wait_s` without any settlement (a stalled provider cannot hold it forever;
    a long queue of calls that do finish, on a busy machine, does not stop it early). It decides
    again only when the money moved: polling waiters must not starve the calls they wait for."""

    __slots__ = ("_delay", "deadline", "decided_spent", "held", "limit", "spent", "step")

    def __init__(self, step: Step) -> None:
        self.step = step
        self.limit = step.rt.config.budget_wait_s
        self.deadline = time.monotonic() + self.limit
        self.spent, self.held = self._state()
        self.decided_spent = self.spent  # the spend the last decision saw
        self._delay = _POLL_FIRST_S

    def _state(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        budgeted = self.step.view.budgeted
        return tuple(s.spent for s in budgeted), tuple(s.reserved for s in budgeted)

    def patient(self) -> bool:
        """True while it should go on waiting (a settlement since the last look resets the clock)."""
        spent, _held = self._state()
        now = time.monotonic()
        if spent != self.spent:
            self.spent, self.deadline, self._delay = spent, now + self.limit, _POLL_FIRST_S
        return now < self.deadline

    def moved(self) -> bool:
        """Money was settled or released since the last look: worth deciding again. (Another
        call taking a reservation is not: it only leaves less.)"""
        spent, held = self._state()
        released = any(now < before for now, before in zip(held, self.held, strict=True))
        self.held = held
        if released or spent != self.decided_spent:
            self.decided_spent = spent
            return True
        return False

    def delay(self) -> float:
        delay, self._delay = self._delay, min(self._delay * 2, _POLL_MAX_S)
        return delay


def _retry(step: Step, wait: _Wait) -> bool:
    """Look again; True while it must go on waiting. Once the wait has run out, decide without
    waiting: clamp to what is free, or stop."""
    rt, request, view = step.rt, step.request, step.view
    if view.shared is not None and rt.ledger is not None:  # what other processes settled meanwhile
        shared.refresh(step, rt.ledger, view.shared)
    patient = wait.patient()
    if patient and not wait.moved():
        return True
    rt.worker.flush()
    with step.session.lock:
        decisions = rt.engine.decide_in(request, view, patient)
        if decisions[0].reason == WAIT:
            return True
        if not patient and decisions[0].action == "stop":
            first = decisions[0]
            decisions = [Decision(first.action, first.reason, message=f"{first.message} after waiting "
                                  f"{rt.config.budget_wait_s:g} s without a settlement of the "
                                  f"calls in flight", price_known=first.price_known)]
        return _conclude(step, decisions, patient)


def _begin(rt: Runtime, request: Request) -> tuple[Step, Any, bool]:
    """The stages up to the decision; True when the step must wait for settlements."""
    worker = rt.worker
    if len(worker.queue) >= worker.help_at:  # (checked here: a frame less when it is not behind)
        worker.help_if_behind()
    if rt.observer is not None and len(rt.telemetry_worker.queue) >= rt.telemetry_worker.help_at:
        rt.telemetry_worker.help_if_behind()
    session = CURRENT.get() or rt.ambient
    if attempting.get():
        request.pinned = True
    policies = rt.policies  # `rt.policy()`, one frame less on every call
    policy = None if policies is None else policies.current()
    cached = session.policy_view  # the engine's view of the chain, cached on the session
    view = cached[1] if cached is not None and cached[0] is rt.config and cached[2] is policy \
        else rt.view(session.chain, policy)
    step = Step(rt, request, session, view)
    edited = None
    if request.operation == "tool":
        _approve(step)
    elif view.input_rules or rt.reads_prompts or request.stream:
        if view.input_acts:
            edited = guard.scan_input(step)
        elif view.input_rules:
            step.scan_input_later = True
        if step.scan_input_later or rt.reads_prompts or request.stream:
            request.freeze()  # read later: keep it as sent, whatever the caller does to its list
            step.kwargs = request.kwargs
    if request.operation == "responses":
        _stored(rt, request, wait=True)
    down = None
    if view.shared is not None and rt.ledger is not None:
        down = shared.refresh(step, rt.ledger, view.shared)
    with session.lock:
        decisions = [down] if down is not None else rt.engine.decide_in(request, view)
        first = decisions[0]
        if first.reason != WAIT and (
                (len(decisions) == 1 and first.reason not in _SPEND_REASONS and not view.tool_capped)
                or not _hinges_on_spend(request, view, decisions) or rt.worker.idle()):
            if view.shared is None or rt.ledger is None:
                step.stop_pending = _account(step, decisions)  # `_conclude` with nothing shared
                return step, edited, False
            return step, edited, _conclude(step, decisions)
    # it hinged on spend the worker has yet to settle, or on money held by calls in flight
    rt.worker.flush()
    with session.lock:
        decisions = rt.engine.decide_in(request, view)
        return step, edited, _conclude(step, decisions)


def _conclude(step: Step, decisions: list[Decision], patient: bool = True) -> bool:
    """Take the step's holds on shared budgets and limits, then account it (under the chain's
    lock); True when it must wait for calls in flight to settle first."""
    if decisions[0].reason == WAIT:
        return True
    ledger, shares = step.rt.ledger, step.view.shared
    if shares is not None and ledger is not None and not any(f.action == "block" for f in step.findings):
        decided = shared.acquire(step, ledger, shares, decisions, patient)
        if decided is None:
            return True
        decisions = decided
    step.stop_pending = _account(step, decisions)
    return False


def _admitted(step: Step, edited: Any) -> Step:
    """Alert findings, then raise the stop or apply the edits the decisions ask for. (A step that
    a block rule or a budget stops alerts too: an `alert` rule's finding in it is recorded, and
    its sinks hear of it, as they do of an output finding in an answer that is then blocked.)"""
    if step.findings:
        guard.alert_findings(step, step.findings)
    error = step.stop_pending
    if error is not None:
        raise error
    request = step.request
    primary = step.decisions[0]
    if edited is not None or len(step.decisions) > 1 or primary.action != "allow" \
            or primary.max_tokens is not None:
        step.kwargs = edit.apply(request, step.decisions, edited)
    return step


def _approve(step: Step) -> None:
    """An irreversible tool (or one a guardrail profile lists) asks the approver, if there is one."""
    request, rt = step.request, step.rt
    approver = rt.engine.approver
    if approver is None or not needs_approval(request, step.view):
        return
    first = rt.engine.decide_in(request, step.view)[0]
    if first.reason != WOULD_ASK:  # the cap, a deny list or the step cap denies it whatever the
        return  # approver says: a person is not asked to approve a refund that will not run
    args, kwargs = request.kwargs.get("args", ()), request.kwargs.get("kwargs", {})
    try:
        answer = approver(request.model, tuple(args), dict(kwargs))
    except Exception as exc:  # an approver that fails denies; it never breaks the call path
        request.kwargs["approved"] = APPROVER_FAILED
        request.kwargs["approver_error"] = f"raised {type(exc).__name__}"
        return
    if isinstance(answer, bool):
        request.kwargs["approved"] = answer
        return
    # anything else denies: a coroutine (an `async def` approver, never awaited here) or a
    # string such as "no" is truthy, and used to approve the irreversible tool
    if inspect.iscoroutine(answer):
        answer.close()  # never awaited: close it so Python does not warn
    request.kwargs["approved"] = APPROVER_FAILED
    request.kwargs["approver_error"] = f"returned a {type(answer).__name__}, not True or False"


def _stored(rt: Runtime, request: Request, wait: bool) -> None:
    """The tokens of the response a Responses call continues, when this process settled it (on
    the caller's thread a settlement still on the worker is waited for: the call usually
    follows its predecessor at once; on the worker it was settled before, in order)."""
    previous = request.kwargs.get("previous_response_id")
    if not isinstance(previous, str):
        return
    tokens = rt.stored.get(previous)
    if tokens is None and wait and not rt.worker.idle():
        rt.worker.flush()
        tokens = rt.stored.get(previous)
    request.stored_tokens = tokens


def admit(step: Step) -> PolicyStop | None:
    """Observe mode, on the worker: decide and account the captured step in arrival order,
    as enforce would have. Nothing waits here: where enforce would have waited for calls in
    flight to settle, the trace says so (`budget_wait`)."""
    rt, request, view = step.rt, step.request, step.view
    if request.operation == "responses":
        _stored(rt, request, wait=False)
    ledger, shares = rt.ledger, view.shared
    down = None
    if shares is not None and ledger is not None:
        down = shared.refresh(step, ledger, shares)
    with step.session.lock:
        decisions = [down] if down is not None else rt.engine.decide_in(request, view)
        if decisions[0].reason == WAIT:
            first = decisions[0]
            decisions = [Decision("allow", "budget_wait", reservation=first.reservation,
                                  message=f"enforce would wait for calls in flight to settle: "
                                          f"{first.message}")]
        if shares is not None and ledger is not None:
            decisions = shared.replay(step, ledger, shares, decisions)
        return _account(step, decisions)


_SPEND_REASONS = frozenset({"budget_exceeded", "budget_pressure", "max_tokens_clamped"})


def _hinges_on_spend(request: Request, view: ChainView, decisions: list[Decision]) -> bool:
    for decision in decisions:
        if decision.reason in _SPEND_REASONS:
            return True
    return bool(view.tool_capped) and request.offers_tools


def _account(step: Step, decisions: list[Decision]) -> PolicyStop | None:
    """Under the chain's lock: number the step, reserve, count, queue its record."""
    rt, chain = step.rt, step.chain
    primary = decisions[0]
    stop = _stopping(step, primary) if rt.enforce and (primary.action in _STOPPING or step.findings) \
        else None
    if len(chain) == 1:
        session = step.session
        session.steps += 1
        step.numbers = (session.steps,)
    else:
        step.numbers = tuple(s.next_step() for s in chain)
    step.step_no = step.numbers[0]
    step.decisions = decisions
    if stop is not None:
        for s in chain:
            s.stopped = True
        return _stop(step, stop)
    reservation = primary.reservation
    if reservation:
        for b in step.view.budgeted:
            b.reserved += reservation
    request = step.request
    if request.operation == "tool":
        for s in chain:
            s.tool_executions += 1
    step.primary = primary
    target = primary.target_model
    if target and rt.enforce and target != request.model:
        step.model, step.provider = target, rt.engine.names(target, None)[0]
    else:
        step.model, step.provider = request.model, request.provider
    task = guard.input_later if step.scan_input_later else record.admitted
    if step.on_worker:  # `step.post`, inline: this runs on every step
        task(step)
    else:
        step.worker.submit(task, step)
    return None


_STOPPING = frozenset({"stop", "deny_tool"})


def _stopping(step: Step, primary: Decision) -> Decision | None:
    """The decision that stops the step in enforce mode: a stop, a denied tool execution, or an
    input rule that blocks."""
    if primary.action == "stop" or (primary.action == "deny_tool" and step.request.operation == "tool"):
        return primary
    blocked = next((f for f in step.findings if f.action == "block"), None)
    return None if blocked is None else Decision("block", blocked.reason, message=blocked.message)


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
    rt = step.rt
    if rt.observer is not None:
        # the stop's span gets its identity here, on the caller's thread, so that its parent is
        # the span current where the call was made (one the application opened inside the run)
        request = step.request
        started = rt.span_started(step.session, request.operation,
                                  request.tool or "" if request.operation == "tool" else step.model)
        if started is not None:
            rt.span_sent(started)
        step.span = started
    step.post(record.stopped, step)
    return error


def _stop_error(step: Step, decision: Decision) -> PolicyStop:
    run_id, number, entry = step.session.run_id, step.step_no, step.entry.as_dict(step.step_no)
    if decision.action == "block":  # its entry is the finding of the rule that blocked
        finding = next((e for e in step.entries if e.action == "block" and e.reason == decision.reason),
                       step.entry)
        return GuardrailBlocked(decision.message, reason=decision.reason, run_id=run_id, step=number,
                                entry=finding.as_dict(number))
    kind = ToolDenied if decision.action == "deny_tool" else _STOPS.get(decision.reason, PolicyStop)
    message = decision.message or decision.reason
    return kind(f"cascadeflow stopped step {number}: {message} ({decision.reason})",
                reason=decision.reason, run_id=run_id, step=number, entry=entry)
