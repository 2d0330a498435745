"""An answer written as JSON (JSON mode, a structured output) stays valid JSON when the
guardrails edit it: a rewrite's replacement and a reversible placeholder's original are written
as JSON string content, streamed or not."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pydantic
import pytest

PATH = "C:\\Users\\dana"  # a custom pattern's value with backslashes
POLICY = r"""
version = "j1"

[profiles.support]
[[profiles.support.input]]
name = "paths"
detector = "regex"
patterns = { path = '[A-Z]:\\Users\\\w+' }
action = "redact"
redaction = "reversible"

[[profiles.support.output]]
name = "refund_promises"
detector = "regex"
patterns = { refund_promise = "(?i)we will refund" }
action = "rewrite"
replacement = 'we "may" refund'
"""


def start(tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path)


def ask(client: str, provider: Any, content: str, stream: bool) -> str:
    messages = [{"role": "user", "content": content}]
    if client == "litellm":
        response = litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url,
                                      api_key="sk-test-0000000000000000", stream=stream,
                                      response_format={"type": "json_object"})
    else:
        sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
        response = sdk.chat.completions.create(  # type: ignore[call-overload]
            model="gpt-4o-mini", messages=messages, stream=stream, response_format={"type": "json_object"})
    if stream:
        return "".join(chunk.choices[0].delta.content or "" for chunk in response if chunk.choices)
    return str(response.choices[0].message.content)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_restored_value_is_written_as_json_string_content(client: str, stream: bool, provider: Any,
                                                            tmp_path: Path) -> None:
    start(tmp_path)
    provider.reply('{"folder": "[PATH_1]", "note": "kept"}', when="Describe")
    with cascadeflow.run(guardrails="support"):
        answer = ask(client, provider, f"Describe the folder {PATH} as JSON", stream)
    assert PATH not in json.dumps(provider.bodies())
    assert json.loads(answer) == {"folder": PATH, "note": "kept"}


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_rewrite_in_json_without_escapes_is_written_as_json_string_content(
        client: str, stream: bool, provider: Any, tmp_path: Path) -> None:
    start(tmp_path)
    provider.reply('{"answer": "Yes, we will refund you."}', when="Refund")
    with cascadeflow.run(guardrails="support"):
        answer = ask(client, provider, "Refund please, as JSON", stream)
    assert json.loads(answer) == {"answer": 'Yes, we "may" refund you.'}


@pytest.mark.parametrize("stream", [False, True])
def test_plain_text_that_starts_with_a_placeholder_gets_the_original_as_written(
        stream: bool, provider: Any, tmp_path: Path) -> None:
    start(tmp_path)
    provider.reply('[PATH_1] is "yours"; we will refund you', when="Describe")
    with cascadeflow.run(guardrails="support"):
        answer = ask("openai", provider, f"Describe the folder {PATH}", stream)
    assert answer == f'{PATH} is "yours"; we "may" refund you'


SSN_POLICY = """
version = "j2"

[profiles.support]
[[profiles.support.input]]
name = "emails"
detector = "pii"
types = ["email"]
action = "redact"
redaction = "reversible"

[[profiles.support.output]]
name = "no_ssn"
detector = "pii"
types = ["ssn"]
action = "redact"
"""


class Note(pydantic.BaseModel):
    note: str


def test_what_parse_hands_over_parsed_is_the_edited_answer(provider: Any, tmp_path: Path) -> None:
    """`parse()` parses the answer before cascadeflow edits it: `parsed` kept the SSN a rule
    redacted from the content, and the placeholder whose original went back into it."""
    path = tmp_path / "guardrails.toml"
    path.write_text(SSN_POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path)
    written = json.dumps({"note": "SSN 123-45-6789 for [EMAIL_1]"})
    want = Note(note="SSN [SSN] for dana@example.com")
    provider.reply(written, when="Note")
    provider.reply(tool_call=("Note", json.loads(written)), when="Call")
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)
    with cascadeflow.run(guardrails="support"):
        chat = sdk.chat.completions.parse(model="gpt-4o-mini", response_format=Note,
                                          messages=[{"role": "user", "content": "Note for dana@example.com"}])
        called = sdk.chat.completions.parse(
            model="gpt-4o-mini", tools=[openai.pydantic_function_tool(Note)],
            messages=[{"role": "user", "content": "Call for dana@example.com"}])
        responses = sdk.responses.parse(model="gpt-4o-mini", input="Note for dana@example.com",
                                        text_format=Note)
    assert chat.choices[0].message.parsed == want
    [call] = called.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == want
    assert responses.output_parsed == want
    assert "123-45-6789" not in repr([chat, called, responses])
