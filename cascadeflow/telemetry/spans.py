"""A step's span: its identity made current on the caller's thread, the span built by the worker.

Spans opened while a model call is sent (HTTP client instrumentations) or while a `@tool` runs
must nest under the step's span, which the background worker only builds once the step has
settled. So, on the caller's thread, just before the send, the step's span context is allocated
(the parent's trace, a new span id, the sampler's decision, as `Tracer.start_span` would) and
made current as a `NonRecordingSpan`: a few microseconds. The worker later builds the real span
with that same context and the step's real start and end times, and hands it to the provider's
span processors. With a tracer provider that is not the OpenTelemetry SDK's, whose spans cannot
be built with a given context, the real span is started on the caller's thread instead and the
worker ends it.
"""

from __future__ import annotations

from typing import Any


class Started:
    """What the caller's thread made current for one step, and what the worker needs to build it."""

    __slots__ = ("attributes", "context", "parent", "parent_context", "recording", "span", "token")

    def __init__(self) -> None:
        self.context: Any = None  # the step span's SpanContext
        self.parent: Any = None  # its parent's SpanContext, or None for a root
        self.parent_context: Any = None  # the Context it was started in (for span processors)
        self.attributes: Any = None  # the sampler's attributes
        self.recording = True  # the sampler records it
        self.span: Any = None  # the real span, with a tracer that is not the SDK's
        self.token: Any = None  # to detach the context made current


class StepSpans:
    """Starts step spans on the caller's thread and builds them on the worker."""

    def __init__(self, tracer: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation import _SPAN_KEY

        self._context = context
        self._trace = trace
        self._span_key = _SPAN_KEY  # read from the current context directly: see `start`
        self.tracer = tracer
        self._sdk: Any = None
        self._follows_parent = False
        self._is_enabled = getattr(tracer, "_is_enabled", None)  # SDK versions that have one
        try:
            from opentelemetry.sdk import trace as sdk
        except ImportError:  # pragma: no cover - the SDK is a dependency of cascadeflow
            return
        if isinstance(tracer, sdk.Tracer):
            self._sdk = sdk
            self._span_class = type("StepSpan", (sdk.Span,), {"__slots__": ()})
            self._random_flag = int(getattr(trace.TraceFlags, "RANDOM_TRACE_ID", 0))
            self._follows_parent = _follows_parent(tracer.sampler)

    # -- the caller's thread -------------------------------------------------------------
    def start(self, session_span: Any, name: str, kind: Any) -> Started:
        """Allocate the step's span context under the current span (else the session's) and
        make it current; `leave` undoes it."""
        trace = self._trace
        context = self._context
        started = Started()
        # The current span straight from the current context, as `trace.get_current_span()`
        # finds it but without its check against the `Span` ABC: this runs on every call, right
        # after the client's own work, when such checks miss the CPU's caches (10 us there).
        current = context.get_current()
        span = current.get(self._span_key)
        parent = span.get_span_context() if hasattr(span, "get_span_context") else None
        if parent is not None and parent.is_valid:
            parent_context = current
        elif session_span is not None:
            parent = session_span.get_span_context()
            parent_context = trace.set_span_in_context(session_span)
        else:
            parent, parent_context = None, current
        started.parent, started.parent_context = parent, parent_context
        tracer = self.tracer
        if self._sdk is None or not self._enabled():
            started.span = span = tracer.start_span(name, context=parent_context, kind=kind)
            started.token = context.attach(trace.set_span_in_context(span, parent_context))
            return started
        ids = tracer.id_generator
        if parent is not None and self._follows_parent:
            # the default sampler (parent-based, standard delegates): the parent's decision,
            # as `should_sample` would return it, without its cost on every call
            trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
            started.recording = flags.sampled
        else:
            trace_id = ids.generate_trace_id() if parent is None else parent.trace_id
            result = tracer.sampler.should_sample(parent_context, trace_id, name, kind)
            bits = trace.TraceFlags.SAMPLED if result.decision.is_sampled() else trace.TraceFlags.DEFAULT
            if self._random_flag and (ids.is_trace_id_random() if parent is None else
                                      parent.trace_flags & self._random_flag):
                bits |= self._random_flag
            flags = trace.TraceFlags(bits)
            state = result.trace_state
            started.recording = result.decision.is_recording()
            started.attributes = result.attributes
        started.context = span_context = trace.SpanContext(trace_id, ids.generate_span_id(), False,
                                                           flags, state)
        started.token = context.attach(trace.set_span_in_context(trace.NonRecordingSpan(span_context),
                                                                 parent_context))
        return started

    def _enabled(self) -> bool:
        """The SDK's tracer configurator may disable a tracer (SDK versions that have one)."""
        return self._is_enabled is None or bool(self._is_enabled())

    def leave(self, started: Started) -> None:
        self._context.detach(started.token)

    # -- the worker ----------------------------------------------------------------------
    def build(self, started: Started, name: str, kind: Any, attributes: dict[str, Any],
              start_ns: int, end_ns: int, error: str | None) -> None:
        """The step's span, with the context the caller's thread made current."""
        span = started.span
        if span is None:
            if not started.recording:
                return
            tracer = self.tracer
            if started.attributes:
                attributes = {**started.attributes, **attributes}
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
