"""Reversible redaction end to end, through litellm and the openai SDK against the built-in
provider: the provider sees numbered placeholders, the application gets the originals back, and
the trace, the saved run and the spans hold neither the originals nor anything they could be
read from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

EMAIL, CARD = "dana.roe@example.com", "4242 4242 4242 4242"
POLICY = """
version = "r1"

[profiles.support]
[[profiles.support.input]]
name = "pii_reversible"
detector = "pii"
types = ["email", "credit_card"]
action = "redact"
redaction = "{redaction}"

[[profiles.support.output]]
name = "no_ssn"
detector = "pii"
types = ["ssn"]
action = "redact"
"""
ASK = f"Please confirm the refund to {EMAIL} for card {CARD} and write back to {EMAIL}"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


def start(tmp_path: Path, spans: InMemorySpanExporter, redaction: str = "reversible") -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(redaction=redaction))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    cascadeflow.init(mode="enforce", guardrails_file=path, capture_content=True,
                     tracer_provider=tracer_provider)


def sent(provider: Any) -> str:
    return json.dumps([json.loads(r.body) for r in provider.requests])


def recorded(session: Any, spans: InMemorySpanExporter, tmp_path: Path) -> str:
    """Everything cascadeflow wrote down about the run: trace, saved file, span attributes."""
    cascadeflow.flush()
    saved = session.save(tmp_path / "run.json").read_text()
    attributes = [dict(s.attributes or {}) for s in spans.get_finished_spans()]
    return json.dumps(session.trace()) + saved + json.dumps(attributes, default=str)


def assert_private(text: str) -> None:
    assert EMAIL not in text and CARD not in text and "4242424242424242" not in text


def call(client: str, provider: Any, content: str, stream: bool, **extra: Any) -> str:
    """One chat call through `client`; the answer's text as the application receives it."""
    messages = [{"role": "user", "content": content}]
    if client == "litellm":
        response = litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url,
                                      api_key="sk-test-0000000000000000", stream=stream, **extra)
    else:
        sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
        response = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[call-overload]
                                               stream=stream, **extra)
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in response if chunk.choices)
    return str(response.choices[0].message.content)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_provider_sees_placeholders_application_gets_originals(
        client: str, stream: bool, provider: Any, spans: InMemorySpanExporter, tmp_path: Path) -> None:
    start(tmp_path, spans)
    with cascadeflow.run(guardrails="support") as session:
        answer = call(client, provider, ASK, stream)
    body = sent(provider)
    assert "[EMAIL_1]" in body and "[CREDIT_CARD_1]" in body
    assert_private(body)
    # the provider echoes the prompt's tail, placeholders and all; the application reads the originals
    assert f"to {EMAIL}" in answer and "[EMAIL_1]" not in answer
    trail = recorded(session, spans, tmp_path)
    assert_private(trail)
    assert "[EMAIL_1]" in trail  # captured content is what crossed the wire
    findings = session.findings()
    assert {f["reason"] for f in findings} == {"pii_email", "pii_credit_card"}


def test_placeholders_are_stable_within_a_run_and_forgotten_after(provider: Any, spans: InMemorySpanExporter,
                                                                  tmp_path: Path) -> None:
    start(tmp_path, spans)
    with cascadeflow.run(guardrails="support") as session:
        call("litellm", provider, f"First {EMAIL}", False)
        with cascadeflow.run() as inner:  # a run inside shares its outer run's numbers
            answer = call("litellm", provider, f"Other other@example.com then {EMAIL}", False)
    bodies = [json.loads(r.body)["messages"][0]["content"] for r in provider.requests]
    assert bodies == ["First [EMAIL_1]", "Other [EMAIL_2] then [EMAIL_1]"]
    assert answer.endswith(f'"Other other@example.com then {EMAIL}".')
    assert_private(recorded(session, spans, tmp_path) + json.dumps(inner.trace()))
    provider.reset()
    with cascadeflow.run(guardrails="support"):  # a new run numbers afresh
        call("litellm", provider, "Now other@example.com", False)
    assert json.loads(provider.requests[0].body)["messages"][0]["content"] == "Now [EMAIL_1]"


@pytest.mark.parametrize("stream", [False, True])
def test_a_placeholder_the_application_wrote_keeps_its_meaning(
        stream: bool, provider: Any, spans: InMemorySpanExporter, tmp_path: Path) -> None:
    start(tmp_path, spans)
    ask = f"Our template greets [EMAIL_1] by name; send it to {EMAIL}"
    with cascadeflow.run(guardrails="support"):
        answer = call("openai", provider, ask, stream)
    assert json.loads(provider.requests[0].body)["messages"][0]["content"] == \
        "Our template greets [EMAIL_1] by name; send it to [EMAIL_2]"
    assert answer.endswith(f'"Our template greets [EMAIL_1] by name; send it to {EMAIL}".')


