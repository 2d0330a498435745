"""Spans and metrics for sessions, model calls and tool executions.

A session is an `invoke_agent {name}` INTERNAL span; each model call a `{operation} {model}`
CLIENT span under it; each `@tool` execution an `execute_tool {name}` span. Parents are set
explicitly from the session, so the structure holds across threads and generator agents.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cascadeflow.secrets import scrub
from cascadeflow.telemetry import conventions as cv
from cascadeflow.telemetry.setup import Providers

if TYPE_CHECKING:
    from cascadeflow.pipeline import Step
    from cascadeflow.request import Usage
    from cascadeflow.session import Entry, Session

_OPERATIONS = {"chat": cv.OP_CHAT, "responses": cv.OP_CHAT, "text_completion": cv.OP_TEXT,
               "embeddings": cv.OP_EMBEDDINGS, "tool": cv.OP_EXECUTE_TOOL}


class Telemetry:
    """Emits through the providers it was given; owns nothing it did not create."""

    def __init__(self, providers: Providers, capture_content: bool) -> None:
        from cascadeflow import __version__
        from opentelemetry import trace

        self.providers = providers
        self.capture_content = capture_content
        self._trace = trace
        self.tracer = providers.tracer_provider.get_tracer("cascadeflow", __version__)
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
            cv.METRIC_BUDGET_UTILIZATION, unit="1", description="Share of the budget a session spent.")
        self.alerts = meter.create_counter(cv.METRIC_ALERTS, unit="{alert}", description="Alerts raised.")
        self.breakers = meter.create_counter(cv.METRIC_BREAKER_CHANGES, unit="{change}",
                                             description="Circuit breaker state changes.")

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
        session.span = self.tracer.start_span(f"invoke_agent {name}", context=self._parent(session.parent),
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
        span.end()
        session.span = None
        budget = session.limits.budget
        if budget:
            self.utilization.record(session.spent / budget,
                                    {cv.AGENT_NAME: session.agent or "run",
                                     cv.CF_PROJECT: session.project or ""})

    def _parent(self, session: Session | None) -> Any:
        while session is not None and session.span is None:
            session = session.parent
        if session is None:
            return None
        return self._trace.set_span_in_context(session.span)

    # -- steps ---------------------------------------------------------------------------
    def step_started(self, step: Step) -> Any:
        request = step.request
        operation = _OPERATIONS.get(request.operation, request.operation)
        entry = step.entry
        if request.operation == "tool":
            name = f"{cv.OP_EXECUTE_TOOL} {request.tool}"
            kind = self._trace.SpanKind.INTERNAL
            attributes: dict[str, Any] = {cv.OPERATION: operation, cv.TOOL_NAME: request.tool or ""}
        else:
            name = f"{operation} {entry.model}"
            kind = self._trace.SpanKind.CLIENT
            attributes = {cv.OPERATION: operation, cv.REQUEST_MODEL: entry.model or request.model,
                          cv.CF_REQUESTED_MODEL: request.model}
            if entry.provider:
                attributes[cv.PROVIDER] = entry.provider
            kwargs = step.kwargs
            for key, attribute in cv.REQUEST_PARAMS:
                value = kwargs.get(key)
                if value is not None:
                    attributes[attribute] = _attr(value)
            if request.api_base:
                parts = urlsplit(request.api_base)
                if parts.hostname:
                    attributes[cv.SERVER_ADDRESS] = parts.hostname
                if parts.port:
                    attributes[cv.SERVER_PORT] = parts.port
        chain = step.chain
        attributes[cv.CONVERSATION_ID] = chain[-1].run_id
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
        return self.tracer.start_span(name, context=self._parent(step.session), kind=kind,
                                      attributes=attributes)

    def decisions_made(self, entries: list[Entry]) -> None:
        """Count every decision that did something; plain `allow/ok` steps are already counted
        by the duration histogram, and skipping them keeps the common path cheap."""
        for entry in entries:
            if entry.action == "allow" and entry.reason == "ok":
                continue
            self.decisions.add(1, {cv.CF_ACTION: entry.action, cv.CF_REASON: entry.reason,
                                   cv.CF_APPLIED: entry.applied})

    def step_finished(self, step: Step, span: Any, usage: Usage | None) -> None:
        entry = step.entry
        request = step.request
        operation = _OPERATIONS.get(request.operation, request.operation)
        if request.operation != "tool":
            span.set_attribute(cv.INPUT_TOKENS, entry.tokens_in)
            span.set_attribute(cv.OUTPUT_TOKENS, entry.tokens_out)
            if entry.cached_tokens:
                span.set_attribute(cv.CACHE_READ_TOKENS, entry.cached_tokens)
            if entry.reasoning_tokens:
                span.set_attribute(cv.REASONING_TOKENS, entry.reasoning_tokens)
            if entry.finish_reason:
                span.set_attribute(cv.FINISH_REASONS, [entry.finish_reason])
            if usage is not None:
                if usage.cache_write_tokens:
                    span.set_attribute(cv.CACHE_WRITE_TOKENS, usage.cache_write_tokens)
                if usage.model:
                    span.set_attribute(cv.RESPONSE_MODEL, usage.model)
                if usage.response_id:
                    span.set_attribute(cv.RESPONSE_ID, usage.response_id)
            span.set_attribute(cv.CF_USAGE_ESTIMATED, entry.usage_estimated)
            span.set_attribute(cv.CF_PRICE_KNOWN, entry.price_known)
            if entry.cost is not None:
                span.set_attribute(cv.CF_COST, entry.cost)
            if self.capture_content and step.rt.capture_allowed(step.chain):
                span.set_attribute(cv.INPUT_MESSAGES, json.dumps(scrub(request.prompt), default=str))
                if usage is not None:
                    span.set_attribute(cv.OUTPUT_MESSAGES, json.dumps(
                        [{"role": "assistant", "content": scrub(usage.text)}]))
        span.set_attribute(cv.CF_STATUS, entry.status)
        metric_attrs: dict[str, Any] = {cv.OPERATION: operation}
        if request.operation != "tool":
            metric_attrs[cv.REQUEST_MODEL] = entry.model or request.model
            if entry.provider:
                metric_attrs[cv.PROVIDER] = entry.provider
        if entry.agent:
            metric_attrs[cv.AGENT_NAME] = entry.agent
        if entry.error is not None:
            span.set_attribute(cv.ERROR_TYPE, entry.error)
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, entry.error))
            metric_attrs[cv.ERROR_TYPE] = entry.error
        span.end()
        if entry.latency_ms is not None:
            self.duration.record(entry.latency_ms / 1000.0, metric_attrs)
        if request.operation != "tool" and entry.status != "stopped":
            token_attrs = dict(metric_attrs)
            token_attrs[cv.TOKEN_TYPE] = "input"
            self.tokens.record(entry.tokens_in, token_attrs)
            if request.operation != "embeddings":
                token_attrs = dict(metric_attrs)
                token_attrs[cv.TOKEN_TYPE] = "output"
                self.tokens.record(entry.tokens_out, token_attrs)
            if entry.cost:
                self.cost.add(entry.cost, {cv.REQUEST_MODEL: entry.model or request.model,
                                           cv.AGENT_NAME: entry.agent or "",
                                           cv.CF_PROJECT: step.chain[-1].project or ""})

    def breaker_changed(self, deployment: str, old: str, new: str) -> None:
        self.breakers.add(1, {"cascadeflow.deployment": deployment, "cascadeflow.breaker.from": old,
                              "cascadeflow.breaker.to": new})

    def alert_raised(self, kind: str) -> None:
        self.alerts.add(1, {"cascadeflow.alert.kind": kind})


def _attr(value: Any) -> Any:
    """A value OpenTelemetry accepts as an attribute."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [str(v) for v in value]
    return str(value)
