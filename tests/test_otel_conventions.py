"""OpenTelemetry against the GenAI semantic conventions: every name comes from the
`opentelemetry-semantic-conventions` package, never typed by hand here."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from openai.resources.chat.completions import AsyncCompletions, Completions
from openai.resources.embeddings import AsyncEmbeddings, Embeddings
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as ga
from opentelemetry.semconv._incubating.metrics import gen_ai_metrics as gm
from opentelemetry.semconv.attributes import error_attributes as ea
from opentelemetry.semconv.attributes import server_attributes as sa
from opentelemetry.trace import StatusCode

from tests.conftest import chat_kwargs

Providers = ga.GenAiProviderNameValues
Operations = ga.GenAiOperationNameValues
Tokens = ga.GenAiTokenTypeValues
# proposed in the GenAI conventions (semantic-conventions-genai), not yet in the package
USAGE_COST = "gen_ai.usage.cost"


class Otel:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    @property
    def providers(self) -> dict[str, Any]:
        return {"tracer_provider": self.tracer_provider, "meter_provider": self.meter_provider}

    def spans(self) -> list[Any]:
        cascadeflow.flush()
        return list(self.exporter.get_finished_spans())

    def model_spans(self) -> list[Any]:
        return [s for s in self.spans() if s.attributes.get(ga.GEN_AI_OPERATION_NAME)
                in (Operations.CHAT.value, Operations.TEXT_COMPLETION.value, Operations.EMBEDDINGS.value)]

    def points(self, name: str) -> list[Any]:
        cascadeflow.flush()
        out: list[Any] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


@pytest.fixture
def otel() -> Iterator[Otel]:
    yield Otel()


# -- 2. provider name and the request model as sent on the wire --------------------------------
@pytest.mark.parametrize(("model", "expected"), [
    ("azure/my-deployment", Providers.AZURE_AI_OPENAI.value),
    ("bedrock/anthropic.claude-3-haiku-20240307-v1:0", Providers.AWS_BEDROCK.value),
    ("vertex_ai/gemini-1.5-flash", Providers.GCP_VERTEX_AI.value),
    ("mistral/mistral-small-latest", Providers.MISTRAL_AI.value),
    ("gemini/gemini-1.5-flash", Providers.GCP_GEMINI.value),
    ("anthropic/claude-3-5-haiku-20241022", Providers.ANTHROPIC.value),
    ("xai/grok-2", Providers.X_AI.value),
])
def test_provider_names_are_the_conventional_values(model: str, expected: str, otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    litellm.completion(model=model, messages=[{"role": "user", "content": "hi"}],
                       mock_response="ok")
    [span] = otel.model_spans()
    assert span.attributes[ga.GEN_AI_PROVIDER_NAME] == expected
    assert span.attributes[ga.GEN_AI_REQUEST_MODEL] == model.split("/", 1)[1]
    assert span.attributes["cascadeflow.requested_model"] == model


def test_bare_model_with_api_base_is_openai_and_prefix_is_not_on_the_wire(provider: Any,
                                                                          otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o-mini"))
    litellm.completion(**chat_kwargs(provider, model="gpt-4o-mini"))
    prefixed, bare = otel.model_spans()
    for span in (prefixed, bare):
        assert span.attributes[ga.GEN_AI_PROVIDER_NAME] == Providers.OPENAI.value
        assert span.attributes[ga.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini"
        assert span.attributes[ga.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini"
    assert prefixed.attributes["cascadeflow.requested_model"] == "openai/gpt-4o-mini"
    [duration] = otel.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    assert duration.attributes[ga.GEN_AI_REQUEST_MODEL] == "gpt-4o-mini" and duration.count == 2


# -- 5. usage that is not known is not reported ----------------------------------------------------
def test_failed_and_stopped_calls_report_no_usage(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="enforce", **otel.providers)
    provider.inject(status=503)
    client = openai.OpenAI(base_url=provider.url, api_key="test", max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    provider.reset()
    with cascadeflow.run(max_steps=1):
        litellm.completion(**chat_kwargs(provider))
        with pytest.raises(cascadeflow.StepLimitReached):
            litellm.completion(**chat_kwargs(provider))
    spans = otel.model_spans()
    assert len(spans) == 3
    failed, ok, stopped = sorted(spans, key=lambda s: s.start_time)
    for span in (failed, stopped):
        assert span.attributes[ea.ERROR_TYPE]
        assert ga.GEN_AI_USAGE_INPUT_TOKENS not in span.attributes
        assert ga.GEN_AI_USAGE_OUTPUT_TOKENS not in span.attributes
    assert ok.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] > 0
    tokens = otel.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)
    assert {p.attributes[ga.GEN_AI_TOKEN_TYPE] for p in tokens} == {Tokens.INPUT.value, Tokens.OUTPUT.value}
    assert all(p.count == 1 and p.min > 0 for p in tokens)  # only the call that answered
    assert all(ea.ERROR_TYPE not in p.attributes for p in tokens)


def test_estimated_stream_usage_is_marked_on_the_metric_point(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    for _chunk in litellm.completion(**chat_kwargs(provider), stream=True):
        pass
    for _chunk in litellm.completion(**chat_kwargs(provider), stream=True,
                                     stream_options={"include_usage": True}):
        pass
    tokens = otel.points(gm.GEN_AI_CLIENT_TOKEN_USAGE)
    marks = sorted(p.attributes.get("cascadeflow.usage_estimated") for p in tokens)
    assert marks == [False, False, True, True]


# -- 7. cost, embeddings dimensions, tool call ids, server and response model on metrics -----------
def test_usage_cost_and_metric_point_attributes(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    litellm.completion(**chat_kwargs(provider))
    [span] = otel.model_spans()
    assert span.attributes[USAGE_COST] == pytest.approx(span.attributes["cascadeflow.cost_usd"])
    assert span.attributes[USAGE_COST] > 0
    for name in (gm.GEN_AI_CLIENT_OPERATION_DURATION, gm.GEN_AI_CLIENT_TOKEN_USAGE):
        for point in otel.points(name):
            assert point.attributes[sa.SERVER_ADDRESS] == "127.0.0.1"
            assert point.attributes[sa.SERVER_PORT] == provider.port
            assert point.attributes[ga.GEN_AI_RESPONSE_MODEL] == "gpt-4o-mini"


def test_cost_points_name_the_model_as_the_gen_ai_points_do(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    litellm.completion(**chat_kwargs(provider))  # `openai/gpt-4o-mini`: litellm's prefix
    openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    durations = otel.points(gm.GEN_AI_CLIENT_OPERATION_DURATION)
    [duration] = {p.attributes[ga.GEN_AI_REQUEST_MODEL] for p in durations}
    [cost] = otel.points("cascadeflow.cost")  # one series for the model, whichever client sent it
    assert cost.attributes[ga.GEN_AI_REQUEST_MODEL] == duration == "gpt-4o-mini"
    # no agent, no project: left out, as the duration points leave them (an empty string was
    # a series of its own that no other metric's points join)
    assert ga.GEN_AI_AGENT_NAME not in cost.attributes and ga.GEN_AI_AGENT_NAME not in durations[0].attributes
    assert "cascadeflow.project" not in cost.attributes


def test_budget_utilization_buckets_tell_a_light_session_from_one_near_its_budget(
        provider: Any, otel: Otel) -> None:
    """Sessions that spent a quarter and most of their budget land in different buckets
    of `cascadeflow.budget.utilization` (a share, 0 to 1 and beyond), so its quantiles mean
    something."""
    cascadeflow.init(mode="observe", **otel.providers)
    with cascadeflow.run(budget=1.0) as first:
        litellm.completion(**chat_kwargs(provider, "classify me"))
    cost = first.summary()["cost_total"]
    assert cost > 0
    for share in (0.25, 0.85):
        with cascadeflow.run(budget=cost / share):
            litellm.completion(**chat_kwargs(provider, "classify me"))
    [point] = otel.points("cascadeflow.budget.utilization")
    assert point.count == 3
    assert sum(1 for n in point.bucket_counts if n) == 3  # ~0, 0.25 and 0.85: three buckets
    assert 1.0 in point.explicit_bounds  # whole budget spent, or more


def test_embeddings_dimension_count_and_no_output_tokens(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    client = openai.OpenAI(base_url=provider.url, api_key="test")
    client.embeddings.create(model="text-embedding-3-small", input="hello", dimensions=16)
    [span] = otel.model_spans()
    assert span.attributes[ga.GEN_AI_OPERATION_NAME] == Operations.EMBEDDINGS.value
    assert span.attributes[ga.GEN_AI_EMBEDDINGS_DIMENSION_COUNT] == 16
    assert ga.GEN_AI_USAGE_OUTPUT_TOKENS not in span.attributes


def test_execute_tool_carries_the_call_id_the_model_asked_with(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", **otel.providers)
    provider.reply(tool_call=("lookup", {"order": "A1"}))

    @cascadeflow.tool
    def lookup(order: str) -> str:
        return order

    with cascadeflow.run():
        response = litellm.completion(**chat_kwargs(provider, "find A1"))
        call = response.choices[0].message.tool_calls[0]
        lookup(**json.loads(call.function.arguments))
    [tool] = [s for s in otel.spans() if s.name == "execute_tool lookup"]
    assert tool.attributes[ga.GEN_AI_TOOL_NAME] == "lookup"
    assert tool.attributes[ga.GEN_AI_TOOL_TYPE] == "function"
    assert tool.attributes[ga.GEN_AI_TOOL_CALL_ID] == call.id


# -- 4. shutdown leaves other instrumentors' patches alone, in any order ------------------------
def _reference(otel: Otel) -> Any:
    from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

    instrumentor = OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    return instrumentor


def _reference_spans(otel: Otel) -> list[Any]:
    return [s for s in otel.spans() if s.instrumentation_scope.name != "cascadeflow"]


def _chat(provider: Any) -> None:
    client = openai.OpenAI(base_url=provider.url, api_key="test")
    client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])


@pytest.mark.parametrize("reference_first", [False, True])
def test_shutdown_keeps_the_reference_instrumentation(provider: Any, otel: Otel,
                                                      reference_first: bool) -> None:
    create = openai.resources.chat.completions.Completions.create
    instrumentor = _reference(otel) if reference_first else None
    cascadeflow.init(mode="observe", **otel.providers)
    if instrumentor is None:
        instrumentor = _reference(otel)
    try:
        cascadeflow.shutdown()
        _chat(provider)
        assert len(_reference_spans(otel)) == 1  # the reference still emits
        assert otel.model_spans() == _reference_spans(otel)  # cascadeflow no longer does
        # a second init and shutdown, then the reference leaves: the SDK is as it was
        cascadeflow.init(mode="observe", **otel.providers)
        cascadeflow.shutdown()
    finally:
        instrumentor.uninstrument()
    assert openai.resources.chat.completions.Completions.create is create


_WRAPPED_BY_REFERENCE = (Completions, AsyncCompletions, Embeddings, AsyncEmbeddings)


def _sdk_methods() -> dict[type, Any]:
    return {cls: vars(cls)["create"] for cls in _WRAPPED_BY_REFERENCE}


def _calls_reported_by(otel: Otel, provider: Any) -> tuple[int, int]:
    """One chat call now: (spans cascadeflow emitted for it, spans the reference emitted)."""
    otel.spans()
    otel.exporter.clear()
    _chat(provider)
    spans = otel.spans()
    ours = sum(s.instrumentation_scope.name == "cascadeflow" for s in spans)
    return ours, len(spans) - ours


@pytest.mark.parametrize("reference_leaves_first", [False, True])
@pytest.mark.parametrize("reference_first", [False, True])
def test_every_order_of_entering_and_leaving_installs_the_right_functions(
        provider: Any, otel: Otel, reference_first: bool, reference_leaves_first: bool) -> None:
    sdk = _sdk_methods()
    instrumentor = _reference(otel) if reference_first else None
    cascadeflow.init(mode="observe", **otel.providers)
    if instrumentor is None:
        instrumentor = _reference(otel)
    try:
        assert _calls_reported_by(otel, provider) == (1, 1)  # both report the call
        [ours] = [s for s in otel.spans() if s.instrumentation_scope.name == "cascadeflow"]
        [theirs] = _reference_spans(otel)
        assert ours.parent.span_id == theirs.context.span_id  # the reference is outermost
        if reference_leaves_first:
            instrumentor.uninstrument()
            for cls, method in _sdk_methods().items():  # only cascadeflow's wrapper, on the SDK's
                assert method.__cascadeflow_original__ is sdk[cls]
            assert _calls_reported_by(otel, provider) == (1, 0)
        else:
            cascadeflow.shutdown()
            for cls, method in _sdk_methods().items():  # only the reference, on the SDK's
                assert method is not sdk[cls] and method.__wrapped__ is sdk[cls]
            assert _calls_reported_by(otel, provider) == (0, 1)
    finally:
        cascadeflow.shutdown()
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
    assert _sdk_methods() == sdk
    assert _calls_reported_by(otel, provider) == (0, 0)


# -- 1. cascadeflow's spans are current for the code they wrap ------------------------------------
@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_spans_opened_inside_agents_tools_and_sends_nest(provider: Any, otel: Otel, mode: str) -> None:
    import httpx
    from opentelemetry import trace

    app = otel.tracer_provider.get_tracer("app")
    at_send: list[Any] = []  # the span current when the HTTP request leaves, as an HTTP
    http = httpx.Client(event_hooks={"request": [  # client instrumentation would see it
        lambda request: at_send.append(trace.get_current_span().get_span_context())]})
    client = openai.OpenAI(base_url=provider.url, api_key="test", http_client=http)
    cascadeflow.init(mode=mode, **otel.providers)

    @cascadeflow.tool
    def lookup(order: str) -> str:
        with app.start_as_current_span("app.in_tool"):
            return order

    @cascadeflow.agent(name="triage")
    def triage() -> None:
        with app.start_as_current_span("app.in_agent"):
            client.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": "x"}])
        lookup("A1")

    with cascadeflow.run():
        triage()
    spans = {s.name: s for s in otel.spans()}
    agent, in_agent = spans["invoke_agent triage"], spans["app.in_agent"]
    chat, tool = spans["chat gpt-4o-mini"], spans["execute_tool lookup"]
    assert in_agent.parent.span_id == agent.context.span_id
    assert chat.parent.span_id == in_agent.context.span_id  # the current span is the parent
    assert [c.span_id for c in at_send] == [chat.context.span_id]
    assert tool.parent.span_id == agent.context.span_id
    assert spans["app.in_tool"].parent.span_id == tool.context.span_id
    assert len({s.context.trace_id for s in spans.values()}) == 1
    assert trace.get_current_span() is trace.INVALID_SPAN  # nothing left attached


def test_agents_opened_under_an_application_span_or_a_tool_nest_under_it(otel: Otel) -> None:
    """An `@agent` called inside a span the application opened within a run, or inside a
    `@tool` (an agent used as a tool), has that span as its parent, not the run's."""
    app = otel.tracer_provider.get_tracer("app")
    cascadeflow.init(mode="observe", **otel.providers)

    @cascadeflow.agent(name="inner")
    def inner() -> None:
        return None

    @cascadeflow.tool
    def delegate() -> None:
        inner()

    with cascadeflow.run():
        with app.start_as_current_span("app.handler"):
            inner()
        delegate()
    spans = otel.spans()
    by_id = {s.context.span_id: s.name for s in spans}
    parents = sorted(by_id[s.parent.span_id] for s in spans if s.name == "invoke_agent inner")
    assert parents == ["app.handler", "execute_tool delegate"]
    assert {by_id[s.parent.span_id] for s in spans if s.name in ("app.handler", "execute_tool delegate")} \
        == {"invoke_agent run"}


