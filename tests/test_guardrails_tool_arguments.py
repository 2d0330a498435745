"""Output rules on the tool calls a model asks for: their arguments are judged like its text
(an SSN the model put in a call is redacted or blocked), edits keep the JSON valid, streamed or
not, chat and Responses API, through the real litellm and openai clients against the built-in
provider."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.errors import GuardrailBlocked
from cascadeflow.guardrails import compile_policy, scan_prompt

SSN = "123-45-6789"
KEY = "sk-test-0000000000000000"
POLICY = """
version = "t1"

[profiles.support]
[[profiles.support.output]]
name = "no_ssn"
detector = "pii"
types = ["ssn"]
action = "{action}"

[[profiles.support.output]]
name = "no_rivals"
detector = "words"
words = ["Globex"]
action = "rewrite"
replacement = 'a "trusted" partner'
"""
TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"note": {"type": "string"}}, "required": ["note"]}}}
ARGS = {"note": f"SSN {SSN} from Globex"}
EXPECTED = {"note": 'SSN [SSN] from a "trusted" partner'}


def start(provider: Any, tmp_path: Path, action: str = "redact") -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(action=action))
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.reply(tool_call=("lookup", ARGS))


def chat_arguments(client: str, provider: Any, stream: bool) -> str:
    messages = [{"role": "user", "content": "look it up"}]
    if client == "litellm":
        response = litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=[TOOL],
                                      api_base=provider.url, api_key=KEY, stream=stream)
    else:
        sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
        response = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[call-overload]
                                               tools=[TOOL], stream=stream)
    if not stream:
        return str(response.choices[0].message.tool_calls[0].function.arguments)
    pieces = []
    for chunk in response:
        for call in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            pieces.append(call.function.arguments or "")
    return "".join(pieces)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_tool_calls_arguments_get_the_output_rules(client: str, stream: bool, provider: Any,
                                                     tmp_path: Path) -> None:
    start(provider, tmp_path)
    with cascadeflow.run(guardrails="support") as session:
        arguments = chat_arguments(client, provider, stream)
    assert json.loads(arguments) == EXPECTED
    assert session.summary()["findings_by_rule"] == {"no_ssn": 1, "no_rivals": 1}


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_carrying_what_a_block_rule_finds_is_blocked(stream: bool, provider: Any,
                                                                 tmp_path: Path) -> None:
    start(provider, tmp_path, "block")
    with cascadeflow.run(guardrails="support"), pytest.raises(GuardrailBlocked):
        chat_arguments("openai", provider, stream)


@pytest.mark.parametrize("stream", [False, True])
def test_responses_function_call_arguments_get_the_output_rules(stream: bool, provider: Any,
                                                                tmp_path: Path) -> None:
    start(provider, tmp_path)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    tool = {"type": "function", "name": "lookup", "parameters": TOOL["function"]["parameters"]}  # type: ignore[index]
    with cascadeflow.run(guardrails="support"):
        if stream:
            events = list(sdk.responses.create(model="gpt-4o-mini", input="look it up", tools=[tool],  # type: ignore[list-item]
                                               stream=True))
            deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
            done = next(e.arguments for e in events if e.type == "response.function_call_arguments.done")
            final = next(e.response for e in events if e.type == "response.completed")
            assert json.loads(deltas) == json.loads(done) == EXPECTED
            arguments = final.output[0].arguments
        else:
            response = sdk.responses.create(model="gpt-4o-mini", input="look it up", tools=[tool])  # type: ignore[list-item]
            arguments = response.output[0].arguments
    assert json.loads(arguments) == EXPECTED


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("mode", "action"), [("observe", "redact"), ("enforce", "alert")])
def test_rules_that_change_nothing_record_what_tool_calls_carry(mode: str, action: str, stream: bool,
                                                                provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    ssn_only = POLICY.format(action=action).split('[[profiles.support.output]]\nname = "no_rivals"')[0]
    path.write_text(ssn_only)
    cascadeflow.init(mode=mode, guardrails_file=path)
    provider.reply(tool_call=("lookup", ARGS))
    with cascadeflow.run(guardrails="support") as session:
        arguments = chat_arguments("openai", provider, stream)
    assert json.loads(arguments) == ARGS  # nothing changed
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"no_ssn": 1}


@pytest.mark.parametrize("stream", [False, True])
def test_a_legacy_function_calls_arguments_get_the_output_rules(stream: bool, provider: Any,
                                                                tmp_path: Path) -> None:
    """The answer to chat's legacy `functions=` (`function_call`, not `tool_calls`)."""
    start(provider, tmp_path)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        messages = [{"role": "user", "content": "x"}]
        response = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[call-overload]
                                               functions=[TOOL["function"]], stream=stream)  # type: ignore[index]
        if stream:
            arguments = "".join(c.choices[0].delta.function_call.arguments or "" for c in response
                                if c.choices and c.choices[0].delta.function_call)
        else:
            arguments = response.choices[0].message.function_call.arguments
    assert json.loads(arguments) == EXPECTED
    assert session.summary()["findings_by_rule"] == {"no_ssn": 1, "no_rivals": 1}


