"""Observe mode: the caller's thread captures the call and nothing else.

In observe mode nothing may change a request, so nothing has to happen before it is sent. The
caller's thread keeps what the call was (its arguments, a copy of the prompt list, the session,
the clock, the response) and queues it; the background worker replays admission and settlement
in the order they happened, through the same stages enforce runs on the caller's thread. The
decisions, step numbers and spend it records are those enforce would have made, with
`applied=False`; `summary()` and `trace()` wait for the replay.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cascadeflow.pipeline import admit, guard
from cascadeflow.pipeline.runtime import Runtime, attempting
from cascadeflow.pipeline.settle import fail, finish
from cascadeflow.pipeline.step import Step
from cascadeflow.request import Request
from cascadeflow.session import Session, current
from cascadeflow.usage import StreamAccumulator, Usage, read_usage

MakeRequest = Callable[[tuple[Any, ...], dict[str, Any]], Request | None]


class Capture:
    """A call as observe mode saw it on the caller's thread; `step` once the worker admitted it."""

    __slots__ = ("args", "kwargs", "make", "pinned", "prompt", "prompt_key", "rt", "session",
                 "started_ns", "step", "t0")

    def __init__(self, rt: Runtime, session: Session, make: MakeRequest, args: tuple[Any, ...],
                 kwargs: dict[str, Any], prompt_key: str | None) -> None:
        self.rt = rt
        self.session = session
        self.make = make
        self.args = args
        self.kwargs = kwargs
        self.prompt_key = prompt_key
        prompt = kwargs.get(prompt_key) if prompt_key else None
        # the caller may append to its message list once the call returns: keep it as sent
        self.prompt = prompt[:] if type(prompt) is list else None
        self.pinned = attempting.get()
        self.step: Step | None = None
        self.t0 = time.perf_counter()
        self.started_ns = time.time_ns()


def capture(rt: Runtime, make: MakeRequest, args: tuple[Any, ...], kwargs: dict[str, Any],
            prompt_key: str | None = None) -> Capture:
    """Observe a call about to be sent: queue its admission, return what settles it later."""
    cap = Capture(rt, current() or rt.ambient, make, args, kwargs, prompt_key)
    rt.worker.submit(_admit, cap)
    return cap


def tool_request(request: Request) -> MakeRequest:
    """`make` for a request already built (a `@tool` execution)."""
    return lambda _args, _kwargs: request


def done(cap: Capture, response: Any, operation: str) -> None:
    """The call returned `response` (a body, not a stream): settle it on the worker."""
    cap.rt.worker.submit(_settle, cap, response, operation, None, "ok", time.perf_counter(),
                         time.time_ns())


def usage_done(cap: Capture, usage: Usage) -> None:
    """The call finished with a known usage (a tool, a raw response already read)."""
    cap.rt.worker.submit(_settle_usage, cap, usage, None, "ok", time.perf_counter(), time.time_ns())


def failed(cap: Capture, error: BaseException) -> None:
    cap.rt.worker.submit(_settle_usage, cap, None, error, "error", time.perf_counter(),
                         time.time_ns())


def stream_done(cap: Capture, acc: StreamAccumulator, error: BaseException | None, status: str) -> None:
    """A stream ended (or broke, or was dropped): its accumulated usage settles on the worker."""
    cap.rt.worker.submit(_settle_stream, cap, acc, error, status, time.perf_counter(), time.time_ns())


# -- on the worker ---------------------------------------------------------------------------
def _admit(cap: Capture) -> None:
    request = cap.make(cap.args, cap.kwargs)
    if request is None:
        return  # a call shape the adapter does not read: it went through unrecorded
    if cap.prompt is not None and cap.prompt_key is not None:
        request.kwargs = {**request.kwargs, cap.prompt_key: cap.prompt}
    request.pinned = cap.pinned
    rt = cap.rt
    view = rt.engine.view(cap.session.chain, rt.policy())
    step = Step(rt, request, cap.session, view)
    step.t0, step.started_ns, step.on_worker = cap.t0, cap.started_ns, True
    step.scan_input_later = bool(view.input_rules) and request.operation != "tool"
    admit.admit(step)
    cap.step = step


def _settle(cap: Capture, response: Any, operation: str, error: BaseException | None, status: str,
            ended: float, ended_ns: int) -> None:
    usage = read_usage(operation, response) if cap.step is not None else None
    _settle_usage(cap, usage, error, status, ended, ended_ns)


def _settle_usage(cap: Capture, usage: Usage | None, error: BaseException | None, status: str,
                  ended: float, ended_ns: int) -> None:
    step = cap.step
    if step is None:
        return
    if error is not None:
        fail(step, error, usage, status, ended, ended_ns)
    elif usage is not None:
        finish(step, usage, status, ended, ended_ns)
    if usage is not None and usage.text and step.view.output_rules:
        guard.output_later(step, usage.text)


def _settle_stream(cap: Capture, acc: StreamAccumulator, error: BaseException | None, status: str,
                   ended: float, ended_ns: int) -> None:
    if cap.step is None:
        return
    _settle_usage(cap, acc.finish(cap.step.request), error, status, ended, ended_ns)