def test_a_stopped_step_nests_under_the_span_current_where_it_was_stopped(provider: Any,
                                                                          otel: Otel) -> None:
    """A model call or tool that enforcement stops before sending gets its span under the
    span the application opened inside the run, as a call that went out would."""
    app = otel.tracer_provider.get_tracer("app")
    cascadeflow.init(mode="enforce", max_tool_calls=0, **otel.providers)

    @cascadeflow.tool
    def lookup() -> None:
        return None

    with pytest.raises(cascadeflow.BudgetExceeded), cascadeflow.run(budget=1e-9), \
            app.start_as_current_span("app.handler"):
        litellm.completion(**chat_kwargs(provider, "classify me"))
    with pytest.raises(cascadeflow.ToolDenied), cascadeflow.run(), \
            app.start_as_current_span("app.tools"):
        lookup()
    spans = {s.name: s for s in otel.spans()}
    chat, tool = spans["chat gpt-4o-mini"], spans["execute_tool lookup"]
    assert chat.attributes[ea.ERROR_TYPE] == "BudgetExceeded"
    assert tool.attributes[ea.ERROR_TYPE] == "ToolDenied"
    assert chat.parent.span_id == spans["app.handler"].context.span_id
    assert tool.parent.span_id == spans["app.tools"].context.span_id
    assert chat.status.status_code == tool.status.status_code == StatusCode.ERROR


