"""The openai SDK: chat (sync, async, stream), responses and embeddings, each one traced step."""

from __future__ import annotations

from typing import Any

import cascadeflow
import litellm
import openai
import pytest

from tests.conftest import chat_kwargs

KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "hello from the sdk"}]


def client(provider: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)


def aclient(provider: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=provider.url, api_key=KEY, max_retries=0)


def test_chat(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        response = client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    [entry] = session.trace()
    assert entry["operation"] == "chat" and entry["provider"] == "openai"
    assert entry["model"] == "gpt-4o-mini"
    assert entry["tokens_in"] == response.usage.prompt_tokens
    assert entry["cost"] is not None and entry["cost"] > 0


async def test_async_chat_and_stream(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        await aclient(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        stream = await aclient(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                 stream=True)
        assert isinstance(stream, openai.AsyncStream)
        async for _ in stream:
            pass
    first, second = session.trace()
    assert first["usage_estimated"] is False and second["usage_estimated"] is True
    assert (first["tokens_in"], first["tokens_out"]) == (second["tokens_in"], second["tokens_out"])


def test_sync_stream_is_still_an_openai_stream(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        stream = client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                          stream=True)
        assert isinstance(stream, openai.Stream)
        assert stream.response.status_code == 200  # attributes are forwarded
        with stream:
            chunks = list(stream)
    assert len(chunks) > 2
    assert session.trace()[0]["status"] == "ok"


def test_responses(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        response = client(provider).responses.create(model="gpt-4o-mini", input="hi",
                                                     instructions="be brief")
    [entry] = session.trace()
    assert entry["operation"] == "responses"
    assert response.output_text.startswith("Reply from")
    assert entry["tokens_in"] == response.usage.input_tokens > 0


async def test_async_responses_stream(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        stream = await aclient(provider).responses.create(model="gpt-4o-mini", input="hi", stream=True)
        events = [event.type async for event in stream]
    assert events[-1] == "response.completed"
    [entry] = session.trace()
    assert entry["usage_estimated"] is False and entry["tokens_out"] > 0


def test_embeddings(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        result = client(provider).embeddings.create(model="text-embedding-3-small", input=["a b c"])
    assert len(result.data[0].embedding) == 8
    [entry] = session.trace()
    assert entry["operation"] == "embeddings" and entry["tokens_in"] == 3


async def test_async_embeddings(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        await aclient(provider).embeddings.create(model="text-embedding-3-small", input="abc")
    assert session.trace()[0]["operation"] == "embeddings"


def test_raw_response(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        raw = client(provider).chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                                         messages=MESSAGES)
        assert raw.http_response.status_code == 200
    assert session.trace()[0]["tokens_in"] == raw.parse().usage.prompt_tokens


def test_litellm_over_the_sdk_is_one_step(provider: Any) -> None:
    """litellm's openai provider calls the SDK underneath: still one step, not two."""
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider))
    assert len(session.trace()) == 1
    assert session.trace()[0]["requested_model"] == "openai/gpt-4o-mini"


def test_clients_made_before_init_are_intercepted(provider: Any) -> None:
    early = client(provider)
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        early.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(session.trace()) == 1


def test_sdk_error_is_recorded(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(status=503)
    with cascadeflow.run() as session, pytest.raises(openai.InternalServerError):
        client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert session.trace()[0]["error"] == "InternalServerError"
