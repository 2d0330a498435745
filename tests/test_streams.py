"""A stream is accounted however it ends: exhausted, closed, broken or abandoned half-read."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow import tokens
from cascadeflow.testing import Fault

from tests.conftest import chat_kwargs

KEY = "sk-test-not-a-real-key-0000"


def test_half_read_stream_shows_up_in_the_trace(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        stream = litellm.completion(**chat_kwargs(provider, "a long answer"), stream=True)
        next(iter(stream))
        next(iter(stream))
        assert session.trace()[0]["status"] == "pending"  # visible while in flight
        del stream
        gc.collect()
    [entry] = session.trace()
    assert entry["status"] == "abandoned"
    assert entry["error"] == "StreamIncomplete"
    assert entry["tokens_in"] > 0 and entry["usage_estimated"] is True
    assert session.summary()["steps"] == 1


def test_closed_stream(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run() as session:
        stream = sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "user", "content": "x"}])
        next(iter(stream))
        stream.close()
    assert session.trace()[0]["status"] == "closed"


async def test_async_stream_abandoned(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        stream = await litellm.acompletion(**chat_kwargs(provider), stream=True)
        await stream.__anext__()
        del stream
        gc.collect()
    assert session.trace()[0]["status"] == "abandoned"


def test_cut_stream_raises_and_is_recorded(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(cut_stream_after=3)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    received: list[Any] = []
    with cascadeflow.run() as session:
        stream = sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "user", "content": "x"}])
        with pytest.raises(Exception) as info:
            for chunk in stream:
                received.append(chunk)
    [entry] = session.trace()
    assert entry["status"] == "error"
    assert entry["error"] == type(info.value).__name__
    assert len(received) == 3
    assert entry["tokens_in"] > 0


def test_break_after_last_chunk_is_a_normal_end(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        stream = litellm.completion(**chat_kwargs(provider), stream=True)
        for chunk in stream:
            if chunk.choices[0].finish_reason:
                break
        stream.close()
    assert session.trace()[0]["status"] == "ok"


def test_enforce_cuts_a_stream_that_passes_its_reservation(provider: Any) -> None:
    """A provider that ignores max_tokens cannot make a stream overrun the budget."""
    cascadeflow.init(mode="enforce")
    provider.reply("lorem ipsum dolor " * 200, when="long answer")
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    received = ""
    with cascadeflow.run(budget=1.0) as session:
        stream = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a long answer please"}],
            max_tokens=30, stream=True, extra_headers={"x-cascadeflow-fault": "ignore_max_tokens"})
        with pytest.raises(cascadeflow.BudgetExceeded) as caught:
            for chunk in stream:
                received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    # the whole text received, including the chunk that passed the cap (not yielded)
    assert received and caught.value.text.startswith(received) and caught.value.text != received
    assert "cut the stream" in str(caught.value)
    assert tokens.count(received, "gpt-4o-mini") <= 30 < tokens.count(caught.value.text, "gpt-4o-mini")
    entry, stop = session.trace()
    assert entry["status"] == "cut"
    assert entry["cost"] > 0
    # the stop that cut it is a decision of that step, as in observe (where it is a would-be one)
    assert (stop["step"], stop["action"], stop["reason"], stop["applied"], stop["status"]) == \
        (entry["step"], "stop", "budget_exceeded", True, "cut")
    assert "cut the stream" in stop["message"]
    assert session.summary()["stopped"] is True  # the caller got BudgetExceeded: the run was stopped


@pytest.mark.parametrize("client", ["openai", "litellm"])
def test_observe_records_the_cut_enforce_would_make(provider: Any, client: str) -> None:
    """A stream enforce cuts (a provider that ignores max_tokens) is a would-be stop in observe,
    at the same step, while the caller still gets the whole stream."""
    provider.reply("lorem ipsum dolor " * 200, when="long answer")
    messages = [{"role": "user", "content": "a long answer please"}]
    fault = {"x-cascadeflow-fault": "ignore_max_tokens"}

    def sequence() -> tuple[str, list[dict[str, Any]]]:
        received = ""
        with cascadeflow.run(budget=1.0) as session:
            litellm.completion(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}],
                               api_base=provider.url, api_key="sk-test-not-a-real-key-0000")
            if client == "openai":
                sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
                stream: Any = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,
                                                          max_tokens=30, stream=True, extra_headers=fault)
            else:
                stream = litellm.completion(model="openai/gpt-4o-mini", messages=messages, max_tokens=30,
                                            stream=True, api_base=provider.url, extra_headers=fault,
                                            api_key="sk-test-not-a-real-key-0000")
            with contextlib.suppress(cascadeflow.BudgetExceeded):
                for chunk in stream:
                    received += chunk.choices[0].delta.content or "" if chunk.choices else ""
        return received, session.trace()

    cascadeflow.init(mode="enforce")
    cut, enforced = sequence()
    cascadeflow.init(mode="observe")
    whole, observed = sequence()
    assert [e["status"] for e in enforced] == ["ok", "cut", "cut"]
    assert whole == "lorem ipsum dolor " * 200 and len(cut) < len(whole)
    decisions = [[(e["step"], e["action"], e["reason"]) for e in trace] for trace in (enforced, observed)]
    assert decisions[0] == decisions[1]
    would = [e for e in observed if e["action"] == "stop"]
    assert [(e["step"], e["reason"], e["applied"]) for e in would] == [(2, "budget_exceeded", False)]
    assert "cut" in would[0]["message"] and "30 tokens" in would[0]["message"]
    assert [e["status"] for e in observed if e["action"] == "allow"] == ["ok", "ok"]


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_raw_stream_body_read_as_bytes_is_never_cut(provider: Any, mode: str) -> None:
    """Enforce holds stream objects to their reservation, not the bytes of a raw body; observe
    records no cut there either."""
    cascadeflow.init(mode=mode)
    provider.reply("lorem ipsum dolor " * 200, when="long answer")
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    with cascadeflow.run(budget=1.0) as session, \
            sdk.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "a long answer please"}],
                max_tokens=30, stream=True, extra_headers={"x-cascadeflow-fault": "ignore_max_tokens"}
            ) as response:
        lines = list(response.iter_lines())
    assert any("[DONE]" in line for line in lines)
    assert [(e["action"], e["status"]) for e in session.trace()] == [("allow", "ok")]


async def test_enforce_cuts_an_async_stream(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    provider.reply("lorem ipsum dolor " * 200, when="long answer")
    client = openai.AsyncOpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    async with cascadeflow.run(budget=1.0) as session:
        stream = await client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "a long answer please"}],
            max_tokens=30, stream=True, extra_headers={"x-cascadeflow-fault": "ignore_max_tokens"})
        with pytest.raises(cascadeflow.BudgetExceeded) as caught:
            async for _ in stream:
                pass
    assert caught.value.text
    assert session.trace()[0]["status"] == "cut"


@pytest.mark.parametrize("mode", ["observe", "enforce"])
@pytest.mark.parametrize("client", ["litellm", "litellm-async", "openai", "responses"])
async def test_stream_that_ends_before_the_provider_finished_is_truncated(
        provider: Any, client: str, mode: str) -> None:
    """The connection closed cleanly after two events, with no finish reason, no terminal event and
    no [DONE]: litellm makes up finish_reason="stop", but the answer is incomplete."""
    cascadeflow.init(mode=mode)
    messages = [{"role": "user", "content": "a long answer"}]
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    for fault, status in (("end_stream_after=2", "truncated"), ("end_stream_after=500", "ok")):
        provider.inject(Fault.parse(f"{fault},times=1"))
        async with cascadeflow.run() as session:
            if client == "litellm":
                for _ in litellm.completion(**chat_kwargs(provider, "a long answer"), stream=True):
                    pass
            elif client == "litellm-async":
                chunks = await litellm.acompletion(**chat_kwargs(provider, "a long answer"), stream=True)
                async for _ in chunks:
                    pass
            elif client == "openai":
                async for _ in await sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[arg-type]
                                                                 stream=True):
                    pass
            else:
                events = await sdk.responses.create(model="gpt-4o-mini", input="a long answer", stream=True)
                async for _ in events:
                    pass
        [entry] = session.trace()
        assert entry["status"] == status, (fault, entry)
        if status == "truncated":
            assert entry["error"] == "StreamTruncated" and entry["finish_reason"] is None
        else:
            assert entry["error"] is None and entry["finish_reason"] is not None


def test_a_streamed_litellm_text_completion_is_one_step(provider: Any) -> None:
    """litellm sends a streamed text completion through the openai SDK only once the stream is
    read: that call is part of the step, not a second one billed again."""
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0) as session:
        for _ in litellm.text_completion(model="openai/gpt-3.5-turbo-instruct", prompt="a long answer",
                                         api_base=provider.url, api_key=KEY, stream=True):
            pass
    assert [(e["operation"], e["status"]) for e in session.trace()] == [("text_completion", "ok")]
    assert session.summary()["steps"] == 1


def test_stream_helpers_left_early_settle_when_their_block_ends(provider: Any) -> None:
    """The SDK's `chat.completions.stream` and `responses.stream` close a stream left early
    through its HTTP response, not the stream: the step still settles there (`closed`), and
    its reservation is released while the helper object is still referenced."""
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "a long answer"}]
    with cascadeflow.run(budget=1.0) as session:
        with sdk.chat.completions.stream(model="gpt-4o-mini", messages=messages) as chat:
            for _ in chat:
                break
        with sdk.responses.stream(model="gpt-4o-mini", input="a long answer") as responses:
            for _ in responses:
                break
        cascadeflow.flush()
        assert session.reserved == 0.0
    assert [e["status"] for e in session.trace()] == ["closed", "closed"]
    assert all(e["tokens_in"] > 0 for e in session.trace())
    assert chat is not None and responses is not None  # held until here: no finaliser settled them


async def test_async_stream_helpers_left_early_settle_when_their_block_ends(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "a long answer"}]
    async with cascadeflow.run(budget=1.0) as session:
        async with sdk.chat.completions.stream(model="gpt-4o-mini", messages=messages) as chat:
            async for _ in chat:
                break
        async with sdk.responses.stream(model="gpt-4o-mini", input="a long answer") as responses:
            async for _ in responses:
                break
        async with sdk.chat.completions.stream(model="gpt-4o-mini", messages=messages) as whole:
            await whole.get_final_completion()
        cascadeflow.flush()
        assert session.reserved == 0.0
    assert [e["status"] for e in session.trace()] == ["closed", "closed", "ok"]
    assert chat is not None and responses is not None and whole is not None


@pytest.mark.parametrize("mode", ["observe", "enforce"])
async def test_streaming_response_blocks_left_early_settle_their_parsed_stream(
        provider: Any, mode: str) -> None:
    """`with_streaming_response` with `stream=True`: the stream `parse()` gave, left half-read,
    ends with the block, which closes the response (never the stream)."""
    cascadeflow.init(mode=mode)
    sync = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "a long answer"}]
    async with cascadeflow.run(budget=1.0) as session:
        async with sdk.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=messages, stream=True) as response:
            chat = await response.parse()
            async for _ in chat:
                break
        with sync.responses.with_streaming_response.create(
                model="gpt-4o-mini", input="a long answer", stream=True) as response:
            events = response.parse()
            for _ in events:
                break
        cascadeflow.flush()
        assert session.reserved == 0.0
    assert [e["status"] for e in session.trace()] == ["closed", "closed"]
    assert all(e["tokens_in"] > 0 for e in session.trace())
    assert chat is not None and events is not None  # held until here: no finaliser settled them


def test_a_stream_left_at_its_last_event_settles_there(provider: Any) -> None:
    """A caller that stops reading at the last event billed (Responses' `response.completed`, chat's
    include_usage chunk, or its finish reason when none follows) and never closes the stream: the
    step settles at that event,
    exactly, and its reservation no longer stops the next call (it was held until the stream was
    dropped: under this budget the next call waited, then was stopped with 0 USD left)."""
    cascadeflow.init(mode="enforce", budget_wait_s=0.2)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(budget=0.0003) as session:  # no max_tokens: each call reserves all that is free
        events = sdk.responses.create(model="gpt-4o-mini", input="hello", stream=True)
        for event in events:
            if event.type == "response.completed":
                break
        chunks = sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "user", "content": "hi"}],
                                             stream_options={"include_usage": True})
        for chunk in chunks:
            if chunk.usage is not None:
                break
        plain = sdk.chat.completions.create(model="gpt-4o-mini", stream=True,  # no usage chunk follows
                                            messages=[{"role": "user", "content": "hi"}])
        for chunk in plain:
            if chunk.choices[0].finish_reason:
                break
        sdk.responses.create(model="gpt-4o-mini", input="hello again")
    trace = session.trace()
    assert [e["status"] for e in trace] == ["ok", "ok", "ok", "ok"]
    assert [e["usage_estimated"] for e in trace] == [False, False, True, False]
    assert all(e["tokens_out"] > 0 for e in trace)
    assert events is not None and chunks is not None and plain is not None  # no finaliser settled them


def test_a_usage_chunk_asked_for_in_extra_body_is_waited_for(provider: Any) -> None:
    """`stream_options` sent through `extra_body` reaches the provider as if named: a usage
    chunk follows the finish reason. The step settled at the finish reason, before it, and was
    charged an estimate (blind to reasoning tokens) instead of what the provider reported."""
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(budget=1.0) as session:
        usage = [c.usage for c in sdk.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
            extra_body={"stream_options": {"include_usage": True}}) if c.usage is not None]
    [entry] = session.trace()
    assert entry["status"] == "ok" and entry["usage_estimated"] is False
    assert (entry["tokens_in"], entry["tokens_out"]) == (usage[0].prompt_tokens, usage[0].completion_tokens)


def test_a_streams_estimate_counts_the_request_as_sent(provider: Any) -> None:
    """A stream with no usage chunk is charged an estimate of its input: that of the request
    enforce sent, without the tools it denied, not of the one the caller asked for."""
    def tool(name: str) -> dict[str, Any]:
        return {"type": "function", "function": {"name": name, "description": "x " * 200,
                                                 "parameters": {"type": "object", "properties": {}}}}

    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "hi"}]
    with cascadeflow.run(budget=1.0, tools_deny=["refund"]) as session:
        for tools in ([tool("lookup"), tool("refund")], [tool("lookup")]):
            list(sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, tools=tools,
                                             stream=True))
    denied, plain = session.trace()
    assert denied["action"] == "deny_tool" and denied["usage_estimated"] is True
    assert [len(b["tools"]) for b in provider.bodies()] == [1, 1]
    assert denied["tokens_in"] == plain["tokens_in"]


def test_closing_or_cutting_a_litellm_stream_closes_its_connection(provider: Any) -> None:
    """litellm's sync streams have no `close()` of their own: closing the stream (or a budget
    cut, which must stop a provider that ignores max_tokens) left the provider's HTTP response
    open, still being written, until the stream was garbage-collected."""
    cascadeflow.init(mode="enforce")
    provider.reply("lorem ipsum dolor " * 200, when="long answer")
    with cascadeflow.run(budget=1.0) as session:
        stream = litellm.completion(**chat_kwargs(provider), stream=True)
        next(iter(stream))
        sdk_stream = stream.completion_stream  # the openai SDK's stream litellm reads
        stream.close()
        assert sdk_stream.response.is_closed
        cut = litellm.completion(**chat_kwargs(provider, "a long answer please"), stream=True,
                                 max_tokens=30, extra_headers={"x-cascadeflow-fault": "ignore_max_tokens"})
        sdk_stream = cut.completion_stream
        with pytest.raises(cascadeflow.BudgetExceeded):
            for _ in cut:
                pass
        assert sdk_stream.response.is_closed
        events = litellm.responses(model="openai/gpt-4o-mini", input="hi", stream=True,
                                   api_base=provider.url, api_key=KEY)
        next(iter(events))
        events.close()
        assert events.response.is_closed
    assert [e["status"] for e in session.trace() if e["action"] == "allow"] == ["closed", "cut", "closed"]


def test_a_litellm_stream_left_at_its_usage_chunk_settles_there(provider: Any) -> None:
    """litellm's usage chunk (`include_usage`) carries one empty choice, where the openai SDK's
    has none: a caller that stopped reading at it and kept the stream left the step pending,
    its reservation held, until the stream was dropped."""
    cascadeflow.init(mode="enforce")

    async def read() -> Any:
        stream = await litellm.acompletion(**chat_kwargs(provider), stream=True,
                                           stream_options={"include_usage": True})
        async for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                return stream, chunk.usage
        raise AssertionError("no usage chunk")

    with cascadeflow.run(budget=1.0) as session:
        stream = litellm.completion(**chat_kwargs(provider), stream=True,
                                    stream_options={"include_usage": True})
        for chunk in stream:
            if getattr(chunk, "usage", None) is not None:
                usage = chunk.usage
                break
        entry = session.trace()[0]
        assert entry["status"] == "ok" and entry["usage_estimated"] is False
        assert (entry["tokens_in"], entry["tokens_out"]) == (usage.prompt_tokens, usage.completion_tokens)
        held, usage = asyncio.run(read())
        entry = session.trace()[1]
        assert entry["status"] == "ok" and entry["usage_estimated"] is False
        assert (entry["tokens_in"], entry["tokens_out"]) == (usage.prompt_tokens, usage.completion_tokens)
    assert stream is not None and held is not None  # kept: no finaliser settled them


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_responses_stream_that_failed_is_an_error_charged_what_it_billed(provider: Any, mode: str) -> None:
    """A Responses API stream the provider ended with `response.failed` (its usage in it) was
    recorded as `truncated` (`StreamTruncated`) and charged a tiktoken estimate: the provider's
    failure and its bill were both lost."""
    failed = {"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o-mini",
              "status": "failed", "output": [], "error": {"code": "server_error", "message": "boom"},
              "usage": {"input_tokens": 10, "output_tokens": 50, "total_tokens": 60,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens_details": {"reasoning_tokens": 0}}}
    events = [{"type": "response.created", "sequence_number": 0,
               "response": {**failed, "status": "in_progress", "usage": None, "error": None}},
              {"type": "response.output_text.delta", "sequence_number": 1, "item_id": "m",
               "output_index": 0, "content_index": 0, "delta": "hello", "logprobs": []},
              {"type": "response.failed", "sequence_number": 2, "response": failed}]
    provider.inject(body="".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events))
    cascadeflow.init(mode=mode)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(budget=1.0) as session:
        got = [e.type for e in sdk.responses.create(model="gpt-4o-mini", input="hi", stream=True)]
    assert got == ["response.created", "response.output_text.delta", "response.failed"]  # as sent
    [entry] = session.trace()
    assert (entry["status"], entry["error"]) == ("error", "ResponseFailed")
    assert (entry["tokens_in"], entry["tokens_out"], entry["usage_estimated"]) == (10, 50, False)