@pytest.mark.parametrize("stream", [False, True])
def test_an_answer_an_output_rule_withholds_is_blocked_in_trace_and_span(provider: Any, otel: Otel,
                                                                         stream: bool) -> None:
    """A pci `block` on a streamed answer ended its step `blocked`, error GuardrailBlocked, span
    ERROR; the same block on an unstreamed answer, which the caller also gets as the error,
    was recorded `ok` with no error and an UNSET span: the withheld answer looked like a
    success on every dashboard."""
    provider.reply("Your card is 4242 4242 4242 4242.", when="card")
    cascadeflow.init(mode="enforce", **otel.providers)
    with cascadeflow.run(guardrails="pci") as session, pytest.raises(cascadeflow.GuardrailBlocked):
        answer = litellm.completion(**chat_kwargs(provider, "my card"), stream=stream)
        for _chunk in answer if stream else ():
            pass
    step = session.trace()[0]
    assert (step["status"], step["error"]) == ("blocked", "GuardrailBlocked") and step["cost"] > 0
    [span] = otel.model_spans()
    assert span.attributes[ea.ERROR_TYPE] == "GuardrailBlocked"
    assert span.status.status_code == StatusCode.ERROR


async def test_async_agent_spans_are_current_in_their_own_tasks(provider: Any, otel: Otel) -> None:
    """Two async agents run at once: each one's code and sends nest under its own span."""
    import httpx
    from opentelemetry import trace

    app = otel.tracer_provider.get_tracer("app")
    at_send: dict[str, Any] = {}  # the span current when each request leaves
    http = httpx.AsyncClient(event_hooks={"request": [_record_sender(at_send)]})
    client = openai.AsyncOpenAI(base_url=provider.url, api_key="test", http_client=http)
    cascadeflow.init(mode="observe", **otel.providers)

    async def work(who: str) -> None:
        with app.start_as_current_span(f"app.in_{who}"):
            await asyncio.sleep(0)  # the other agent runs in between
            await client.chat.completions.create(model="gpt-4o-mini",
                                                 messages=[{"role": "user", "content": who}])

    async with cascadeflow.run():
        await asyncio.gather(cascadeflow.agent(name="east")(work)("east"),
                             cascadeflow.agent(name="west")(work)("west"))
    await http.aclose()
    spans = otel.spans()
    for who in ("east", "west"):
        [agent] = [s for s in spans if s.name == f"invoke_agent {who}"]
        [inside] = [s for s in spans if s.name == f"app.in_{who}"]
        assert inside.parent is not None and inside.parent.span_id == agent.context.span_id
        [chat] = [s for s in spans if s.name == "chat gpt-4o-mini" and s.parent is not None
                  and s.parent.span_id == inside.context.span_id]
        assert at_send[who].span_id == chat.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN


def _record_sender(at_send: dict[str, Any]) -> Any:
    """An httpx request hook: the current span by the prompt sent, as HTTP instrumentation sees it."""
    from opentelemetry import trace

    async def hook(request: Any) -> None:
        prompt = json.loads(request.content)["messages"][0]["content"]
        at_send[prompt] = trace.get_current_span().get_span_context()

    return hook


def test_attributes_a_tool_sets_on_its_current_span_are_kept(otel: Otel) -> None:
    from opentelemetry import trace

    cascadeflow.init(mode="enforce", **otel.providers)

    @cascadeflow.tool(name="lookup")
    def lookup(ticket: int) -> int:
        span = trace.get_current_span()
        if span.is_recording():  # how instrumented code guards its annotations
            span.set_attribute("ticket.id", ticket)
            span.set_attributes({"ticket.queue": "billing", ga.GEN_AI_TOOL_NAME: "renamed"})
        return ticket

    with cascadeflow.run():
        lookup(42)
    [span] = [s for s in otel.spans() if s.name == "execute_tool lookup"]
    assert span.attributes["ticket.id"] == 42 and span.attributes["ticket.queue"] == "billing"
    assert span.attributes[ga.GEN_AI_TOOL_NAME] == "lookup"  # the conventions' names stay cascadeflow's