# what a model writes in a tool call: its JSON escapes a line break (`\n`) and non-ASCII
# letters (`\u00e9`, the way `json.dumps` writes them) right before an address and a phone number
WRITTEN = {"note": "Hi Jos\u00e9,\nbob@example.com\n+44 20 7946 0958"}
PII_POLICY = """
version = "t2"

[profiles.support]
[[profiles.support.{stage}]]
name = "pii"
detector = "pii"
types = ["email", "phone"]
action = "redact"
{extra}
"""


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_tool_calls_escapes_are_read_as_what_they_stand_for(client: str, stream: bool, provider: Any,
                                                              tmp_path: Path) -> None:
    """Read as written, `\\nbob@example.com` held the address `nbob@example.com`: its redaction
    left `\\[EMAIL]`, an invalid escape, and the agent could not parse the arguments; and
    `\\n+44 20 7946 0958` held no phone number at all, which went out as the model wrote it."""
    path = tmp_path / "guardrails.toml"
    path.write_text(PII_POLICY.format(stage="output", extra=""))
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.reply(tool_call=("lookup", WRITTEN))
    with cascadeflow.run(guardrails="support") as session:
        arguments = chat_arguments(client, provider, stream)
    assert json.loads(arguments) == {"note": "Hi Jos\u00e9,\n[EMAIL]\n[PHONE]"}
    assert session.summary()["findings_by_rule"] == {"pii": 2}


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_tool_calls_sent_back_are_read_as_what_they_stand_for(mode: str, provider: Any,
                                                              tmp_path: Path) -> None:
    """The history's tool-call arguments, JSON too: the provider saw the phone number, and the
    placeholder it got stood for `nbob@example.com` (the application would get that back)."""
    path = tmp_path / "guardrails.toml"
    path.write_text(PII_POLICY.format(stage="input", extra='redaction = "reversible"'))
    cascadeflow.init(mode=mode, guardrails_file=path)
    messages = [{"role": "user", "content": "write to bob@example.com"},
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function",
                    "function": {"name": "lookup", "arguments": json.dumps(WRITTEN)}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sent"}]
    with cascadeflow.run(guardrails="support") as session:
        litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url, api_key=KEY)
    sent = provider.requests[0].json["messages"]
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"pii": 3}
    if mode == "observe":  # recorded, nothing changed
        assert sent[0] == messages[0] and sent[1]["tool_calls"] == messages[1]["tool_calls"]
        return
    assert sent[0]["content"] == "write to [EMAIL_1]"  # the same address, the same placeholder
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == \
        {"note": "Hi Jos\u00e9,\n[EMAIL_1]\n[PHONE_1]"}


def test_an_input_rewrite_keeps_the_historys_tool_call_arguments_valid_json() -> None:
    rules = compile_policy({"version": "t", "profiles": {"p": {"input": [
        {"name": "rivals", "detector": "words", "words": ["Globex"], "action": "rewrite",
         "replacement": 'a "trusted" partner'}]}}}, "test").profiles["p"].input
    messages = [{"role": "assistant", "content": None, "tool_calls": [{
        "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": json.dumps(ARGS)}}]}]
    _findings, edited = scan_prompt(rules, messages, True)
    assert json.loads(edited[0]["tool_calls"][0]["function"]["arguments"]) == \
        {"note": f'SSN {SSN} from a "trusted" partner'}


