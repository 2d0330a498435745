"""OpenTelemetry: span names, structure and attributes, metrics, content off by default, OTLP export."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.telemetry import Alert, WebhookSink
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
from opentelemetry.semconv.attributes import error_attributes as ea
from opentelemetry.semconv.attributes import server_attributes as sa
from opentelemetry.trace import SpanKind, StatusCode

from tests.conftest import chat_kwargs

KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def otel() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader, dict[str, Any]]]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield exporter, reader, {"tracer_provider": tracer_provider, "meter_provider": meter_provider}


def spans_by_name(exporter: InMemorySpanExporter) -> dict[str, Any]:
    return {s.name: s for s in exporter.get_finished_spans()}


def metrics(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                out.setdefault(metric.name, []).extend(metric.data.data_points)
    return out


def test_span_structure_and_attributes(provider: Any, otel: Any) -> None:
    exporter, _reader, providers = otel
    report = cascadeflow.init(mode="observe", **providers)
    assert report.telemetry == "code"

    @cascadeflow.tool(name="fetch_similar_tickets")
    def fetch(issue: str) -> list[str]:
        return [issue]

    @cascadeflow.agent(name="triage")
    def triage() -> None:
        litellm.completion(**chat_kwargs(provider, "classify me", api_key=KEY), max_tokens=30,
                           temperature=0.2, top_p=0.9, seed=7)
        fetch("refund")

    with cascadeflow.run(budget=1.0, project="support") as session:
        triage()
    spans = spans_by_name(exporter)
    run, agent = spans["invoke_agent run"], spans["invoke_agent triage"]
    chat, tool = spans["chat gpt-4o-mini"], spans["execute_tool fetch_similar_tickets"]
    assert run.kind == SpanKind.INTERNAL and chat.kind == SpanKind.CLIENT
    assert agent.parent.span_id == run.context.span_id
    assert chat.parent.span_id == agent.context.span_id
    assert tool.parent.span_id == agent.context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1
    a = chat.attributes
    assert a[ga.GEN_AI_OPERATION_NAME] == "chat"
    assert a[ga.GEN_AI_PROVIDER_NAME] == "openai"
    assert a[ga.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"  # as sent: litellm strips its prefix
    assert a["cascadeflow.requested_model"] == "openai/gpt-4o-mini"
    assert a[ga.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini"
    assert a[ga.GEN_AI_REQUEST_MAX_TOKENS] == 30 and a[ga.GEN_AI_REQUEST_TEMPERATURE] == 0.2
    assert a[ga.GEN_AI_REQUEST_TOP_P] == 0.9 and a[ga.GEN_AI_REQUEST_SEED] == 7
    assert a[ga.GEN_AI_USAGE_INPUT_TOKENS] > 0 and a[ga.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert tuple(a[ga.GEN_AI_RESPONSE_FINISH_REASONS]) == ("stop",)
    assert a[ga.GEN_AI_RESPONSE_ID].startswith("chatcmpl-")
    assert a[ga.GEN_AI_CONVERSATION_ID] == session.run_id
    assert a[ga.GEN_AI_AGENT_NAME] == "triage"
    assert a[sa.SERVER_ADDRESS] == "127.0.0.1" and a[sa.SERVER_PORT] == provider.port
    assert a["cascadeflow.action"] == "allow" and a["cascadeflow.applied"] is False
    assert a["cascadeflow.mode"] == "observe"
    assert a["cascadeflow.cost_usd"] == pytest.approx(session.trace()[0]["cost"])
    assert a["cascadeflow.budget_remaining"] == 1.0
    assert tool.attributes[ga.GEN_AI_TOOL_NAME] == "fetch_similar_tickets"
    assert tool.attributes[ga.GEN_AI_OPERATION_NAME] == "execute_tool"
    assert agent.attributes[ga.GEN_AI_AGENT_NAME] == "triage"
    assert run.attributes["cascadeflow.steps"] == 2 and run.attributes["cascadeflow.project"] == "support"
    # content and secrets are absent by default
    dump = json.dumps([dict(s.attributes) for s in spans.values()], default=str)
    assert "classify me" not in dump and "abcdefghijklmnop" not in dump
    assert ga.GEN_AI_INPUT_MESSAGES not in a


def test_metrics(provider: Any, otel: Any) -> None:
    exporter, reader, providers = otel
    cascadeflow.init(mode="enforce", **providers)
    with cascadeflow.run(budget=1.0, max_steps=1):
        litellm.completion(**chat_kwargs(provider), max_tokens=10)
        with pytest.raises(cascadeflow.StepLimitReached):
            litellm.completion(**chat_kwargs(provider), max_tokens=10)
    found = metrics(reader)
    [duration] = found[gm.GEN_AI_CLIENT_OPERATION_DURATION]
    assert duration.count == 1 and duration.attributes[ga.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
    assert list(duration.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    tokens = {p.attributes[ga.GEN_AI_TOKEN_TYPE]: p for p in found[gm.GEN_AI_CLIENT_TOKEN_USAGE]}
    assert tokens["input"].sum > 0 and tokens["output"].sum > 0
    assert found["cascadeflow.cost"][0].value > 0
    decisions = {(p.attributes["cascadeflow.action"], p.attributes["cascadeflow.applied"]): p.value
                 for p in found["cascadeflow.decisions"]}
    assert decisions == {("stop", True): 1}  # plain allow/ok steps are counted by the duration
    assert found["cascadeflow.budget.utilization"][0].count == 1
    stopped = spans_by_name(exporter)["chat gpt-4o-mini"]
    errors = [s for s in exporter.get_finished_spans() if s.status.status_code == StatusCode.ERROR]
    assert [s.attributes[ea.ERROR_TYPE] for s in errors] == ["StepLimitReached"]
    assert stopped is not None


def test_error_type_from_the_provider(provider: Any, otel: Any) -> None:
    exporter, _reader, providers = otel
    cascadeflow.init(mode="observe", **providers)
    provider.inject(status=503)
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    cascadeflow.flush()  # outside a run(), spans are written by the background worker
    [span] = exporter.get_finished_spans()  # the ambient session has no span: the call is a root
    assert span.parent is None
    assert span.attributes[ea.ERROR_TYPE] == "InternalServerError"


def test_request_attributes_hold_what_was_given_in_the_conventions_types(provider: Any, otel: Any) -> None:
    """The SDK's helpers pass a "not given" sentinel for every parameter left out: no attribute
    for those (they were recorded as "<openai.Omit object at ...>"); `stop_sequences` is a
    `string[]` even when one string was given."""
    exporter, _reader, providers = otel
    cascadeflow.init(mode="observe", **providers)
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with client.chat.completions.stream(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                        stop="END", temperature=0.5) as stream:
        for _ in stream:
            pass
    cascadeflow.flush()
    [span] = exporter.get_finished_spans()
    requested = {k: v for k, v in (span.attributes or {}).items() if k.startswith("gen_ai.request.")}
    assert requested == {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.request.stop_sequences": ("END",),
                         "gen_ai.request.temperature": 0.5, "gen_ai.request.stream": True}


def test_content_capture_is_opt_in_and_scrubbed(provider: Any, otel: Any, tmp_path: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    exporter, _reader, providers = otel
    (tmp_path / "cascadeflow.toml").write_text('[models."openai/gpt-4o-mini"]\ntags = ["gdpr"]\n')
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    cascadeflow.init(mode="observe", **providers)
    litellm.completion(**chat_kwargs(provider, f"my key is {KEY}"))
    cascadeflow.flush()
    [span] = exporter.get_finished_spans()
    messages = span.attributes[ga.GEN_AI_INPUT_MESSAGES]
    assert "my key is [SECRET]" in messages and KEY not in messages
    assert "Reply from" in span.attributes[ga.GEN_AI_OUTPUT_MESSAGES]
    # a compliance profile that forbids capture wins
    exporter.clear()
    with cascadeflow.run(compliance="gdpr"):
        litellm.completion(**chat_kwargs(provider, "private"))
    assert all(ga.GEN_AI_INPUT_MESSAGES not in s.attributes for s in exporter.get_finished_spans())


def test_captured_content_leaves_out_the_prompt_a_guardrail_blocked(provider: Any, otel: Any,
                                                                     tmp_path: Any) -> None:
    """With content capture on, a prompt an input rule blocks (for the card number it holds)
    was never sent: its span carries the block, not the prompt."""
    exporter, _reader, providers = otel
    policy = tmp_path / "guardrails.toml"
    policy.write_text('version = "1"\n[[profiles.cards.input]]\nname = "no_cards"\ndetector = "pii"\n'
                      'types = ["credit_card"]\naction = "block"\nmessage = "no card numbers"\n')
    cascadeflow.init(mode="enforce", capture_content=True, guardrails_file=policy, **providers)
    card = "4111 1111 1111 1111"
    with pytest.raises(cascadeflow.GuardrailBlocked), cascadeflow.run(guardrails="cards"):
        litellm.completion(**chat_kwargs(provider, f"charge my card {card}"))
    with cascadeflow.run(guardrails="cards"):
        litellm.completion(**chat_kwargs(provider, "what is my balance"))
    cascadeflow.flush()
    blocked, sent = [s for s in exporter.get_finished_spans() if s.name == "chat gpt-4o-mini"]
    assert blocked.attributes[ea.ERROR_TYPE] == "GuardrailBlocked"
    assert card not in json.dumps(dict(blocked.attributes))
    assert ga.GEN_AI_INPUT_MESSAGES not in blocked.attributes
    assert "what is my balance" in sent.attributes[ga.GEN_AI_INPUT_MESSAGES]


def test_a_sampler_that_drops_gets_no_span_work_but_metrics_still_count(provider: Any) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider(sampler=ALWAYS_OFF)
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    cascadeflow.init(mode="observe", tracer_provider=tracer_provider,
                     meter_provider=MeterProvider(metric_readers=[reader]))
    with cascadeflow.run():
        litellm.completion(**chat_kwargs(provider, "hello"))
    litellm.completion(**chat_kwargs(provider, "outside any run"))
    cascadeflow.flush()
    assert exporter.get_finished_spans() == ()
    [point] = metrics(reader)[gm.GEN_AI_CLIENT_OPERATION_DURATION]
    assert point.count == 2


def test_telemetry_off_costs_nothing() -> None:
    report = cascadeflow.init(mode="observe")
    assert report.telemetry is None
    assert cascadeflow.init(mode="observe", otel=False).telemetry is None


class _Receiver(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        return


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"])
def test_an_otlp_protocol_cascadeflows_exporter_does_not_speak_is_refused(
        monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """Asked for gRPC by the standard variable, cascadeflow's own HTTP exporter would post to
    the gRPC collector port and fail in log lines only: `init()` says so instead."""
    from cascadeflow.errors import ConfigError

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv(variable, "grpc")
    with pytest.raises(ConfigError, match=f"{variable}.*grpc.*http/protobuf"):
        cascadeflow.init(mode="observe")
    monkeypatch.setenv(variable, "http/protobuf")
    assert cascadeflow.init(mode="observe").telemetry == "otlp"


def test_spans_arrive_through_the_real_otlp_exporter(provider: Any, monkeypatch: pytest.MonkeyPatch
                                                     ) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    handler = type("Receiver", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("OTEL_SERVICE_NAME", "triage-service")
        report = cascadeflow.init(mode="observe")
        assert report.telemetry == "otlp"
        with cascadeflow.run():
            litellm.completion(**chat_kwargs(provider))
        cascadeflow.shutdown()  # flushes the batch processor
    finally:
        server.shutdown()
        server.server_close()
    traces = [body for path, body in handler.received if path == "/v1/traces"]
    assert traces, handler.received
    names, services = set(), set()
    for body in traces:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                names.update(span.name for span in scope.spans)
    assert {"invoke_agent run", "chat gpt-4o-mini"} <= names
    assert services == {"triage-service"}
    assert any(path == "/v1/metrics" for path, _ in handler.received)


def _exported(received: list[tuple[str, bytes]]) -> tuple[set[str], set[str]]:
    """The span names and the names of metrics with data points an OTLP receiver was sent."""
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans, metrics = set(), set()
    for path, body in received:
        if path == "/v1/traces":
            for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
                for scope in resource_spans.scope_spans:
                    spans.update(span.name for span in scope.spans)
        elif path == "/v1/metrics":
            for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                for scope in resource_metrics.scope_metrics:
                    metrics.update(m.name for m in scope.metrics
                                   if m.histogram.data_points or m.sum.data_points)
    return spans, metrics


@pytest.mark.parametrize("reload", [False, True], ids=["shutdown", "init"])
def test_a_call_in_flight_through_shutdown_still_exports_over_otlp(
        provider: Any, monkeypatch: pytest.MonkeyPatch, reload: bool) -> None:
    """cascadeflow's own OTLP providers are shut down by `shutdown()` and a reloading `init()`;
    a call in flight then recorded its spans and metrics on them when it ended, and the shut-down
    processors dropped them. They are exported as they come instead, before `flush()` returns."""
    from cascadeflow.testing import Fault

    handler = type("Receiver", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        assert cascadeflow.init(mode="observe").telemetry == "otlp"
        provider.inject(Fault.parse("hold,times=1"))

        def call() -> None:
            with cascadeflow.run():
                litellm.completion(**chat_kwargs(provider))

        caller = threading.Thread(target=call)
        caller.start()
        while not provider.requests:
            threading.Event().wait(0.005)
        if reload:
            monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
            assert cascadeflow.init(mode="observe").telemetry is None
        else:
            cascadeflow.shutdown()
        provider.release()
        caller.join(30)
        assert cascadeflow.flush(10)
        spans, metrics = _exported(handler.received)
    finally:
        server.shutdown()
        server.server_close()
    assert {"invoke_agent run", "chat gpt-4o-mini"} <= spans
    assert "gen_ai.client.operation.duration" in metrics


def test_budget_threshold_alert_reaches_sinks(provider: Any) -> None:
    received: list[Alert] = []
    cascadeflow.init(mode="observe", alerts=[received.append], budget_alert=0.5)
    with cascadeflow.run(budget=0.00003) as session:
        for _ in range(4):
            litellm.completion(**chat_kwargs(provider), max_tokens=20)
    cascadeflow.shutdown()  # delivers pending alerts
    [alert] = received
    assert alert.kind == "budget_threshold" and alert.run_id == session.run_id
    assert alert.attributes["spent"] >= 0.5 * 0.00003


def test_every_alert_is_counted_once_whoever_raised_it(provider: Any, otel: Any, tmp_path: Any) -> None:
    """`cascadeflow.alerts` counts the ledger's alerts (a `[budgets.NAME]` crossing its
    `alert_at`, then its limit) as well as the session's own `budget_threshold`, each once."""
    _exporter, reader, providers = otel
    config = tmp_path / "cascadeflow.toml"
    config.write_text('[ledger]\npath = "ledger.db"\nflush_interval_s = 0.02\n[budgets.daily]\n'
                      'scope = "global"\nwindow = "day"\nlimit = 0.00005\nmode = "observe"\n'
                      'alert_at = 0.5\n')
    received: list[Alert] = []
    cascadeflow.init(mode="enforce", config=config, alerts=[received.append], budget_alert=0.5,
                     **providers)
    with cascadeflow.run(budget=0.00012):  # about 9e-6 a call: half of it spent by the 7th
        for _ in range(8):
            litellm.completion(**chat_kwargs(provider), max_tokens=40)
    cascadeflow.flush()
    kinds = sorted(a.kind for a in received)
    assert kinds == ["budget_threshold", "budget_threshold", "budget_window_exceeded"]
    counted = {p.attributes["cascadeflow.alert.kind"]: p.value for p in metrics(reader)["cascadeflow.alerts"]}
    assert counted == {"budget_threshold": 2, "budget_window_exceeded": 1}


