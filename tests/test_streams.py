"""A stream is accounted however it ends: exhausted, closed, broken or abandoned half-read."""

from __future__ import annotations

import gc
from typing import Any

import cascadeflow
import litellm
import openai
import pytest

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