# a custom tool (`{"type": "custom"}`): the model writes its input as free-form text, no JSON
SQL = f"UPDATE users SET ssn = '{SSN}' WHERE email = '[EMAIL_1]'"
CUSTOM_POLICY = """
version = "t3"

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
action = "redact"
"""
CUSTOM_ITEM = {"type": "custom_tool_call", "id": "ctc_1", "call_id": "call_1", "name": "run_sql",
               "input": SQL}


def custom_events() -> str:
    final = json.loads(responses_body([CUSTOM_ITEM]))
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {**final, "output": [],
                                                                             "status": "in_progress"}},
                                    {"type": "response.output_item.added", "output_index": 0,
                                     "item": {**CUSTOM_ITEM, "input": ""}}]
    events += [{"type": "response.custom_tool_call_input.delta", "item_id": "ctc_1", "output_index": 0,
                "delta": SQL[i:i + 7]} for i in range(0, len(SQL), 7)]
    events += [{"type": "response.custom_tool_call_input.done", "item_id": "ctc_1", "output_index": 0,
                "input": SQL},
               {"type": "response.output_item.done", "output_index": 0, "item": CUSTOM_ITEM},
               {"type": "response.completed", "response": final}]
    return "".join(f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n"
                   for n, e in enumerate(events))


def responses_body(output: list[dict[str, Any]]) -> str:
    return json.dumps({"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o-mini",
                       "status": "completed", "output": output, "parallel_tool_calls": True,
                       "tool_choice": "auto", "tools": [],
                       "usage": {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14,
                                 "input_tokens_details": {"cached_tokens": 0},
                                 "output_tokens_details": {"reasoning_tokens": 0}}})


@pytest.mark.parametrize("stream", [False, True])
def test_a_custom_tool_calls_input_gets_the_rules_and_the_originals(stream: bool, provider: Any,
                                                                   tmp_path: Path) -> None:
    """A custom tool call's input is what an agent executes, like a function call's arguments:
    the SSN in it went out, and the placeholder stayed in it."""
    path = tmp_path / "guardrails.toml"
    path.write_text(CUSTOM_POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.inject(body=custom_events() if stream else responses_body([CUSTOM_ITEM]), times=1)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    want = "UPDATE users SET ssn = '[SSN]' WHERE email = 'dana@example.com'"
    with cascadeflow.run(guardrails="support") as session:
        answer = sdk.responses.create(model="gpt-4o-mini", input="Store the SSN of dana@example.com",
                                      tools=[{"type": "custom", "name": "run_sql"}], stream=stream)
        if stream:
            events = list(answer)
            deltas = "".join(e.delta for e in events if e.type == "response.custom_tool_call_input.delta")
            done = [e.input for e in events if e.type == "response.custom_tool_call_input.done"]
            items = [e.item.input for e in events if e.type == "response.output_item.done"]
            final = [e.response.output[0].input for e in events if e.type == "response.completed"]
            assert [deltas, *done, *items, *final] == [want] * 4
        else:
            assert answer.output[0].input == want
    assert provider.requests[0].json["input"] == "Store the SSN of [EMAIL_1]"
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"pii_reversible": 1, "no_ssn": 1}