def test_webhook_sink_posts_json() -> None:
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/hook")
        sink(Alert("fallback", f"tier 0 failed with key {KEY}", run_id="r1"))
    finally:
        server.shutdown()
        server.server_close()
    [(path, body)] = handler.received
    payload = json.loads(body)
    assert path == "/hook" and payload["kind"] == "fallback"
    assert payload["text"].startswith("[cascadeflow] fallback:")
    assert KEY not in body.decode()


def test_webhook_payload_keeps_the_receivers_credential_and_masks_the_alert() -> None:
    """A payload function that puts the receiver's credential in the body (Pushover's
    `token`) posts it as given; the alert's own text is still masked."""
    handler = type("Receiver", (_Receiver,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    app_token = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
    try:
        sink = WebhookSink(f"http://127.0.0.1:{server.server_address[1]}/1/messages.json",
                           payload=lambda a: {"token": app_token, "user": "uQiRzpo4DXghDmr9QzzfQu27cmVRsG",
                                              "message": a.message})
        sink(Alert("fallback", f"tier 0 failed with key {KEY}"))
    finally:
        server.shutdown()
        server.server_close()
    [(_path, body)] = handler.received
    payload = json.loads(body)
    assert payload["token"] == app_token
    assert payload["message"] == "tier 0 failed with key [SECRET]"


@pytest.mark.parametrize(("url", "timeout"), [
    ("hooks.slack.com/services/T0/B0/SECRETPATH", 5.0),  # no scheme: it never posted, silently
    ("file:///etc/hosts", 5.0), ("https:///services/SECRETPATH", 5.0),
    ("https://hooks.slack.com/services/T0/B0/SECRETPATH", 0), ("https://h.example/", float("nan"))])
def test_webhook_sink_refuses_what_could_never_post(url: str, timeout: float) -> None:
    with pytest.raises(cascadeflow.ConfigError, match="WebhookSink") as info:
        WebhookSink(url, timeout=timeout)
    assert "SECRETPATH" not in str(info.value)  # a webhook URL is a credential


def test_log_sink_takes_a_level_name_and_refuses_what_is_no_level(caplog: pytest.LogCaptureFixture) -> None:
    """`LogSink(level="ERROR")` logs at ERROR (a name the logger itself would refuse, failing
    every alert on the alert thread); what is no level is refused when the sink is made."""
    from cascadeflow.errors import ConfigError
    from cascadeflow.telemetry import Dispatcher, LogSink

    dispatcher = Dispatcher([LogSink(level="error")])
    with caplog.at_level(logging.INFO, logger="cascadeflow.alerts"):
        dispatcher.emit(Alert("fallback", "tier down"))
        dispatcher.close()
    assert dispatcher.failed == 0
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "cascadeflow.alerts"] \
        == [(logging.ERROR, "cascadeflow alert fallback: tier down")]
    for bad in ("loud", 2.5, None):
        with pytest.raises(ConfigError, match="LogSink level"):
            LogSink(level=bad)  # type: ignore[arg-type]


def test_a_failing_sink_never_fails_the_call(provider: Any) -> None:
    def broken(alert: Alert) -> None:
        raise RuntimeError("pager down")

    cascadeflow.init(mode="observe", alerts=[broken], budget_alert=0.01)
    with cascadeflow.run(budget=0.001):
        litellm.completion(**chat_kwargs(provider))
    cascadeflow.shutdown()
