"""Every litellm entry point is one traced step, over real HTTP to the built-in provider."""

from __future__ import annotations

from typing import Any

import cascadeflow
import litellm
import pytest

from tests.conftest import chat_kwargs

KEY = "sk-test-not-a-real-key-0000"


def only_step(session: Any, operation: str) -> dict[str, Any]:
    trace = session.trace()
    assert len(trace) == 1, trace
    entry = trace[0]
    assert entry["operation"] == operation
    assert entry["status"] == "ok"
    assert entry["step"] == 1
    assert entry["action"] == "allow"
    return entry


def test_completion(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        response = litellm.completion(**chat_kwargs(provider, "classify this"))
    entry = only_step(session, "chat")
    assert entry["model"] == "openai/gpt-4o-mini"
    assert entry["provider"] == "openai"
    assert entry["tokens_in"] == response.usage.prompt_tokens > 0
    assert entry["tokens_out"] == response.usage.completion_tokens > 0
    assert entry["cost"] == pytest.approx(
        entry["tokens_in"] * 1.5e-7 + entry["tokens_out"] * 6e-7)
    assert entry["latency_ms"] > 0
    assert entry["usage_estimated"] is False
    assert len(provider.requests) == 1


def test_positional_arguments(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.completion("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}],
                           api_base=provider.url, api_key=KEY)
    assert only_step(session, "chat")["model"] == "openai/gpt-4o-mini"


async def test_acompletion(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        await litellm.acompletion(**chat_kwargs(provider))
    assert only_step(session, "chat")["tokens_out"] > 0


def test_stream(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        stream = litellm.completion(**chat_kwargs(provider, "stream me"), stream=True)
        assert isinstance(stream, litellm.CustomStreamWrapper)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    entry = only_step(session, "chat")
    assert text.startswith("Reply from gpt-4o-mini")
    assert entry["usage_estimated"] is True  # no stream_options were injected
    # the tiktoken estimate agrees with what the provider reports for the same call unstreamed
    reported = litellm.completion(**chat_kwargs(provider, "stream me")).usage
    assert (entry["tokens_in"], entry["tokens_out"]) == (reported.prompt_tokens, reported.completion_tokens)


async def test_async_stream_with_reported_usage(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        stream = await litellm.acompletion(**chat_kwargs(provider), stream=True,
                                           stream_options={"include_usage": True})
        async for _ in stream:
            pass
    entry = only_step(session, "chat")
    assert entry["usage_estimated"] is False
    assert entry["tokens_in"] > 0


def test_text_completion(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.text_completion(model="openai/gpt-3.5-turbo-instruct", prompt="say something",
                                api_base=provider.url, api_key=KEY)
    entry = only_step(session, "text_completion")
    assert entry["cost"] is not None and entry["cost"] > 0


async def test_atext_completion(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        await litellm.atext_completion(model="openai/gpt-3.5-turbo-instruct", prompt="say",
                                       api_base=provider.url, api_key=KEY)
    only_step(session, "text_completion")


def test_embedding(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.embedding(model="openai/text-embedding-3-small", input=["one", "two"],
                          api_base=provider.url, api_key=KEY)
    entry = only_step(session, "embeddings")
    assert entry["tokens_in"] == 2 and entry["tokens_out"] == 0


async def test_aembedding(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        await litellm.aembedding(model="openai/text-embedding-3-small", input="one",
                                 api_base=provider.url, api_key=KEY)
    only_step(session, "embeddings")


def test_router(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    router = litellm.Router(model_list=[{
        "model_name": "triage-model",
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": provider.url, "api_key": KEY},
    }])
    with cascadeflow.run() as session:
        router.completion(model="triage-model", messages=[{"role": "user", "content": "hi"}])
    entry = only_step(session, "chat")
    assert entry["model"] == "openai/gpt-4o-mini"


async def test_router_async(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    router = litellm.Router(model_list=[{
        "model_name": "triage-model",
        "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": provider.url, "api_key": KEY},
    }])
    async with cascadeflow.run() as session:
        await router.acompletion(model="triage-model", messages=[{"role": "user", "content": "hi"}])
    only_step(session, "chat")


def test_tool_calls_requested_are_counted(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]
    with cascadeflow.run() as session:
        response = litellm.completion(**chat_kwargs(provider), tools=tools)
    assert response.choices[0].message.tool_calls[0].function.name == "lookup"
    assert only_step(session, "chat")["tool_calls"] == 1
    assert session.summary()["tool_calls"] == 1


def test_provider_error_is_recorded_and_raised(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(status=401)
    with cascadeflow.run() as session, pytest.raises(litellm.AuthenticationError):
        litellm.completion(**chat_kwargs(provider), num_retries=0)
    entry = session.trace()[0]
    assert entry["status"] == "error"
    assert entry["error"] == "AuthenticationError"
    assert session.summary()["errors"] == 1


def test_mode_off_records_nothing(provider: Any) -> None:
    cascadeflow.init(mode="off")
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider))
    assert session.trace() == []
    assert session.summary()["steps"] == 0
    assert len(provider.requests) == 1


def test_batch_completion_counts_in_the_callers_session(provider: Any) -> None:
    # litellm sends each message list from a thread pool of its own: its calls must still count
    # against the run's budget and steps, not escape into the ambient session
    cascadeflow.init(mode="enforce")
    batches = [[{"role": "user", "content": text}] for text in ("one", "two", "three")]
    with cascadeflow.run(budget=1.0) as session:
        replies = litellm.batch_completion(model="openai/gpt-4o-mini", messages=batches,
                                           api_base=provider.url, api_key=KEY)
    assert [type(r).__name__ for r in replies] == ["ModelResponse"] * 3
    assert [e["status"] for e in session.trace()] == ["ok"] * 3
    provider.reset()
    with cascadeflow.run(max_steps=1) as session:
        litellm.completion(**chat_kwargs(provider))
        replies = litellm.batch_completion(model="openai/gpt-4o-mini", messages=batches,
                                           api_base=provider.url, api_key=KEY)
    assert all(isinstance(r, cascadeflow.PolicyStop) for r in replies), replies
    assert len(provider.requests) == 1


def test_batch_completion_models_counts_in_the_callers_session(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.batch_completion_models(models=["openai/gpt-4o-mini", "openai/gpt-4o"],
                                        messages=[{"role": "user", "content": "hi"}],
                                        api_base=provider.url, api_key=KEY)
    assert sorted(e["model"] for e in session.trace()) == ["openai/gpt-4o", "openai/gpt-4o-mini"]


def test_every_positional_argument_is_read(provider: Any) -> None:
    # `completion(model, messages, timeout)` was an unusual shape let through untouched: with
    # only litellm instrumented (or a provider litellm does not reach through the openai SDK)
    # it bypassed the policy in enforce mode
    cascadeflow.init(mode="enforce", instrument=["litellm"])
    messages = [{"role": "user", "content": "hi"}]
    with cascadeflow.run(max_steps=1) as session:
        litellm.completion("openai/gpt-4o-mini", messages, 30, api_base=provider.url, api_key=KEY)
        with pytest.raises(cascadeflow.StepLimitReached):
            litellm.completion("openai/gpt-4o-mini", messages, 30, api_base=provider.url, api_key=KEY)
    assert [e["status"] for e in session.trace()] == ["ok", "stopped"]
    assert len(provider.requests) == 1


async def test_every_positional_argument_of_an_async_entry_point_is_read(provider: Any) -> None:
    cascadeflow.init(mode="observe", instrument=["litellm"])
    async with cascadeflow.run() as session:
        await litellm.aembedding("openai/text-embedding-3-small", ["one"], None,
                                 api_base=provider.url, api_key=KEY)
        await litellm.atext_completion("hi", "openai/gpt-3.5-turbo-instruct", None,
                                       api_base=provider.url, api_key=KEY)
    assert [e["operation"] for e in session.trace()] == ["embeddings", "text_completion"]


async def test_a_sync_router_call_inside_an_event_loop_counts_in_the_callers_session(provider: Any) -> None:
    # the sync Router methods run their async twin on a thread of litellm's own when an event
    # loop already runs (a notebook cell, sync code called from async code): that thread's calls
    # counted in the ambient session, past the run's step cap and budget
    cascadeflow.init(mode="enforce")
    router = litellm.Router(model_list=[
        {"model_name": "triage-model", "litellm_params": {
            "model": "openai/gpt-4o-mini", "api_base": provider.url, "api_key": KEY}},
        {"model_name": "embedder", "litellm_params": {
            "model": "openai/text-embedding-3-small", "api_base": provider.url, "api_key": KEY}}])
    with cascadeflow.run(max_steps=2) as session:
        router.completion(model="triage-model", messages=[{"role": "user", "content": "hi"}])
        router.embedding(model="embedder", input=["hi"])
        with pytest.raises(cascadeflow.StepLimitReached):
            router.completion(model="triage-model", messages=[{"role": "user", "content": "hi"}])
    assert [e["operation"] for e in session.trace()] == ["chat", "embeddings", "chat"]
    assert len(provider.requests) == 2
