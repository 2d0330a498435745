"""A step's span: its identity made current on the caller's thread, the span built by the worker.

Spans opened while a model call is sent (HTTP client instrumentations) or while a `@tool` runs
must nest under the step's span, which the background worker only builds once the step has
settled. So, on the caller's thread, just before the send, a `Started` record is made current
in place of the span: a non-recording span whose identity (the parent's trace, a new span id,
the sampler's decision, as `Tracer.start_span` would give them) is built the first time someone
reads it, usually the worker, when it builds the real span with that same context and the
step's real start and end times. With a tracer provider that is not the OpenTelemetry SDK's,
whose spans cannot be built with a given context, the real span is started on the caller's
thread instead and the worker ends it.

Why so few steps: this runs right after the client's own work (milliseconds of it), when every
line of code and data it touches has left the CPU's caches. Measured inside the benchmark loop,
each call into the OpenTelemetry API cost 3 to 10 us there (against well under 1 us in a tight
loop), so the caller's thread reads the context variable directly, remembers the parent span of
the previous step, and allocates one object and one context per step.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cascadeflow.telemetry")

_build_lock = threading.Lock()


class Started:
    """What the caller's thread made current for one step, and what the worker needs to build
    its span. Made current as a non-recording span (see `StepSpans`): its span context is built
    on first read, under a lock, so every reader sees the same span id."""

    __slots__ = ("_built", "attributes", "flags", "parent", "parent_context", "recording", "span",
                 "span_id", "state", "token", "trace_id", "user")
    _span_context: Callable[..., Any]  # the API's SpanContext, set on the subclass StepSpans makes

    def __init__(self, parent: Any, parent_context: Any, trace_id: int, flags: Any, state: Any,
                 recording: bool, span_id: int) -> None:
        self.parent = parent  # the parent's SpanContext, or None for a root
        self.parent_context = parent_context  # the Context it was started in (for span processors)
        self.trace_id, self.flags, self.state, self.span_id = trace_id, flags, state, span_id
        self.recording = recording  # the sampler records it
        self.attributes: Any = None  # the sampler's attributes
        self.span: Any = None  # the real span, with a tracer that is not the SDK's
        self.token: Any = None  # to leave the context made current
        self.user: dict[str, Any] | None = None  # attributes the application's code set on it
        self._built: Any = None

    @property
    def context(self) -> Any:
        """The step span's SpanContext."""
        built = self._built
        if built is None and self.span is not None:  # a tracer that is not the SDK's: its span's
            return self.span.get_span_context()
        if built is None:
            with _build_lock:
                built = self._built
                if built is None:
                    built = self._built = self._span_context(self.trace_id, self.span_id, False,
                                                             self.flags, self.state)
        return built

    def get_span_context(self) -> Any:
        return self.context

    def is_recording(self) -> bool:
        return self.recording

    def set_attribute(self, key: str, value: Any) -> None:
        """Code running under the step (a `@tool` annotating its span) sets attributes on the
        current span: kept for the worker, which builds the span with them."""
        if self.recording:
            if self.user is None:
                self.user = {}
            self.user[key] = value

    def set_attributes(self, attributes: Any) -> None:
        for key, value in dict(attributes).items():
            self.set_attribute(key, value)

    @property
    def _context(self) -> Any:  # what `NonRecordingSpan` keeps it in, for code that reads it
        return self.context