def test_numbered_placeholders_stay_in_the_answer(provider: Any, spans: InMemorySpanExporter,
                                                  tmp_path: Path) -> None:
    start(tmp_path, spans, redaction="numbered")
    with cascadeflow.run(guardrails="support"):
        answer = call("litellm", provider, f"Mail {EMAIL}", False)
    assert "[EMAIL_1]" in sent(provider) and "[EMAIL_1]" in answer and EMAIL not in answer


def test_tool_call_arguments_get_the_originals(provider: Any, spans: InMemorySpanExporter,
                                               tmp_path: Path) -> None:
    start(tmp_path, spans)
    tool = {"type": "function", "function": {"name": "send_mail", "parameters": {
        "type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}}}
    with cascadeflow.run(guardrails="support") as session:
        response = litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url,
                                      api_key="sk-test-0000000000000000", tools=[tool],
                                      messages=[{"role": "user", "content": f"Mail \"{EMAIL}\" now"}])
    [tool_call] = response.choices[0].message.tool_calls
    assert EMAIL in json.loads(tool_call.function.arguments)["note"]
    assert "[EMAIL_1]" in sent(provider)
    assert_private(recorded(session, spans, tmp_path))


def test_outside_a_run_each_call_has_its_own_map(provider: Any, spans: InMemorySpanExporter,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CASCADEFLOW_GUARDRAILS", "support")
    start(tmp_path, spans)
    first = call("litellm", provider, f"Mail {EMAIL}", False)
    second = call("litellm", provider, f"Mail other@example.com and {EMAIL}", False)
    bodies = [json.loads(r.body)["messages"][0]["content"] for r in provider.requests]
    assert bodies == ["Mail [EMAIL_1]", "Mail [EMAIL_1] and [EMAIL_2]"]
    assert EMAIL in first and second.endswith(f'"Mail other@example.com and {EMAIL}".')


async def test_async_clients_get_the_originals_too(provider: Any, spans: InMemorySpanExporter,
                                                   tmp_path: Path) -> None:
    start(tmp_path, spans)
    messages = [{"role": "user", "content": ASK}]
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        first = await litellm.acompletion(model="openai/gpt-4o-mini", messages=messages,
                                          api_base=provider.url, api_key="sk-test-0000000000000000")
        second = await sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        answers = [first.choices[0].message.content, second.choices[0].message.content]
        stream = await sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[arg-type]
                                                   stream=True)
        answers.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    assert all(f"to {EMAIL}" in str(a) and "[EMAIL_1]" not in str(a) for a in answers)
    assert_private(sent(provider) + recorded(session, spans, tmp_path))


def test_responses_and_text_completions_get_the_originals(provider: Any, spans: InMemorySpanExporter,
                                                          tmp_path: Path) -> None:
    start(tmp_path, spans)
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        response = sdk.responses.create(model="gpt-4o-mini", input=ASK)
        completion = sdk.completions.create(model="gpt-4o-mini", prompt=ASK)
    assert f"to {EMAIL}" in response.output_text and f"to {EMAIL}" in completion.choices[0].text
    assert_private(sent(provider) + recorded(session, spans, tmp_path))


# -- streams: every event that carries the answer, deltas and the events that repeat it whole ----
SSN = "123-45-6789"
# the provider streams 12 characters a chunk: "[EMAIL_1]" arrives split ("l goes to [E", "MAIL_1] as a")
REPLY = f"Your SSN {SSN} is on file; mail goes to [EMAIL_1] as asked."
HANDED = f"Your SSN [SSN] is on file; mail goes to {EMAIL} as asked."
MAIL_TOOL = {"type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}


def responses_texts(events: list[Any]) -> dict[str, str]:
    """The answer as each kind of Responses event hands it to the application."""
    texts = {"deltas": "".join(e.delta for e in events if e.type == "response.output_text.delta")}
    for e in events:
        if e.type == "response.output_text.done":
            texts["done"] = e.text
        elif e.type == "response.content_part.done":
            texts["part"] = e.part.text
        elif e.type == "response.output_item.done":
            texts["item"] = e.item.content[0].text
        elif e.type == "response.completed":
            texts["completed"] = e.response.output_text
    return texts


def test_streamed_responses_hand_over_what_the_rules_let_through_in_every_event(
        provider: Any, spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """The output rule's redaction held the answer's tail back until `output_text.done`, an
    event with no delta: the tail reached no delta, and the events that repeat the text whole
    carried the provider's, the SSN unredacted and the placeholder unrestored."""
    start(tmp_path, spans)
    provider.reply(REPLY, when="Mail")
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        events = list(sdk.responses.create(model="gpt-4o-mini", input=f"Mail {EMAIL}", stream=True))
        with sdk.responses.stream(model="gpt-4o-mini", input=f"Mail {EMAIL}") as helper:
            for _ in helper:
                pass
            final = helper.get_final_response().output_text
        events_litellm = list(litellm.responses(model="openai/gpt-4o-mini", input=f"Mail {EMAIL}",
                                                stream=True, api_base=provider.url,
                                                api_key="sk-test-0000000000000000"))
    assert responses_texts(events) == dict.fromkeys(("deltas", "done", "part", "item", "completed"), HANDED)
    assert final == HANDED
    assert "".join(e.delta for e in events_litellm
                   if getattr(e, "type", "") == "response.output_text.delta") == HANDED
    trail = recorded(session, spans, tmp_path)
    assert_private(trail)
    assert SSN not in trail and "[EMAIL_1]" in trail


async def test_async_streamed_responses_too(provider: Any, spans: InMemorySpanExporter,
                                            tmp_path: Path) -> None:
    start(tmp_path, spans)
    provider.reply(REPLY, when="Mail")
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="support"):
        stream = await sdk.responses.create(model="gpt-4o-mini", input=f"Mail {EMAIL}", stream=True)
        events = [e async for e in stream]
    assert responses_texts(events) == dict.fromkeys(("deltas", "done", "part", "item", "completed"), HANDED)


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_streamed_tool_call_arguments_get_the_originals(client: str, provider: Any,
                                                        spans: InMemorySpanExporter, tmp_path: Path) -> None:
    start(tmp_path, spans)
    tool = {"type": "function", "function": {"name": "send_mail", "parameters": MAIL_TOOL}}
    messages = [{"role": "user", "content": f"Please \"{EMAIL}\" now"}]
    with cascadeflow.run(guardrails="support") as session:
        if client == "litellm":
            chunks = list(litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=[tool],
                                             stream=True, api_base=provider.url,
                                             api_key="sk-test-0000000000000000"))
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
            chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[call-overload]
                                                      tools=[tool], stream=True))
    arguments = "".join(call.function.arguments or "" for c in chunks if c.choices
                        for call in c.choices[0].delta.tool_calls or [])
    assert json.loads(arguments) == {"note": f"Please \"{EMAIL}\" now"}
    assert "[EMAIL_1]" in sent(provider)
    assert_private(recorded(session, spans, tmp_path))