def test_generator_agent_span_is_current_only_while_it_runs(otel: Otel) -> None:
    from opentelemetry import trace

    app = otel.tracer_provider.get_tracer("app")
    cascadeflow.init(mode="observe", **otel.providers)

    @cascadeflow.agent(name="stream")
    def stream() -> Iterator[int]:
        for i in range(2):
            with app.start_as_current_span(f"app.item{i}"):
                pass
            yield i

    with cascadeflow.run():
        for i in stream():
            with app.start_as_current_span(f"app.consumer{i}"):
                pass
    spans = {s.name: s for s in otel.spans()}
    agent, run = spans["invoke_agent stream"], spans["invoke_agent run"]
    assert spans["app.item0"].parent.span_id == agent.context.span_id
    assert spans["app.item1"].parent.span_id == agent.context.span_id
    assert spans["app.consumer0"].parent.span_id == run.context.span_id
    assert trace.get_current_span() is trace.INVALID_SPAN


# -- 6. beside the reference instrumentation: one CLIENT span and one set of gen_ai.client.* -------
def _client_spans(otel: Otel) -> list[Any]:
    from opentelemetry.trace import SpanKind

    return [s for s in otel.spans() if s.kind == SpanKind.CLIENT]


def _cascadeflow_points(otel: Otel, name: str) -> list[Any]:
    cascadeflow.flush()
    data = otel.reader.get_metrics_data()
    return [p for r in data.resource_metrics for s in r.scope_metrics if s.scope.name == "cascadeflow"
            for m in s.metrics if m.name == name for p in m.data.data_points]


@pytest.mark.parametrize("reference_first", [False, True])
def test_beside_the_reference_cascadeflow_defers_its_client_span(provider: Any, otel: Otel,
                                                                 reference_first: bool) -> None:
    instrumentor = _reference(otel) if reference_first else None
    cascadeflow.init(mode="observe", **otel.providers)
    if instrumentor is None:
        instrumentor = _reference(otel)
    try:
        with cascadeflow.run(budget=1.0):
            _chat(provider)
            # litellm sends through the openai SDK; a key of its own keeps litellm from reusing a
            # client cached by an earlier test, which holds the SDK method bound back then
            litellm.completion(**chat_kwargs(provider, api_key=f"sk-defer-{reference_first}"))
        [ours, _litellm_step] = [s for s in otel.spans() if s.instrumentation_scope.name == "cascadeflow"
                            and s.name.startswith("cascadeflow chat")]
        assert len(_client_spans(otel)) == 2  # one per call: the reference's
        assert all(s.instrumentation_scope.name != "cascadeflow" for s in _client_spans(otel))
        assert ours.attributes["cascadeflow.cost_usd"] > 0
        assert ga.GEN_AI_USAGE_INPUT_TOKENS not in ours.attributes
        assert _cascadeflow_points(otel, gm.GEN_AI_CLIENT_OPERATION_DURATION) == []
        assert _cascadeflow_points(otel, "cascadeflow.cost")
        # asked for both, it emits both
        cascadeflow.init(mode="observe", otel_client_spans="always", **otel.providers)
        otel.exporter.clear()
        _chat(provider)
        assert len(_client_spans(otel)) == 2
    finally:
        cascadeflow.shutdown()
        instrumentor.uninstrument()


