"""Observe mode: the caller's thread captures the call and nothing else.

In observe mode nothing may change a request, so nothing has to happen before it is sent. The
caller's thread keeps what the call was (its arguments, a copy of the prompt list, the session,
the clock, the response) and queues it; the background worker replays admission and settlement
in the order they happened, through the same stages enforce runs on the caller's thread. The
decisions and step numbers it records are those enforce would have made, with `applied=False`,
up to the first decision that would have changed something; the spend and counters are always
what really happened (docs/concepts.md, "Modes"). `summary()` and `trace()` wait for the replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cascadeflow.pipeline import admit, guard
from cascadeflow.pipeline.runtime import Runtime, attempting
from cascadeflow.pipeline.settle import fail, finish, would_cut
from cascadeflow.pipeline.step import Step
from cascadeflow.request import PROMPT_KEYS, Request
from cascadeflow.session import CURRENT, Session
from cascadeflow.usage import StreamAccumulator, Usage, read_usage

MakeRequest = Callable[[tuple[Any, ...], dict[str, Any]], Request | None]


class Capture:
    """A call as observe mode saw it on the caller's thread; `step` once the worker admitted it."""

    __slots__ = ("args", "kwargs", "make", "pinned", "policy", "prompt", "rt", "session", "span", "step",
                 "t0", "underneath")

    def __init__(self, rt: Runtime, session: Session, make: MakeRequest, args: tuple[Any, ...],
                 kwargs: dict[str, Any], prompt: list[Any] | None, pinned: bool, t0: int) -> None:
        self.rt = rt
        # the guardrail policy in force when the call was made (`rt.policy()`, one frame less)
        self.policy = None if rt.policies is None else rt.policies.current()
        self.session = session
        self.make = make
        self.args = args
        self.kwargs = kwargs
        self.prompt = prompt  # a copy of the prompt list as sent (the caller may append to its own)
        self.pinned = pinned
        self.t0 = t0
        self.step: Step | None = None
        self.span: Any = None  # what telemetry started around the send
        self.underneath: list[str] = []  # libraries the send reached beneath (`Request.underneath`)


def capture(rt: Runtime, make: MakeRequest, args: tuple[Any, ...], kwargs: dict[str, Any],
            prompt_key: str | None = None) -> Capture:
    """Observe a call about to be sent: queue its admission, return what settles it later."""
    worker = rt.worker
    if len(worker.queue) >= worker.help_at:  # (checked here: a frame less when it is not behind)
        worker.help_if_behind()
    if rt.observer is not None and len(rt.telemetry_worker.queue) >= rt.telemetry_worker.help_at:
        rt.telemetry_worker.help_if_behind()
    prompt = kwargs.get(prompt_key) if prompt_key else None
    cap = Capture(rt, CURRENT.get() or rt.ambient, make, args, kwargs,
                  prompt[:] if type(prompt) is list else None, attempting.get(),
                  time.perf_counter_ns())
    worker.submit(_admit, cap)
    return cap


def tool_request(request: Request) -> MakeRequest:
    """`make` for a request already built (a `@tool` execution)."""
    return lambda _args, _kwargs: request


def done(cap: Capture, response: Any, operation: str) -> None:
    """The call returned `response` (a body, not a stream): settle it on the worker."""
    cap.rt.worker.submit(settle_response, cap, response, operation, time.perf_counter_ns())


def usage_done(cap: Capture, usage: Usage, status: str = "ok") -> None:
    """The call finished with a known usage (a tool), or none seen (`status="unread"`: a raw
    response closed unread, charged its worst case)."""
    cap.rt.worker.submit(_settle_usage, cap, usage, None, status, time.perf_counter_ns())


def failed(cap: Capture, error: BaseException) -> None:
    cap.rt.worker.submit(_settle_usage, cap, None, error, "error", time.perf_counter_ns())


def stream_done(cap: Capture, acc: StreamAccumulator, error: BaseException | None, status: str,
                cuts: bool = True) -> None:
    """A stream ended (or broke, or was dropped): its accumulated usage settles on the worker.
    `cuts`: enforce would have held it to its reservation (a stream object, not a raw body's
    bytes), so an output past that is recorded as the stop enforce would have made."""
    cap.rt.worker.submit(_settle_stream, cap, acc, error, status, time.perf_counter_ns(), cuts)


# -- on the worker ---------------------------------------------------------------------------
def _admit(cap: Capture) -> None:
    request = cap.make(cap.args, cap.kwargs)
    if request is None:
        return  # a call shape the adapter does not read: it went through unrecorded
    key = PROMPT_KEYS.get(request.operation)
    if cap.prompt is not None and key is not None:
        request.kwargs = {**request.kwargs, key: cap.prompt}
    request.pinned = cap.pinned
    rt = cap.rt
    view = rt.view(cap.session.chain, cap.policy)
    step = Step(rt, request, cap.session, view)
    step.t0, step.on_worker = cap.t0, True
    step.scan_input_later = bool(view.input_rules) and request.operation != "tool"
    admit.admit(step)
    cap.step = step


def _no_step(cap: Capture) -> None:
    """The call went through unrecorded (`_admit` could not read it): a span a tracer that is
    not the SDK's started around its send ends. (Its settlement is queued after the send, when
    `cap.span` is set; `_admit` may run before.)"""
    if cap.span is not None:
        cap.rt.span_dropped(cap.span)
        cap.span = None


def settle_response(cap: Capture, response: Any, operation: str, ended: int) -> None:
    """Worker task: settle an observed call from its response."""
    if cap.step is not None:
        _settle_usage(cap, read_usage(operation, response), None, "ok", ended,
                      guard.output_texts(operation, response))
    else:
        _no_step(cap)


def _settle_usage(cap: Capture, usage: Usage | None, error: BaseException | None, status: str,
                  ended: int, texts: list[str] | None = None) -> None:
    """`texts`: every text of an unstreamed answer, for the output rules (else the usage's)."""
    step = cap.step
    if step is None:
        _no_step(cap)
        return
    step.span = cap.span  # set on the caller's thread before this task was queued
    step.request.underneath = cap.underneath  # (filled in by the send, which is over)
    if error is not None:
        fail(step, error, usage, status, ended)
    elif usage is not None:
        finish(step, usage, status, ended)
    if texts is None:
        texts = guard.usage_texts(usage) if usage is not None else []
    if texts and step.view.output_rules:
        guard.output_later(step, *texts)


def _settle_stream(cap: Capture, acc: StreamAccumulator, error: BaseException | None, status: str,
                   ended: int, cuts: bool) -> None:
    step = cap.step
    if step is None:
        _no_step(cap)
    else:
        usage = acc.finish(step.request)
        _settle_usage(cap, usage, error, status, ended)
        if cuts:
            would_cut(step, usage)