def test_streamed_responses_function_call_arguments_get_the_originals(
        provider: Any, spans: InMemorySpanExporter, tmp_path: Path) -> None:
    start(tmp_path, spans)
    tool = {"type": "function", "name": "send_mail", "parameters": MAIL_TOOL}
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        events = list(sdk.responses.create(model="gpt-4o-mini", input=f"Please \"{EMAIL}\" now",  # type: ignore[call-overload]
                                           tools=[tool], stream=True))
    want = {"note": f"Please \"{EMAIL}\" now"}
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = [e.arguments for e in events if e.type == "response.function_call_arguments.done"]
    completed = [o.arguments for e in events if e.type == "response.completed" for o in e.response.output]
    assert [json.loads(a) for a in (deltas, *done, *completed)] == [want] * 3
    assert_private(recorded(session, spans, tmp_path))


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_reasoning_answer_sent_back_carries_no_original(client: str, provider: Any,
                                                         spans: InMemorySpanExporter, tmp_path: Path) -> None:
    """The originals go back into a reasoning model's `reasoning_content` too; an agent that
    appends the message to its history sent them to the provider, as the input rules did not
    read that field."""
    start(tmp_path, spans)
    provider.inject(times=1, body=json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
        "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "Done for [EMAIL_1].",
            "reasoning_content": "The customer [EMAIL_1] wants a refund."}}]}))
    messages: list[Any] = [{"role": "user", "content": f"Refund {EMAIL}"}]
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)

    def ask() -> Any:
        if client == "litellm":
            return litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url,
                                      api_key="sk-test-0000000000000000").choices[0].message
        return sdk.chat.completions.create(model="gpt-4o-mini", messages=messages).choices[0].message

    with cascadeflow.run(guardrails="support"):
        message = ask()
        assert message.reasoning_content == f"The customer {EMAIL} wants a refund."  # the application's
        messages += [message, {"role": "user", "content": "Thanks"}]
        ask()
    assert_private(sent(provider))
    assert provider.requests[1].json["messages"][1]["reasoning_content"] == \
        "The customer [EMAIL_1] wants a refund."