class StepSpans:
    """Starts step spans on the caller's thread and builds them on the worker."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.context.contextvars_context import ContextVarsRuntimeContext
        from opentelemetry.trace.propagation import _SPAN_KEY

        self._context = context
        self._new_context = context.Context
        self._trace = trace
        self._span_key = _SPAN_KEY
        self.tracer = tracer
        self._started: type[Started] = type("StepSpanContext", (Started, trace.NonRecordingSpan),
                                            {"__slots__": (), "_span_context": trace.SpanContext})
        self._last: tuple[Any, ...] = (None,) * 6  # a parent span, as `_parent_of` reads it
        self._get, self._set, self._reset = _context_access(context, ContextVarsRuntimeContext)
        self._sdk: Any = None
        self._follows_parent = False
        self._random_flag = 0
        self._span_id: Callable[[], int] = _random_span_id
        self._is_enabled = getattr(tracer, "_is_enabled", None)  # SDK versions that have one
        try:
            from opentelemetry.sdk import trace as sdk
            from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
        except ImportError:  # pragma: no cover - the SDK is a dependency of cascadeflow
            return
        if isinstance(tracer, sdk.Tracer):
            self._sdk = sdk
            self._span_class = type("StepSpan", (sdk.Span,), {"__slots__": ()})
            self._random_flag = int(getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))
            self._follows_parent = _follows_parent(tracer.sampler)
            if type(tracer.id_generator) is not RandomIdGenerator:  # else the same, one frame less
                self._span_id = tracer.id_generator.generate_span_id

    # -- the caller's thread -------------------------------------------------------------
    def start(self, session_span: Any, prefix: str, name: str, kind: Any) -> Started:
        """Make the step's span current under the current span (else the session's); `leave`
        undoes it. The span's name (`prefix name`) is only built where a sampler reads it."""
        current = self._get()
        span = current.get(self._span_key)
        last = self._last
        if last[0] is not span:  # one span (the session's, the application's around a loop) is usual
            last = self._last = self._parent_of(span)
        parent = last[1]
        if parent is not None:
            parent_context = current
        elif session_span is not None:
            last = self._parent_of(session_span)
            parent = last[1]
            parent_context = self._trace.set_span_in_context(session_span, current)
        else:
            parent_context = current
        if self._sdk is None or (self._is_enabled is not None and not self._is_enabled()):
            return self._start_real(parent, parent_context, f"{prefix} {name}", kind)
        if parent is not None and self._follows_parent:
            # the default sampler (parent-based, standard delegates): the parent's decision,
            # as `should_sample` would return it, without its cost on every call (the parent's
            # trace id, trace state and sampled flag as `_parent_of` read them)
            span_id = random.getrandbits(64) if self._span_id is _random_span_id else 0
            if not span_id:  # (`_random_span_id` inline; it draws again only after a 0)
                span_id = self._span_id()
            started = self._started(parent, parent_context, last[3], last[2], last[4], last[5], span_id)
        else:
            started = self._sampled(parent, parent_context, f"{prefix} {name}", kind)
        started.token = self._set(self._new_context({**parent_context, self._span_key: started}))
        return started

    def _parent_of(self, span: Any) -> tuple[Any, Any, Any, Any, Any, Any]:
        """(`span`, its SpanContext, the flags a child of it gets from the default sampler (its
        sampled bit and, as the SDK keeps it, its random-trace-id bit), its trace id, its trace
        state, whether the flags say sampled), read once for every step under the same parent;
        (`span`, None, None, None, None, None) for no valid span."""
        parent = span.get_span_context() if hasattr(span, "get_span_context") else None
        if parent is None or not parent.is_valid:
            return span, None, None, None, None, None
        flags = self._trace.TraceFlags
        bits = flags.SAMPLED if parent.trace_flags.sampled else flags.DEFAULT
        child = flags(bits | (parent.trace_flags & self._random_flag))
        return span, parent, child, parent.trace_id, parent.trace_state, child.sampled

    def _sampled(self, parent: Any, parent_context: Any, name: str, kind: Any) -> Started:
        """A root span, or a sampler that is not the default: asked as `start_span` would."""
        trace, ids = self._trace, self.tracer.id_generator
        trace_id = ids.generate_trace_id() if parent is None else parent.trace_id
        result = self.tracer.sampler.should_sample(parent_context, trace_id, name, kind)
        bits = trace.TraceFlags.SAMPLED if result.decision.is_sampled() else trace.TraceFlags.DEFAULT
        if self._random_flag and (ids.is_trace_id_random() if parent is None else
                                  parent.trace_flags & self._random_flag):
            bits |= self._random_flag
        started = self._started(parent, parent_context, trace_id, trace.TraceFlags(bits),
                                result.trace_state, result.decision.is_recording(), self._span_id())
        started.attributes = result.attributes
        return started

    def _start_real(self, parent: Any, parent_context: Any, name: str, kind: Any) -> Started:
        """A tracer that is not the SDK's (or one the SDK disabled): its own span, started now."""
        started = self._started(parent, parent_context, 0, None, None, True, 0)
        started.span = span = self.tracer.start_span(name, context=parent_context, kind=kind)
        started.token = self._set(self._trace.set_span_in_context(span, parent_context))
        return started

    def leave(self, started: Started) -> None:
        try:
            self._reset(started.token)
        except (ValueError, RuntimeError):  # left in another context, as `context.detach` logs
            log.exception("cascadeflow could not leave a step's span context")

    # -- the worker ----------------------------------------------------------------------
    def drop(self, started: Started) -> None:
        """A started step that turned out to be none: the real span a tracer that is not the
        SDK's started for it ends (the SDK's are only built later, so there is none to end)."""
        if started.span is not None:
            started.span.end()

    def build(self, started: Started, name: str, kind: Any, attributes: dict[str, Any],
              start_ns: int, end_ns: int, error: str | None) -> None:
        """The step's span, with the context the caller's thread made current."""
        span = started.span
        if span is None:
            if not started.recording:
                return
            tracer = self.tracer
            if started.attributes or started.user:  # cascadeflow's own names win
                attributes = {**(started.attributes or {}), **(started.user or {}), **attributes}
            span = self._span_class(
                name, started.context, parent=started.parent, sampler=tracer.sampler,
                resource=tracer.resource, attributes=attributes, kind=kind,
                span_processor=tracer.span_processor, instrumentation_info=tracer.instrumentation_info,
                limits=tracer._span_limits, instrumentation_scope=tracer._instrumentation_scope)
            span.start(start_time=start_ns, parent_context=started.parent_context)
        elif span.is_recording():
            span.update_name(name)
            span.set_attributes(attributes)
        else:
            span.end(end_time=end_ns)
            return
        if error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end(end_time=end_ns)


