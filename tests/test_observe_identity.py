"""Observe changes nothing: the provider receives the same bytes and the caller the same objects."""

from __future__ import annotations

import json
from typing import Any

import cascadeflow
import litellm
import openai

from tests.conftest import chat_kwargs

KEY = "sk-test-not-a-real-key-0000"
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]


def _calls(provider: Any) -> list[Any]:
    """One of each call shape; returns what the caller got back, made comparable."""
    out: list[Any] = []
    response = litellm.completion(**chat_kwargs(provider, "same bytes please"), max_tokens=50,
                                  tools=TOOLS, temperature=0.2)
    out.append(response.choices[0].message.tool_calls[0].function.arguments)
    stream = litellm.completion(**chat_kwargs(provider, "a stream"), stream=True)
    out.append([c.choices[0].delta.content for c in stream])
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    chat = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}],
                                       stream=True)
    out.append([c.choices[0].delta.content for c in chat if c.choices])
    resp = sdk.responses.create(model="gpt-4o-mini", input="hi")
    out.append(resp.output_text)
    emb = sdk.embeddings.create(model="text-embedding-3-small", input="abc")
    out.append(emb.data[0].embedding)
    return out


def _bodies(provider: Any) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in provider.requests]


def _raw(provider: Any) -> list[tuple[str, bytes]]:
    return [(r.path, r.body) for r in provider.requests]


def test_observe_sends_the_same_bytes_as_off(provider: Any) -> None:
    cascadeflow.init(mode="off")
    results_off = _calls(provider)
    raw_off = _raw(provider)
    provider.reset()

    cascadeflow.init(mode="observe", budget=0.000001, max_tool_calls=0, max_steps=1,
                     compliance="strict", kpi_weights={"cost": 1.0})
    with cascadeflow.run() as session:
        results_observe = _calls(provider)
    raw_observe = _raw(provider)

    assert raw_observe == raw_off  # byte-for-byte, including no injected stream_options
    assert results_observe == results_off
    assert all("stream_options" not in b for b in _bodies(provider))
    # ... while the trace shows what enforcement would have done
    actions = {e["action"] for e in session.trace()}
    assert "stop" in actions
    assert all(not e["applied"] for e in session.trace())


def test_observe_returns_the_library_objects_unchanged(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    response = litellm.completion(**chat_kwargs(provider))
    assert type(response) is litellm.ModelResponse
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY)
    chat = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert type(chat).__name__ == "ChatCompletion"
