"""One call on its way through the pipeline, from the decision to the settlement.

A `Step` is data: the stages (`admit`, `settle`, `record`, `guard`) read and fill it. The
caller's thread sets what the decision and the settlement need; the background worker turns it
into trace entries later, through tasks queued after the fields they read were set. Defaults
live on the class, so a step costs only the fields it changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cascadeflow.clock import wall_ns
from cascadeflow.entry import Entry
from cascadeflow.errors import PolicyStop
from cascadeflow.guardrails.placeholders import Placeholders
from cascadeflow.guardrails.scan import Finding
from cascadeflow.pipeline.runtime import Runtime
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.policy.view import ChainView
from cascadeflow.request import PROMPT_KEYS, Request
from cascadeflow.session import Session
from cascadeflow.usage import Usage


class Step:
    # set by admission (the caller's thread)
    step_no = 0
    numbers: tuple[int, ...] = ()  # this step's number in each session of the chain
    decisions: list[Decision] = [ALLOW]
    primary = ALLOW
    model = ""  # the model called (switched in enforce), and its provider
    provider: str | None = None
    remaining: float | None = None  # budget left when decided (tightest session), for the trace
    stopped = False  # enforce stopped it: nothing is sent
    stop_error: str | None = None  # the PolicyStop raised, for telemetry
    stop_pending: PolicyStop | None = None  # the stop admission decided, raised once it is done
    hold: str | None = None  # its hold on shared budgets (the ledger's), released when settled
    held = 0  # nano-USD held on each of them
    held_at: float | None = None  # when: its spend counts in the budgets' windows of then
    store_down = False  # the ledger's store failed for this step
    findings: list[Finding] = []  # input findings made on the caller's thread (never mutated)
    scan_input_later = False  # the input rules change nothing: the worker runs them
    placeholders: Placeholders | None = None  # the run's, when the answer gets originals restored
    span: Any = None  # the span telemetry started around the send (`Observer.step_started`)
    # set by settlement (the caller's thread)
    settled = False
    usage: Usage | None = None
    latency_ms: float | None = None
    t1 = 0  # perf_counter_ns when the response (or the error) arrived
    answered = True  # a whole response arrived: its latency is the model's (an error's is not)
    cost: float | None = 0.0
    price_known = True
    status = "ok"
    error: str | None = None
    # set by the worker
    entries: list[Entry] = []
    entry: Entry
    content_allowed = False
    on_worker = False  # observe mode: the worker replays the step, so records are written at once

    def __init__(self, rt: Runtime, request: Request, session: Session, view: ChainView) -> None:
        self.rt = rt
        self.worker = rt.worker
        self.request = request
        self.session = session
        self.chain = session.chain
        self.view = view
        self.kwargs = request.kwargs  # what is sent: enforce may replace it with an edited copy
        self.args: tuple[Any, ...] = request.args
        self.t0 = time.perf_counter_ns()

    @property
    def sent_prompt(self) -> Any:
        """The prompt as sent (after redaction): what captured content records, never the
        originals a guardrail took out."""
        key = PROMPT_KEYS.get(self.request.operation)
        return None if key is None else self.kwargs.get(key)

    @property
    def started_ns(self) -> int:
        """Wall-clock start, ns since the epoch."""
        return wall_ns(self.t0)

    @property
    def ended_ns(self) -> int:
        """Wall-clock end (the start for a step that never ran), ns since the epoch."""
        return wall_ns(self.t1 or self.t0)

    def halt(self) -> None:
        """Enforce raised a stop for this step after its send (a stream cut at its reservation,
        an answer or stream a guardrail blocked): its sessions count as stopped, as they do for
        a step stopped before the send."""
        for session in self.chain:
            session.stopped = True

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Have `fn(*args)` write a record: queued for the worker, or at once on the worker."""
        if self.on_worker:
            fn(*args)
        else:
            self.worker.submit(fn, *args)

    def __repr__(self) -> str:
        return f"<Step {self.step_no} {self.request.operation} {self.request.model}>"