def _random_span_id() -> int:
    """The SDK's `RandomIdGenerator.generate_span_id`: 64 random bits, never 0 (invalid)."""
    span_id = random.getrandbits(64)
    while not span_id:
        span_id = random.getrandbits(64)
    return span_id


def _context_access(context: Any, contextvars_runtime: type) -> tuple[Callable[[], Any],
                                                                   Callable[[Any], Any],
                                                                   Callable[[Any], None]]:
    """(get, set, reset) of the current OpenTelemetry context: the context variable itself
    under the default runtime context (the API's functions add three frames to each), the API's
    functions under any other (`OTEL_PYTHON_CONTEXT`)."""
    runtime = getattr(context, "_RUNTIME_CONTEXT", None)
    variable = getattr(runtime, "_current_context", None)
    if type(runtime) is contextvars_runtime and variable is not None:
        return variable.get, variable.set, variable.reset

    def reset(token: Any) -> None:
        context.detach(token)

    return context.get_current, context.attach, reset


def _follows_parent(sampler: Any) -> bool:
    """True for the SDK's parent-based sampler with its standard delegates (the default): for
    a span with a parent it samples exactly when the parent is sampled, and adds nothing."""
    from opentelemetry.sdk.trace import sampling

    if not isinstance(sampler, sampling.ParentBased):
        return False
    delegates = (getattr(sampler, "_remote_parent_sampled", None),
                 getattr(sampler, "_remote_parent_not_sampled", None),
                 getattr(sampler, "_local_parent_sampled", None),
                 getattr(sampler, "_local_parent_not_sampled", None))
    return delegates == (sampling.ALWAYS_ON, sampling.ALWAYS_OFF, sampling.ALWAYS_ON, sampling.ALWAYS_OFF)