def test_beside_the_reference_a_parse_call_keeps_cascadeflows_client_span(provider: Any,
                                                                         otel: Otel) -> None:
    """`chat.completions.parse` posts without going through `create`, which is all the
    reference instrumentation wraps: nobody else reports it, so cascadeflow's CLIENT span and
    gen_ai.client.* points stay."""
    import pydantic

    class Label(pydantic.BaseModel):
        label: str

    instrumentor = _reference(otel)
    cascadeflow.init(mode="observe", **otel.providers)
    try:
        client = openai.OpenAI(base_url=provider.url, api_key="test")
        client.chat.completions.parse(model="gpt-4o-mini", response_format=Label,
                                      messages=[{"role": "user", "content": "classify"}])
        [client_span] = _client_spans(otel)
        assert client_span.instrumentation_scope.name == "cascadeflow"
        assert client_span.name == "chat gpt-4o-mini"
        assert len(_cascadeflow_points(otel, gm.GEN_AI_CLIENT_OPERATION_DURATION)) == 1
    finally:
        cascadeflow.shutdown()
        instrumentor.uninstrument()


@pytest.mark.parametrize("mode", ["observe", "enforce"])
@pytest.mark.parametrize("model", ["perplexity/sonar", "deepinfra/meta-llama/Llama-2-70b-chat-hf"])
def test_beside_the_reference_litellm_providers_sent_through_the_openai_sdk_are_reported_once(
        provider: Any, otel: Otel, mode: str, model: str) -> None:
    """litellm sends more providers than `openai` and `azure` through the openai SDK: seen going
    through it, their call is left to the instrumentation too (one CLIENT span, not two)."""
    instrumentor = _reference(otel)
    cascadeflow.init(mode=mode, **otel.providers)
    try:
        # a key of its own: litellm caches its openai clients per key and endpoint
        litellm.completion(**chat_kwargs(provider, model=model, api_key=f"sk-sdk-{mode}-{model[:4]}-0000"))
        [client_span] = _client_spans(otel)
        assert client_span.instrumentation_scope.name != "cascadeflow"
        [ours] = [s for s in otel.spans() if s.instrumentation_scope.name == "cascadeflow"]
        assert ours.name.startswith("cascadeflow chat ")
        assert _cascadeflow_points(otel, gm.GEN_AI_CLIENT_OPERATION_DURATION) == []
    finally:
        cascadeflow.shutdown()
        instrumentor.uninstrument()


def test_never_keeps_cascadeflow_off_the_client_span_with_no_instrumentation(provider: Any,
                                                                             otel: Otel) -> None:
    """For an instrumentation cascadeflow cannot detect: its span is INTERNAL, no gen_ai.client.*."""
    from opentelemetry.trace import SpanKind

    cascadeflow.init(mode="observe", otel_client_spans="never", **otel.providers)
    with cascadeflow.run(budget=1.0):
        _chat(provider)
        litellm.completion(**chat_kwargs(provider))
    spans = otel.spans()
    assert sorted((s.name, s.kind) for s in spans) == [
        ("cascadeflow chat gpt-4o-mini", SpanKind.INTERNAL)] * 2 + [("invoke_agent run", SpanKind.INTERNAL)]
    steps = [s for s in spans if s.name.startswith("cascadeflow chat")]
    assert all(ga.GEN_AI_USAGE_INPUT_TOKENS not in s.attributes for s in steps)
    assert all(s.attributes["cascadeflow.cost_usd"] > 0 for s in steps)
    assert _cascadeflow_points(otel, gm.GEN_AI_CLIENT_OPERATION_DURATION) == []
    assert _cascadeflow_points(otel, gm.GEN_AI_CLIENT_TOKEN_USAGE) == []
    assert _cascadeflow_points(otel, "cascadeflow.cost")


def test_client_spans_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(cascadeflow.ConfigError) as error:
        cascadeflow.init(mode="observe", otel_client_spans="sometimes")
    assert "otel_client_spans" in str(error.value) and "sometimes" in str(error.value)
    assert "init()" in str(error.value)
    monkeypatch.setenv("CASCADEFLOW_OTEL_CLIENT_SPANS", "both")
    with pytest.raises(cascadeflow.ConfigError) as error:
        cascadeflow.init(mode="observe")
    assert "env CASCADEFLOW_OTEL_CLIENT_SPANS" in str(error.value) and "both" in str(error.value)
    monkeypatch.setenv("CASCADEFLOW_OTEL_CLIENT_SPANS", "never")
    assert cascadeflow.init(mode="observe").sources["otel_client_spans"] == "env"


# -- 3. captured content in the conventional form --------------------------------------------------
KEY = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.mark.parametrize(("flag", "captured"), [
    ("span_only", True), ("SPAN_AND_EVENT", True), ("true", True),
    ("event_only", False), ("no_content", False), ("false", False)])
def test_capture_variable_values(provider: Any, otel: Otel, monkeypatch: pytest.MonkeyPatch,
                                 flag: str, captured: bool) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", flag)
    cascadeflow.init(mode="observe", **otel.providers)
    litellm.completion(**chat_kwargs(provider, "hello"))
    [span] = otel.model_spans()
    assert (ga.GEN_AI_INPUT_MESSAGES in span.attributes) is captured
    assert (ga.GEN_AI_OUTPUT_MESSAGES in span.attributes) is captured


