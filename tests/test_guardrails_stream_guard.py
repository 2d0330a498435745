"""Output rules on streamed text: whatever the chunking, the caller gets what the rules make of
the whole answer, never a piece of a match, also of a match longer than the look-behind window
(an API key of 150 characters), served by the built-in provider through the real openai SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow.errors import GuardrailBlocked
from cascadeflow.guardrails import compile_policy, scan_text, transform
from cascadeflow.guardrails.scan import scan_json
from cascadeflow.guardrails.stream import WINDOW, StreamGuard

KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0" * 7 + "Kk"
TEXT = f"Use {KEY} for the call, card 4242 4242 4242 4242, SSN 123-45-6789, mail ana@example.com."
RULE = {"name": "secrets_out", "detector": "pii", "types": ["api_key", "credit_card", "ssn", "email"],
        "action": "redact"}
RULES = compile_policy({"version": "t", "profiles": {"p": {"output": [RULE]}}}, "test").profiles["p"].output


def streamed(text: str, size: int, in_json: bool = False) -> tuple[str, int]:
    guard = StreamGuard(RULES, edit=True, json=in_json)
    out, count = [], 0
    pieces = [text[i:i + size] for i in range(0, len(text), size)]
    for index, piece in enumerate(pieces):
        found, release = guard.feed(piece, final=index == len(pieces) - 1)
        out.append(release)
        count += sum(f.count for f in found)
    found, rest = guard.finish()
    return "".join(out) + rest, count + sum(f.count for f in found)


@pytest.mark.parametrize("size", [1, 5, 12, 40, WINDOW, 200])
def test_a_stream_gets_what_the_rules_make_of_the_whole_answer(size: int) -> None:
    assert len(KEY) > 2 * WINDOW
    whole = scan_text(RULES, TEXT, "output")
    assert streamed(TEXT, size) == (transform(TEXT, whole), len(whole.hits))
    assert "[API_KEY] for the call" in streamed(TEXT, size)[0]


# a tool call's arguments: JSON escapes (`\\`, `\"`, `\u00e9`, `\n`) next to what the rules find
ARGUMENTS = json.dumps({"note": "Jos\u00e9\\" * 20 + "\nana@example.com \"SSN\" 123-45-6789\n" + "\u00e9" * 30
                                + "ok\tcard 4242 4242 4242 4242"})


@pytest.mark.parametrize("size", range(1, 23))
def test_streamed_json_arguments_get_what_the_rules_make_of_the_whole_document(size: int) -> None:
    """No cut of the stream splits an escape, wherever the pieces end."""
    whole = scan_json(RULES, ARGUMENTS, "output")
    assert len(whole.hits) == 3
    text, count = streamed(ARGUMENTS, size, in_json=True)
    assert (text, count) == (transform(ARGUMENTS, whole, json=True), 3)
    assert json.loads(text) == {"note": "Jos\u00e9\\" * 20 + "\n[EMAIL] \"SSN\" [SSN]\n" + "\u00e9" * 30
                                + "ok\tcard [CREDIT_CARD]"}


def test_a_long_key_streamed_never_reaches_the_application(provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text('version = "k1"\n[profiles.p]\n[[profiles.p.output]]\nname = "keys"\ndetector = "pii"\n'
                    'types = ["api_key"]\naction = "redact"\n')
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.reply(f"Your key is {KEY} and nothing else.")  # served 12 characters a chunk
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="p") as session:
        stream = sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "user", "content": "my key?"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Your key is [API_KEY] and nothing else."
    assert session.summary()["findings_by_rule"] == {"keys": 1}


LIST = "ana@example.com " * 8


@pytest.mark.parametrize("size", range(1, 41))
def test_every_address_of_a_streamed_list_is_redacted(size: int) -> None:
    assert streamed(LIST, size) == ("[EMAIL] " * 8, 8)


def test_a_streamed_list_of_addresses_reaches_the_application_redacted(provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text('version = "e1"\n[profiles.p]\n[[profiles.p.output]]\nname = "mails"\ndetector = "pii"\n'
                    'types = ["email"]\naction = "redact"\n')
    cascadeflow.init(mode="enforce", guardrails_file=path)
    chunks = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"content": LIST[i:i + 24]}, "finish_reason": None}]}
              for i in range(0, len(LIST), 24)]
    chunks.append({"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
                   "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    provider.inject(body="".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n", times=1)
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="p") as session:
        stream = sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                             messages=[{"role": "user", "content": "the list?"}])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "[EMAIL] " * 8
    assert session.summary()["findings_by_rule"] == {"mails": 8}


BLOCK_RULE = {"name": "no_ssn", "detector": "pii", "types": ["ssn"], "action": "block"}
BLOCK = compile_policy({"version": "t", "profiles": {"p": {"output": [BLOCK_RULE]}}},
                       "test").profiles["p"].output


@pytest.mark.parametrize("size", range(1, 30))
def test_nothing_of_what_a_block_rule_finds_is_released_before_the_block(size: int) -> None:
    text = "Sure. Your number on file is SSN 123-45-6789, as you asked."
    guard = StreamGuard(BLOCK, edit=True)
    released = []
    for i in range(0, len(text), size):
        found, release = guard.feed(text[i:i + size], final=i + size >= len(text))
        if found:
            assert [f.action for f in found] == ["block"]
            break
        released.append(release)
    else:
        pytest.fail("the SSN was not found")
    assert "123" not in "".join(released)


def test_a_blocked_stream_hands_over_no_part_of_the_match(provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text('version = "b1"\n[profiles.p]\n[[profiles.p.output]]\nname = "no_ssn"\ndetector = "pii"\n'
                    'types = ["ssn"]\naction = "block"\n')
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.reply("Your number: SSN 123-45-6789.")  # served 12 characters a chunk
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    got: list[str] = []
    with cascadeflow.run(guardrails="p") as session, pytest.raises(GuardrailBlocked):
        for chunk in sdk.chat.completions.create(model="gpt-4o-mini", stream=True,
                                                 messages=[{"role": "user", "content": "my number?"}]):
            got.append((chunk.choices[0].delta.content or "") if chunk.choices else "")
    assert "123" not in "".join(got)
    assert session.summary()["stopped"] is True  # the caller got GuardrailBlocked
