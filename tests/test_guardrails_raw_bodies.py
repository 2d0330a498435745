"""Output rules and reversible placeholders on the openai SDK's raw responses: whichever way the
caller reads the body (`.text`, `.content`, `.json()`, `.read()`, `.iter_lines()`, ...), it gets
the answer as the rules let it through, never the provider's bytes; a stream read by hand is
blocked like one read through `parse()`. Served by the built-in provider, read through the real
SDK, sync and async."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow.errors import GuardrailBlocked

SSN, EMAIL = "123-45-6789", "dana.roe@example.com"
KEY = "sk-test-0000000000000000"
POLICY = """
version = "w1"

[profiles.support]
[[profiles.support.input]]
name = "pii_reversible"
detector = "pii"
types = ["email"]
action = "redact"
redaction = "reversible"

[[profiles.support.output]]
name = "no_ssn"
detector = "pii"
types = ["ssn"]
action = "{action}"
"""
MESSAGES: Any = [{"role": "user", "content": f"Tell {EMAIL} the number"}]


@pytest.fixture
def sdk(provider: Any, tmp_path: Path) -> openai.OpenAI:
    start(tmp_path)
    provider.reply(f"Your SSN is {SSN}, mail [EMAIL_1].")
    return openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)


def start(tmp_path: Path, action: str = "redact") -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(action=action))
    cascadeflow.init(mode="enforce", guardrails_file=path)


def streamed_text(lines: list[str]) -> str:
    """The text of a stream's events read by hand (chat chunks or responses deltas)."""
    out = []
    for line in lines:
        if line.startswith("data:") and line[5:].strip() != "[DONE]":
            event = json.loads(line[5:])
            if event.get("type") == "response.output_text.delta":
                out.append(event["delta"])
            for choice in event.get("choices") or ():
                out.append((choice.get("delta") or {}).get("content") or "")
    return "".join(out)


def assert_vetted(text: str) -> None:
    assert SSN not in text and "[SSN]" in text and EMAIL in text and "[EMAIL_1]" not in text


@pytest.mark.parametrize("reader", ["text", "content"])
def test_a_raw_responses_body_is_the_edited_answer(reader: str, sdk: openai.OpenAI) -> None:
    with cascadeflow.run(guardrails="support"):
        raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        body = getattr(raw, reader)
    assert_vetted(body.decode() if isinstance(body, bytes) else body)
    assert json.loads(body)["choices"][0]["message"]["content"] == raw.parse().choices[0].message.content


@pytest.mark.parametrize("reader", ["text", "json", "read", "iter_lines", "iter_bytes", "parse_then_json"])
def test_a_streaming_responses_body_is_the_edited_answer(reader: str, sdk: openai.OpenAI) -> None:
    with cascadeflow.run(guardrails="support"), sdk.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES) as response:
        if reader == "parse_then_json":
            response.parse()
            body: Any = response.json()
        elif reader.startswith("iter_"):
            pieces = list(getattr(response, reader)())
            body = b"".join(pieces) if reader == "iter_bytes" else "".join(pieces)
        else:
            body = getattr(response, reader)()
    data = body if isinstance(body, dict) else json.loads(body)
    assert_vetted(data["choices"][0]["message"]["content"])


@pytest.mark.parametrize("operation", ["chat", "responses"])
@pytest.mark.parametrize("reader", ["iter_lines", "iter_text", "text", "read"])
def test_a_stream_read_by_hand_is_the_edited_answer(operation: str, reader: str, sdk: openai.OpenAI) -> None:
    resource: Any = sdk.chat.completions if operation == "chat" else sdk.responses
    ask = {"messages": MESSAGES} if operation == "chat" else {"input": MESSAGES}
    with cascadeflow.run(guardrails="support"), resource.with_streaming_response.create(
            model="gpt-4o-mini", stream=True, **ask) as response:
        if reader == "iter_lines":
            lines = list(response.iter_lines())
        else:
            body = "".join(response.iter_text()) if reader == "iter_text" else getattr(response, reader)()
            lines = (body.decode() if isinstance(body, bytes) else body).splitlines()
    assert_vetted(streamed_text(lines))
    assert not any(SSN in line for line in lines)


def test_a_stream_read_by_hand_is_blocked(provider: Any, tmp_path: Path) -> None:
    start(tmp_path, "block")
    provider.reply(f"Your SSN is {SSN}.")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    lines: list[str] = []
    with cascadeflow.run(guardrails="support"), pytest.raises(GuardrailBlocked), \
            sdk.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                 stream=True) as response:
        for line in response.iter_lines():
            lines.append(line)
    assert not any(SSN in line for line in lines)


async def test_async_raw_bodies_are_the_edited_answer(provider: Any, tmp_path: Path) -> None:
    start(tmp_path)
    provider.reply(f"Your SSN is {SSN}, mail [EMAIL_1].")
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    async with cascadeflow.run(guardrails="support"):
        async with sdk.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES) as response:
            data = await response.json()
        async with sdk.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES) as response:
            text = await response.text()
        async with sdk.responses.with_streaming_response.create(
                model="gpt-4o-mini", input=MESSAGES, stream=True) as response:
            lines = [line async for line in response.iter_lines()]
        raw = await sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert_vetted(data["choices"][0]["message"]["content"])
    assert_vetted(json.loads(text)["choices"][0]["message"]["content"])
    assert_vetted(streamed_text(lines))
    assert_vetted(json.loads(raw.text)["choices"][0]["message"]["content"])