def test_a_custom_tool_call_sent_back_carries_no_original(provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(CUSTOM_POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    history = [{"role": "user", "content": "Store it for dana@example.com"},
               {**CUSTOM_ITEM, "input": "SELECT 1 WHERE email = 'dana@example.com'"},
               {"type": "custom_tool_call_output", "call_id": "call_1", "output": "done"}]
    with cascadeflow.run(guardrails="support"):
        sdk.responses.create(model="gpt-4o-mini", input=history)  # type: ignore[arg-type]
    assert provider.requests[0].json["input"][1]["input"] == "SELECT 1 WHERE email = '[EMAIL_1]'"


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_chat_custom_tool_call_gets_the_rules_and_goes_back_redacted(client: str, provider: Any,
                                                                       tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(CUSTOM_POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.inject(times=1, body=json.dumps({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "usage": {"prompt_tokens": 5, "completion_tokens": 9, "total_tokens": 14},
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "custom", "custom": {"name": "run_sql", "input": SQL}}]}}]}))
    messages: list[Any] = [{"role": "user", "content": "Store the SSN of dana@example.com"}]
    tools = [{"type": "custom", "custom": {"name": "run_sql"}}]
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)

    def ask() -> Any:
        if client == "litellm":
            return litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=tools,
                                      api_base=provider.url, api_key=KEY).choices[0].message
        return sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[call-overload]
                                           tools=tools).choices[0].message

    with cascadeflow.run(guardrails="support"):
        message = ask()
        assert message.tool_calls[0].custom.input == \
            "UPDATE users SET ssn = '[SSN]' WHERE email = 'dana@example.com'"
        messages += [message, {"role": "tool", "tool_call_id": "call_1", "content": "done"}]
        ask()
    assert provider.requests[1].json["messages"][1]["tool_calls"][0]["custom"]["input"] == \
        "UPDATE users SET ssn = '[SSN]' WHERE email = '[EMAIL_1]'"


def test_a_tool_result_written_as_json_is_read_as_what_it_says(provider: Any, tmp_path: Path) -> None:
    """A tool result is often JSON: the phone number after its `\\n` went to the provider, and
    the placeholder of the address after one stood for `nbob@example.com`, which the
    application would have got back."""
    path = tmp_path / "guardrails.toml"
    path.write_text(PII_POLICY.format(stage="input", extra='redaction = "reversible"'))
    cascadeflow.init(mode="enforce", guardrails_file=path)
    result = json.dumps({"customer": WRITTEN["note"]})
    messages = [{"role": "user", "content": "who is it? write to bob@example.com"},
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": result}]
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(guardrails="support"):
        sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
        sdk.responses.create(model="gpt-4o-mini", input=[  # type: ignore[arg-type]
            {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "call_1", "output": result}])
    chat, responses = (json.loads(r.body) for r in provider.requests)
    want = {"customer": "Hi Jos\u00e9,\n[EMAIL_1]\n[PHONE_1]"}
    assert chat["messages"][0]["content"] == "who is it? write to [EMAIL_1]"
    assert json.loads(chat["messages"][2]["content"]) == want
    assert json.loads(responses["input"][1]["output"]) == want


def chat_custom_events() -> str:
    """A chat stream whose tool call is a custom tool's: its input streams in `custom.input`."""
    def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return "data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1,
                                      "model": "gpt-4o-mini", "choices": [choice]}) + "\n\n"
    first = {"role": "assistant", "content": None, "tool_calls": [
        {"index": 0, "id": "call_1", "type": "custom", "custom": {"name": "run_sql", "input": ""}}]}
    pieces = [chunk({"tool_calls": [{"index": 0, "custom": {"input": SQL[i:i + 7]}}]})
              for i in range(0, len(SQL), 7)]
    return chunk(first) + "".join(pieces) + chunk({}, "tool_calls") + "data: [DONE]\n\n"


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_streamed_chat_custom_tool_calls_input_gets_the_rules_and_the_originals(
        client: str, provider: Any, tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(CUSTOM_POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.inject(body=chat_custom_events(), times=1)
    messages = [{"role": "user", "content": "Store the SSN of dana@example.com"}]
    tools = [{"type": "custom", "custom": {"name": "run_sql"}}]
    with cascadeflow.run(guardrails="support") as session:
        if client == "litellm":
            stream = litellm.completion(model="openai/gpt-4o-mini", messages=messages, tools=tools,
                                        api_base=provider.url, api_key=KEY, stream=True)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
            stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages,  # type: ignore[call-overload]
                                                 tools=tools, stream=True)
        calls = [call for chunk in stream if chunk.choices
                 for call in chunk.choices[0].delta.tool_calls or ()]
    custom = [call.custom if client == "litellm" else SimpleNamespace(**call.custom) for call in calls]
    assert "".join(c.input or "" for c in custom) == \
        "UPDATE users SET ssn = '[SSN]' WHERE email = 'dana@example.com'"
    assert provider.requests[0].json["messages"][0]["content"] == "Store the SSN of [EMAIL_1]"
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"pii_reversible": 1, "no_ssn": 1}
