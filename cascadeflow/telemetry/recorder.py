"""Spans and metrics for sessions, model calls and tool executions.

A session is an `invoke_agent {name}` INTERNAL span, current while the session is; each model
call a `{operation} {model}` CLIENT span under the current span (else the session's); each
`@tool` execution an `execute_tool {name}` span. A step's span identity is made current on the
caller's thread around the send (`spans.StepSpans`); the span itself is built by the background
worker once the step is settled, in one call with all its attributes and the step's real start
and end times.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from cascadeflow._version import __version__
from cascadeflow.entry import Entry
from cascadeflow.pipeline.observer import StepRecord
from cascadeflow.secrets import scrub
from cascadeflow.session import Session
from cascadeflow.telemetry import conventions as cv
from cascadeflow.telemetry.calls import ToolCalls
from cascadeflow.telemetry.duplicates import Duplicates
from cascadeflow.telemetry.messages import input_messages, output_messages
from cascadeflow.telemetry.naming import provider_name, server, wire_model
from cascadeflow.telemetry.setup import Providers
from cascadeflow.telemetry.spans import Started, StepSpans
from cascadeflow.usage import Usage

_DEFERRED_KEEP = frozenset({cv.AGENT_NAME, cv.CONVERSATION_ID, cv.ERROR_TYPE})
_OPERATIONS = {"chat": cv.OP_CHAT, "responses": cv.OP_CHAT, "text_completion": cv.OP_TEXT,
               "embeddings": cv.OP_EMBEDDINGS, "tool": cv.OP_EXECUTE_TOOL}


class Telemetry:
    """Emits through the providers it was given; owns nothing it did not create."""

    def __init__(self, providers: Providers, capture_content: bool, client_spans: str = "auto") -> None:
        from opentelemetry import context, trace  # slow to import: only when telemetry is on

        self.providers = providers
        self.capture_content = capture_content
        self.client_spans = client_spans  # "auto" | "always" | "never" (config otel_client_spans)
        self._duplicates = Duplicates()
        self._trace = trace
        self._context = context
        self.tracer = providers.tracer_provider.get_tracer("cascadeflow", __version__)
        self.spans = StepSpans(self.tracer)
        meter = providers.meter_provider.get_meter("cascadeflow", __version__)
        self.duration = meter.create_histogram(
            cv.METRIC_DURATION, unit="s", description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=cv.DURATION_BUCKETS)
        self.tokens = meter.create_histogram(
            cv.METRIC_TOKENS, unit="{token}", description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=cv.TOKEN_BUCKETS)
        self.cost = meter.create_counter(cv.METRIC_COST, unit="USD", description="Spend on model calls.")
        self.decisions = meter.create_counter(cv.METRIC_DECISIONS, unit="{decision}",
                                              description="Policy decisions by action and reason.")
        self.utilization = meter.create_histogram(
            cv.METRIC_BUDGET_UTILIZATION, unit="1", description="Share of the budget a session spent.",
            explicit_bucket_boundaries_advisory=cv.UTILIZATION_BUCKETS)
        self.alerts = meter.create_counter(cv.METRIC_ALERTS, unit="{alert}", description="Alerts raised.")
        self.breakers = meter.create_counter(cv.METRIC_BREAKER_CHANGES, unit="{change}",
                                             description="Circuit breaker state changes.")
        self._calls = ToolCalls()

    # -- sessions ------------------------------------------------------------------------
    def session_opened(self, session: Session) -> None:
        name = session.agent or "run"
        attributes: dict[str, Any] = {cv.OPERATION: cv.OP_INVOKE_AGENT, cv.AGENT_NAME: name,
                                      cv.CONVERSATION_ID: session.chain[-1].run_id,
                                      cv.CF_SESSION_ID: session.run_id, cv.CF_MODE: session.mode}
        if session.project:
            attributes[cv.CF_PROJECT] = session.project
        if session.user:
            attributes[cv.CF_USER] = session.user
        if session.limits.budget is not None:
            attributes["cascadeflow.budget"] = session.limits.budget
        # the current span is the parent (the enclosing session's, or one the application or a
        # tool's step opened inside it); else, in a thread the context was not carried to, the
        # enclosing session's span
        parent = None
        if not self._trace.get_current_span().get_span_context().is_valid:
            parent = self._parent(session.parent)
        session.span = self.tracer.start_span(f"invoke_agent {name}",
                                              context=None if parent is None else parent[0],
                                              kind=self._trace.SpanKind.INTERNAL, attributes=attributes)

    def session_closed(self, session: Session) -> None:
        span = session.span
        if span is None:
            return
        span.set_attribute(cv.CF_STEPS, session.steps)
        span.set_attribute(cv.CF_COST, session.spent)
        span.set_attribute(cv.CF_STOPPED, session.stopped)
        span.set_attribute(cv.CF_DEGRADED, session.degraded)
        span.set_attribute(cv.INPUT_TOKENS, session.tokens_in)
        span.set_attribute(cv.OUTPUT_TOKENS, session.tokens_out)
        if session.failed is not None:  # the agent or run raised (a policy stop included)
            span.set_attribute(cv.ERROR_TYPE, session.failed)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, session.failed))
        # when the session closed, not when the worker got here (behind a slow exporter); never
        # before its start (`ended` is a float: a fraction of a microsecond off)
        end = None if session.ended is None else int(session.ended * 1e9)
        start = getattr(span, "start_time", None)
        if end is not None and isinstance(start, int):
            end = max(end, start)
        span.end(end_time=end)
        session.span = None
        budget = session.limits.budget
        if budget:
            labels = {cv.AGENT_NAME: session.agent or "run"}
            if session.project:
                labels[cv.CF_PROJECT] = session.project
            self.utilization.record(session.spent / budget, labels)
        self.providers.deliver_late()

    def activate(self, span: Any) -> Any:
        """The session's span becomes current, so what the application opens inside nests."""
        return self._context.attach(self._trace.set_span_in_context(span))

    def deactivate(self, activation: Any) -> None:
        self._context.detach(activation)

    def _parent(self, session: Session | None) -> tuple[Any, bool] | None:
        """(context of the nearest session span, whether it records), or None without one.
        Steps under a session span that is not recording (sampled out) get no span of their own."""
        while session is not None and session.span is None:
            session = session.parent
        if session is None:
            return None
        context = self._trace.set_span_in_context(session.span)
        return context, bool(session.span.is_recording())

    # -- steps: made current on the caller's thread around the send -----------------------
    def step_started(self, session: Session, operation: str, name: str) -> Started:
        kind = self._trace.SpanKind
        while session.span is None and session.parent is not None:
            session = session.parent
        if operation == "tool":
            return self.spans.start(session.span, cv.OP_EXECUTE_TOOL, name, kind.INTERNAL)
        return self.spans.start(session.span, _OPERATIONS.get(operation, operation), name, kind.CLIENT)

    def step_sent(self, started: Started) -> None:
        self.spans.leave(started)

    def step_dropped(self, started: Started) -> None:
        self.spans.drop(started)

    # -- steps (on the background worker) -----------------------------------------------
    def step_recorded(self, step: StepRecord) -> None:
        """The step's span, built in one go with its real start and end times, and its metrics."""
        request = step.request
        entry = step.entry
        operation = _OPERATIONS.get(request.operation, request.operation)
        tool = request.operation == "tool"
        error = entry.error or step.stop_error
        usage = _known_usage(step)
        call_id = self._calls.settle(step, usage)
        deferred = not tool and self._deferred(step)
        if step.span is not None:
            self._span(step, operation, error, usage, call_id, None, deferred)
        else:  # stopped before the send: under the session's span, when that records
            parent = self._parent(step.session)
            if parent is None or parent[1]:
                self._span(step, operation, error, usage, call_id, None if parent is None else parent[0],
                           deferred)
        if not deferred:  # else the other instrumentation records gen_ai.client.* for it
            self._client_metrics(step, operation, error, usage)
        # usage not known is not reported (a failed, stopped or unread call)
        if not tool and usage is not None and entry.cost:
            # the model as the other gen_ai points name it (on the wire), so they join
            labels = {cv.REQUEST_MODEL: _wire_model(step)}
            if entry.agent:  # left out when empty, as on the gen_ai.client.* points
                labels[cv.AGENT_NAME] = entry.agent
            project = step.chain[-1].project
            if project:
                labels[cv.CF_PROJECT] = project
            self.cost.add(entry.cost, labels)
        self.providers.deliver_late()

    def _client_metrics(self, step: StepRecord, operation: str, error: str | None,
                        usage: Usage | None) -> None:
        """`gen_ai.client.operation.duration` and, when the usage is known, token usage."""
        request = step.request
        entry = step.entry
        tool = request.operation == "tool"
        metric_attrs: dict[str, Any] = {cv.OPERATION: operation}
        if not tool:
            metric_attrs[cv.REQUEST_MODEL] = _wire_model(step)
            provider = provider_name(entry.provider)
            if provider:
                metric_attrs[cv.PROVIDER] = provider
            address, port = server(request.api_base)
            if address:
                metric_attrs[cv.SERVER_ADDRESS] = address
            if port:
                metric_attrs[cv.SERVER_PORT] = port
            if usage is not None and usage.model:
                metric_attrs[cv.RESPONSE_MODEL] = usage.model
        if entry.agent:
            metric_attrs[cv.AGENT_NAME] = entry.agent
        if error is not None:
            metric_attrs[cv.ERROR_TYPE] = error
        if entry.latency_ms is not None:
            self.duration.record(entry.latency_ms / 1000.0, metric_attrs)
        if tool or usage is None:
            return
        token_attrs = {**metric_attrs, cv.CF_USAGE_ESTIMATED: usage.estimated}
        self.tokens.record(usage.tokens_in, {**token_attrs, cv.TOKEN_TYPE: "input"})
        if request.operation != "embeddings":
            self.tokens.record(usage.tokens_out, {**token_attrs, cv.TOKEN_TYPE: "output"})

    def _deferred(self, step: StepRecord) -> bool:
        """The model call's CLIENT span and gen_ai.client.* metrics are left to another
        instrumentation (`otel_client_spans`)."""
        if self.client_spans == "auto":
            return self._duplicates.covered(step)
        return self.client_spans == "never"

    def _span(self, step: StepRecord, operation: str, error: str | None, usage: Usage | None,
              call_id: str | None, parent: Any, deferred: bool) -> None:
        """Start the span; only when it records (a sampler may drop it) build its attributes, in
        one dict handed to the SDK at once, then end it at the step's end."""
        request = step.request
        tool = request.operation == "tool"
        name = f"{cv.OP_EXECUTE_TOOL} {request.tool}" if tool else f"{operation} {_wire_model(step)}"
        kind = self._trace.SpanKind.INTERNAL if tool or deferred else self._trace.SpanKind.CLIENT
        if deferred:
            name = f"cascadeflow {name}"
        end = step.ended_ns or step.started_ns
        started: Started | None = step.span
        if started is not None:
            recording = started.recording if started.span is None else started.span.is_recording()
            attributes = self._attributes(step, operation, error, usage, call_id, deferred) \
                if recording else {}
            self.spans.build(started, name, kind, attributes, step.started_ns, end, error)
            return
        span = self.tracer.start_span(name, context=parent, kind=kind, start_time=step.started_ns)
        if span.is_recording():
            span.set_attributes(self._attributes(step, operation, error, usage, call_id, deferred))
            if error is not None:
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end(end_time=end)

    def _attributes(self, step: StepRecord, operation: str, error: str | None, usage: Usage | None,
                    call_id: str | None, deferred: bool = False) -> dict[str, Any]:
        request = step.request
        entry = step.entry
        attributes: dict[str, Any] = {cv.OPERATION: operation}
        if request.operation == "tool":
            attributes[cv.TOOL_NAME] = request.tool or ""
            attributes[cv.TOOL_TYPE] = cv.TOOL_TYPE_FUNCTION
            if call_id:
                attributes[cv.TOOL_CALL_ID] = call_id
        else:
            attributes[cv.REQUEST_MODEL] = _wire_model(step)
            attributes[cv.CF_REQUESTED_MODEL] = request.model
            provider = provider_name(entry.provider)
            if provider:
                attributes[cv.PROVIDER] = provider
            kwargs = step.kwargs
            for key, attribute, array in cv.REQUEST_PARAMS:
                value = _attr(kwargs.get(key), array)
                if value is not None:
                    attributes[attribute] = value
            address, port = server(request.api_base)
            if address:
                attributes[cv.SERVER_ADDRESS] = address
            if port:
                attributes[cv.SERVER_PORT] = port
            if usage is not None:
                attributes[cv.INPUT_TOKENS] = usage.tokens_in
                if request.operation != "embeddings":
                    attributes[cv.OUTPUT_TOKENS] = usage.tokens_out
                if usage.cached_tokens:
                    attributes[cv.CACHE_READ_TOKENS] = usage.cached_tokens
                if usage.reasoning_tokens:
                    attributes[cv.REASONING_TOKENS] = usage.reasoning_tokens
                if usage.cache_write_tokens:
                    attributes[cv.CACHE_WRITE_TOKENS] = usage.cache_write_tokens
                attributes[cv.CF_USAGE_ESTIMATED] = usage.estimated
                if entry.cost is not None:
                    attributes[cv.USAGE_COST] = entry.cost
                    attributes[cv.CF_COST] = entry.cost
            if entry.finish_reason:
                attributes[cv.FINISH_REASONS] = [entry.finish_reason]
            if step.usage is not None:
                if step.usage.model:
                    attributes[cv.RESPONSE_MODEL] = step.usage.model
                if step.usage.response_id:
                    attributes[cv.RESPONSE_ID] = step.usage.response_id
            attributes[cv.CF_PRICE_KNOWN] = entry.price_known
            # content of a call that went out: a stopped one's prompt was never sent (a guardrail's
            # block stopped it for what it holds), and the trace keeps none for it either
            if self.capture_content and step.content_allowed and not deferred \
                    and step.stop_error is None:  # (deferred: dropped below)
                attributes[cv.INPUT_MESSAGES] = json.dumps(scrub(input_messages(
                    request.operation, step.sent_prompt, step.kwargs)), default=str)
                if usage is not None and request.operation != "embeddings":
                    attributes[cv.OUTPUT_MESSAGES] = json.dumps(scrub(output_messages(usage)),
                                                                default=str)
        attributes[cv.CONVERSATION_ID] = step.chain[-1].run_id
        attributes[cv.CF_SESSION_ID] = entry.run_id
        attributes[cv.CF_STEP] = step.step_no
        if entry.agent:
            attributes[cv.AGENT_NAME] = entry.agent
        attributes[cv.CF_ACTION] = entry.action
        attributes[cv.CF_REASON] = entry.reason
        attributes[cv.CF_APPLIED] = entry.applied
        attributes[cv.CF_MODE] = entry.mode
        if entry.target_model:
            attributes[cv.CF_TARGET_MODEL] = entry.target_model
        if entry.tools_denied:
            attributes[cv.CF_TOOLS_DENIED] = list(entry.tools_denied)
        if entry.budget_remaining is not None:
            attributes[cv.CF_BUDGET_REMAINING] = entry.budget_remaining
        attributes[cv.CF_STATUS] = entry.status
        if error is not None:
            attributes[cv.ERROR_TYPE] = error
        if deferred:  # the instrumentation's CLIENT span carries the GenAI attributes, once
            return {k: v for k, v in attributes.items()
                    if k in _DEFERRED_KEEP or k.startswith("cascadeflow.")}
        return attributes

    def decisions_made(self, entries: Sequence[Entry]) -> None:
        """Count every decision that did something; plain `allow/ok` steps are already counted
        by the duration histogram, and skipping them keeps the common path cheap."""
        for entry in entries:
            if entry.action == "allow" and entry.reason == "ok":
                continue
            self.decisions.add(1, {cv.CF_ACTION: entry.action, cv.CF_REASON: entry.reason,
                                   cv.CF_APPLIED: entry.applied})
        self.providers.deliver_late()

    def breaker_changed(self, deployment: str, old: str, new: str) -> None:
        self.breakers.add(1, {"cascadeflow.deployment": deployment, "cascadeflow.breaker.from": old,
                              "cascadeflow.breaker.to": new})
        self.providers.deliver_late()

    def alert_raised(self, kind: str) -> None:
        self.alerts.add(1, {"cascadeflow.alert.kind": kind})
        self.providers.deliver_late()


def _known_usage(step: StepRecord) -> Usage | None:
    """The step's usage when it is known: not for a call that failed before any answer, was
    stopped, or whose answer was never read (the conventions: usage not available is not
    reported). A stream's estimate is known, and marked estimated."""
    usage = step.usage
    if usage is None or step.entry.status in ("stopped", "unread"):
        return None
    return usage


def _wire_model(step: StepRecord) -> str:
    entry, request = step.entry, step.request
    return wire_model(entry.model or request.model, entry.provider, request.client)


def _attr(value: Any, array: bool) -> Any:
    """A request parameter as its attribute (a list where the convention says `string[]`), or
    None when it was not given: absent, None, or the SDK's sentinel for "not given" (`omit`,
    `NOT_GIVEN`, which its helpers such as `.stream()` pass for every parameter left out)."""
    if isinstance(value, bool | int | float | str):
        return [str(value)] if array else value
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return None