@pytest.mark.parametrize(("given", "flag", "captured"), [
    ({"capture_content": False}, "true", False), ({"capture_content": True}, "no_content", True),
    ({}, "span_only", True)])
def test_cascadeflow_s_own_capture_setting_beats_the_variable(
        provider: Any, otel: Otel, monkeypatch: pytest.MonkeyPatch, given: dict[str, bool], flag: str,
        captured: bool) -> None:
    """`init(capture_content=False)` was overridden by the OpenTelemetry variable set to true
    (`capture_content or flag`): a service that said no to prompt text on spans got it there
    from an environment it shares with other instrumented services. A setting of cascadeflow's
    own (init(), CASCADEFLOW_CAPTURE_CONTENT, the config file) decides; the variable decides
    only where none is given."""
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", flag)
    cascadeflow.init(mode="observe", **given, **otel.providers)
    litellm.completion(**chat_kwargs(provider, "hello"))
    [span] = otel.model_spans()
    assert (ga.GEN_AI_INPUT_MESSAGES in span.attributes) is captured


def test_capture_variable_is_validated(otel: Otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "spans")
    with pytest.raises(cascadeflow.ConfigError) as error:
        cascadeflow.init(mode="observe", **otel.providers)
    assert "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT" in str(error.value)
    assert "spans" in str(error.value)


def test_messages_are_role_and_parts_with_finish_reason(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", capture_content=True, **otel.providers)
    provider.reply(tool_call=("lookup", {"order": "A1"}), times=1)
    messages = [{"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": f"my key is {KEY}"}]}]
    first = litellm.completion(**{**chat_kwargs(provider), "messages": messages})
    call = first.choices[0].message.tool_calls[0]
    messages += [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                 {"role": "tool", "tool_call_id": call.id, "content": "shipped"}]
    litellm.completion(**{**chat_kwargs(provider), "messages": messages})
    asked, answered = otel.model_spans()
    inputs = json.loads(asked.attributes[ga.GEN_AI_INPUT_MESSAGES])
    assert inputs == [{"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
                      {"role": "user", "parts": [{"type": "text", "content": "my key is [SECRET]"}]}]
    [output] = json.loads(asked.attributes[ga.GEN_AI_OUTPUT_MESSAGES])
    assert output == {"role": "assistant", "finish_reason": "tool_calls", "parts": [
        {"type": "tool_call", "id": call.id, "name": "lookup", "arguments": {"order": "A1"}}]}
    later = json.loads(answered.attributes[ga.GEN_AI_INPUT_MESSAGES])
    assert later[2] == {"role": "assistant", "parts": [
        {"type": "tool_call", "id": call.id, "name": "lookup", "arguments": {"order": "A1"}}]}
    assert later[3] == {"role": "tool", "parts": [
        {"type": "tool_call_response", "id": call.id, "response": "shipped"}]}
    [final] = json.loads(answered.attributes[ga.GEN_AI_OUTPUT_MESSAGES])
    assert final["finish_reason"] == "stop" and final["parts"][0]["type"] == "text"


def test_embeddings_get_no_output_message(provider: Any, otel: Otel) -> None:
    cascadeflow.init(mode="observe", capture_content=True, **otel.providers)
    client = openai.OpenAI(base_url=provider.url, api_key="test")
    client.embeddings.create(model="text-embedding-3-small", input="hello")
    [span] = otel.model_spans()
    assert json.loads(span.attributes[ga.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello"}]}]
    assert ga.GEN_AI_OUTPUT_MESSAGES not in span.attributes


class _ForeignTracer:
    """A tracer that is not the SDK's (as a vendor's provider would be), emitting through one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def start_span(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.start_span(*args, **kwargs)


class _ForeignProvider:
    def __init__(self, inner: TracerProvider) -> None:
        self.inner = inner

    def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
        return _ForeignTracer(self.inner.get_tracer(*args, **kwargs))


def test_a_tracer_provider_that_is_not_the_sdks_nests_too(provider: Any, otel: Otel) -> None:
    app = otel.tracer_provider.get_tracer("app")
    cascadeflow.init(mode="observe", tracer_provider=_ForeignProvider(otel.tracer_provider),
                     meter_provider=otel.meter_provider)

    @cascadeflow.tool
    def lookup(order: str) -> str:
        with app.start_as_current_span("app.in_tool"):
            return order

    with cascadeflow.run():
        litellm.completion(**chat_kwargs(provider))
        lookup("A1")
    spans = {s.name: s for s in otel.spans()}
    run, chat = spans["invoke_agent run"], spans["chat gpt-4o-mini"]
    assert chat.parent.span_id == run.context.span_id
    assert chat.attributes[ga.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert spans["app.in_tool"].parent.span_id == spans["execute_tool lookup"].context.span_id


def test_a_foreign_tracer_s_span_of_a_call_observe_cannot_read_is_ended(provider: Any, otel: Otel) -> None:
    """With a tracer that is not the SDK's, the step's span is a real one, started around the
    send. A call whose arguments the adapter cannot read (here litellm is given the model twice
    and raises) is not a step; its span was never ended: lost to every exporter, and kept open
    by the application's provider."""
    cascadeflow.init(mode="observe", tracer_provider=_ForeignProvider(otel.tracer_provider),
                     meter_provider=otel.meter_provider)
    kwargs = chat_kwargs(provider)
    model = kwargs.pop("model")
    with cascadeflow.run(), pytest.raises(TypeError):
        litellm.completion(model, model=model, **kwargs)  # type: ignore[misc]
    cascadeflow.flush()
    assert [s.name for s in otel.spans() if s.name.startswith("chat")] == [f"chat {model}"]


def test_a_generator_tools_span_covers_its_work_and_stays_out_of_the_consumer(otel: Otel) -> None:
    """The `execute_tool` span of a generator tool used to end before its code ran: the error
    it raised was not on it. Spans its first item opens nest under it; the consumer's own spans
    between items do not."""
    app = otel.tracer_provider.get_tracer("app")
    cascadeflow.init(mode="enforce", **otel.providers)

    @cascadeflow.tool
    def pages(n: int) -> Iterator[int]:
        with app.start_as_current_span("app.first_page"):
            yield 0
        raise RuntimeError("backend down")

    with cascadeflow.run(), pytest.raises(RuntimeError):
        for _ in pages(2):
            with app.start_as_current_span("app.consumer"):
                pass
    cascadeflow.flush()
    spans = {s.name: s for s in otel.spans()}
    tool = spans["execute_tool pages"]
    assert spans["app.first_page"].parent.span_id == tool.context.span_id
    assert spans["app.consumer"].parent.span_id != tool.context.span_id
    assert tool.attributes[ea.ERROR_TYPE] == "RuntimeError"


def test_an_agent_span_ends_when_the_agent_returned_not_when_its_span_is_built() -> None:
    """Behind a span exporter that holds the telemetry worker up, an `invoke_agent` span still
    ends when its agent returned, as step spans end when their steps did."""
    import threading
    import time

    gate = threading.Event()

    class Held(InMemorySpanExporter):
        def export(self, spans: Any) -> Any:
            gate.wait(10)  # (set by the test; bounded so a failure cannot hang it)
            return super().export(spans)

    exporter = Held()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    cascadeflow.init(mode="observe", tracer_provider=tracer_provider)

    @cascadeflow.tool
    def lookup() -> None:
        return None

    @cascadeflow.agent(name="triage")
    def triage() -> None:
        lookup()  # its span's export holds the worker until the gate opens

    with cascadeflow.run():
        triage()
        returned = time.time_ns()
        gate.set()
    cascadeflow.flush()
    [agent] = [s for s in exporter.get_finished_spans() if s.name == "invoke_agent triage"]
    assert agent.start_time <= agent.end_time <= returned


def test_an_agent_or_run_that_raised_ends_its_span_with_the_error(otel: Otel) -> None:
    """An `invoke_agent` span whose operation failed carries `error.type` and ERROR status, as
    the GenAI conventions ask; one that ended normally stays UNSET."""
    cascadeflow.init(mode="observe", **otel.providers)

    @cascadeflow.agent(name="triage")
    def triage() -> None:
        raise LookupError("no such ticket")

    @cascadeflow.agent(name="fine")
    def fine() -> None:
        return None

    with pytest.raises(LookupError), cascadeflow.run():
        fine()
        triage()
    spans = {s.name: s for s in otel.spans()}
    for name in ("invoke_agent triage", "invoke_agent run"):
        assert spans[name].status.status_code == StatusCode.ERROR
        assert spans[name].attributes["error.type"] == "LookupError"
    assert spans["invoke_agent fine"].status.status_code == StatusCode.UNSET
    assert "error.type" not in spans["invoke_agent fine"].attributes


async def test_a_generator_agent_that_raised_ends_its_span_with_the_error(otel: Otel) -> None:
    """Generator and async generator agents closed their session without the exception that
    ended them, so their `invoke_agent` span stayed UNSET; a consumer stopping early
    (GeneratorExit) is not an error."""
    cascadeflow.init(mode="observe", **otel.providers)

    @cascadeflow.agent(name="pages")
    def pages() -> Iterator[int]:
        yield 1
        raise LookupError("no such page")

    @cascadeflow.agent(name="apages")
    async def apages() -> Any:
        yield 1
        raise KeyError("no such page")

    @cascadeflow.agent(name="early")
    def early() -> Iterator[int]:
        yield 1
        yield 2

    with pytest.raises(LookupError):
        list(pages())
    with pytest.raises(KeyError):
        [item async for item in apages()]
    first = early()
    assert next(first) == 1
    first.close()
    spans = {s.name: s for s in otel.spans()}
    for name, error in (("invoke_agent pages", "LookupError"), ("invoke_agent apages", "KeyError")):
        assert spans[name].status.status_code == StatusCode.ERROR
        assert spans[name].attributes["error.type"] == error
    assert spans["invoke_agent early"].status.status_code == StatusCode.UNSET
