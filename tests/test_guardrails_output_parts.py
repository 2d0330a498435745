"""Output rules on unstreamed answers with more than one text: every choice of an `n` > 1
chat call, every `output_text` part of a responses answer, each judged and edited in its own
place; and a blocked answer's text kept out of what cascadeflow records. Served by the built-in
provider, read through the real litellm and openai clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.errors import GuardrailBlocked

SSN = "123-45-6789"
POLICY = """
version = "o1"

[profiles.support]
[[profiles.support.output]]
name = "no_ssn"
detector = "pii"
types = ["ssn"]
action = "{action}"
"""
KEY = "sk-test-0000000000000000"


def start(tmp_path: Path, action: str = "redact") -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(action=action))
    cascadeflow.init(mode="enforce", guardrails_file=path, capture_content=True)


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_every_choice_of_an_answer_gets_the_output_rules(client: str, provider: Any, tmp_path: Path) -> None:
    start(tmp_path)
    provider.reply(f"Your SSN is {SSN}.")
    messages = [{"role": "user", "content": "what is my number"}]
    with cascadeflow.run(guardrails="support") as session:
        if client == "litellm":
            response = litellm.completion(model="openai/gpt-4o-mini", messages=messages, n=3,
                                          api_base=provider.url, api_key=KEY)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
            response = sdk.chat.completions.create(model="gpt-4o-mini", messages=messages, n=3)  # type: ignore[arg-type]
    assert [c.message.content for c in response.choices] == ["Your SSN is [SSN]."] * 3
    assert session.summary()["findings_by_rule"] == {"no_ssn": 3}


def responses_body(output: list[dict[str, Any]]) -> str:
    return json.dumps({"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o-mini",
                       "status": "completed", "output": output, "parallel_tool_calls": True,
                       "tool_choice": "auto", "tools": [],
                       "usage": {"input_tokens": 5, "output_tokens": 9, "total_tokens": 14,
                                 "input_tokens_details": {"cached_tokens": 0},
                                 "output_tokens_details": {"reasoning_tokens": 0}}})


def test_each_part_of_a_responses_answer_is_edited_in_its_place(provider: Any, tmp_path: Path) -> None:
    start(tmp_path)
    provider.inject(body=responses_body([
        {"type": "reasoning", "id": "rs_1", "summary": [],
         "content": [{"type": "reasoning_text", "text": f"The user gave {SSN}. "}]},
        {"type": "message", "id": "msg_1", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": "Here it is. ", "annotations": []},
                     {"type": "output_text", "text": f"SSN {SSN}", "annotations": []}]},
        {"type": "message", "id": "msg_2", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "text": f"Again: {SSN}", "annotations": []}]}]), times=1)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(guardrails="support"):
        response = sdk.responses.create(model="gpt-4o-mini", input="what is my number")
    parts = [part.text for item in response.output for part in (getattr(item, "content", None) or [])]
    assert parts == ["The user gave [SSN]. ", "Here it is. ", "SSN [SSN]", "Again: [SSN]"]
    assert response.output_text == "Here it is. SSN [SSN]Again: [SSN]"


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_blocked_answer_leaves_no_copy_in_the_trace(client: str, provider: Any, tmp_path: Path) -> None:
    start(tmp_path, "block")
    provider.reply(f"Your SSN is {SSN}.")
    messages = [{"role": "user", "content": "what is my number"}]
    with cascadeflow.run(guardrails="support") as session, pytest.raises(GuardrailBlocked):
        if client == "litellm":
            litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url,
                               api_key=KEY)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
            sdk.chat.completions.create(model="gpt-4o-mini", messages=messages)  # type: ignore[arg-type]
    cascadeflow.flush()
    recorded = json.dumps(session.trace()) + session.save(tmp_path / "run.json").read_text()
    assert SSN not in recorded
    call = next(e for e in session.trace() if e["operation"] == "chat")
    assert call["content"]["completion"] == "" and call["tokens_out"] > 0  # billed, withheld
    assert session.summary()["stopped"] is True  # the caller got GuardrailBlocked


@pytest.mark.parametrize(("mode", "action"), [("enforce", "alert"), ("enforce", "log_only"),
                                              ("observe", "redact"), ("observe", "block")])
def test_rules_that_change_nothing_record_every_choice(mode: str, action: str, provider: Any,
                                                       tmp_path: Path) -> None:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(action=action))
    cascadeflow.init(mode=mode, guardrails_file=path)
    provider.reply(f"Your SSN is {SSN}.")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        response = sdk.chat.completions.create(model="gpt-4o-mini", n=3,
                                               messages=[{"role": "user", "content": "my number?"}])
    assert [c.message.content for c in response.choices] == [f"Your SSN is {SSN}."] * 3
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"no_ssn": 3}
    if mode == "observe":  # recorded as what would have happened
        assert [f["applied"] for f in session.findings()] == [False] * 3


def chunk(index: int, content: str | None, finish: str | None = None) -> str:
    delta = {} if content is None else {"role": "assistant", "content": content}
    return "data: " + json.dumps({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                                  "model": "gpt-4o-mini", "choices": [
                                      {"index": index, "delta": delta, "finish_reason": finish}]}) + "\n\n"


# two choices streamed as providers send them, their deltas interleaved: choice 0's SSN is
# split across two of its deltas with one of choice 1's between them
INTERLEAVED = (chunk(0, "Your SSN is 123-45-") + chunk(1, "Hello there") + chunk(0, "6789.")
               + chunk(1, " friend") + chunk(0, None, "stop") + chunk(1, None, "stop") + "data: [DONE]\n\n")


@pytest.mark.parametrize("client", ["litellm", "openai"])
@pytest.mark.parametrize(("mode", "action"), [("enforce", "log_only"), ("observe", "block")])
def test_rules_that_change_nothing_judge_each_streamed_choice_on_its_own(
        mode: str, action: str, client: str, provider: Any, tmp_path: Path) -> None:
    """Read as one text, the interleaved deltas held `123-45-Hello there6789`: observe mode
    recorded nothing where enforce blocks."""
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(action=action))
    cascadeflow.init(mode=mode, guardrails_file=path)
    provider.inject(body=INTERLEAVED, times=1)
    messages = [{"role": "user", "content": "my number?"}]
    with cascadeflow.run(guardrails="support") as session:
        if client == "litellm":
            stream = litellm.completion(model="openai/gpt-4o-mini", messages=messages, n=2, stream=True,
                                        api_base=provider.url, api_key=KEY)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
            stream = sdk.chat.completions.create(model="gpt-4o-mini", n=2, stream=True,  # type: ignore[call-overload]
                                                 messages=messages)
        texts: dict[int, str] = {}
        for part in stream:
            for choice in part.choices:
                texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    assert texts == {0: f"Your SSN is {SSN}.", 1: "Hello there friend"}
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"no_ssn": 1}


async def read_choices(stream: Any, is_async: bool) -> dict[int, str]:
    texts: dict[int, str] = {}
    parts = [part async for part in stream] if is_async else list(stream)
    for part in parts:
        for choice in part.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
    return texts


@pytest.mark.parametrize("is_async", [False, True])
async def test_every_streamed_choice_reaches_the_application_through_litellm(
        is_async: bool, provider: Any, tmp_path: Path) -> None:
    """litellm hands over the finish reason of an `n` > 1 stream's first choice only: the
    others never ended for the output rules, which held their last 64 characters back until
    the stream was over, and then dropped them (here, choice 1's whole text)."""
    start(tmp_path)
    provider.inject(body=INTERLEAVED.replace("Your SSN is 123-45-", "Hello").replace("6789.", " you")
                    .replace("Hello there", f"SSN {SSN[:7]}").replace(" friend", f"{SSN[7:]} kept"), times=1)
    kwargs: dict[str, Any] = {"model": "openai/gpt-4o-mini", "n": 2, "stream": True, "api_base": provider.url,
                              "api_key": KEY, "messages": [{"role": "user", "content": "my number?"}]}
    with cascadeflow.run(guardrails="support") as session:
        stream = await litellm.acompletion(**kwargs) if is_async else litellm.completion(**kwargs)
        texts = await read_choices(stream, is_async)
    assert texts == {0: "Hello you", 1: "SSN [SSN] kept"}
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"no_ssn": 1}
    call = next(e for e in session.trace() if e["operation"] == "chat")
    assert call["status"] == "ok"


def test_a_block_in_a_streamed_choice_litellm_did_not_end_withholds_it(provider: Any, tmp_path: Path) -> None:
    """Choice 1 ends with the SSN: it is judged whole only once the stream is over."""
    start(tmp_path, action="block")
    provider.inject(body=INTERLEAVED.replace("Your SSN is 123-45-", "Hello").replace("6789.", " you")
                    .replace("Hello there", f"SSN {SSN[:7]}").replace(" friend", SSN[7:]), times=1)
    seen: list[str] = []
    with cascadeflow.run(guardrails="support"), pytest.raises(GuardrailBlocked):
        for part in litellm.completion(model="openai/gpt-4o-mini", n=2, stream=True, api_base=provider.url,
                                       api_key=KEY, messages=[{"role": "user", "content": "my number?"}]):
            seen += [choice.delta.content or "" for choice in part.choices]
    assert SSN[7:] not in "".join(seen) and SSN[:7] not in "".join(seen)


# an answer in JSON mode: its `\n` stands right before a phone number and an address
JSON_ANSWER = json.dumps({"reply": "Call me:\n+44 20 7946 0958\nbob@example.com"})
PHONE_POLICY = """
version = "o2"

[profiles.support]
[[profiles.support.output]]
name = "contacts"
detector = "pii"
types = ["phone", "email"]
action = "{action}"
"""


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_an_answer_written_as_json_is_read_through_its_escapes(mode: str, stream: bool, provider: Any,
                                                               tmp_path: Path) -> None:
    """Read as written, the phone number after `\\n` was no phone number: it reached the
    application, and `\\nbob@example.com` was redacted to `\\[EMAIL]`, which broke the JSON."""
    path = tmp_path / "guardrails.toml"
    path.write_text(PHONE_POLICY.format(action="redact"))
    cascadeflow.init(mode=mode, guardrails_file=path)
    provider.reply(JSON_ANSWER)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        answer = sdk.chat.completions.create(model="gpt-4o-mini", stream=stream,  # type: ignore[call-overload]
                                             messages=[{"role": "user", "content": "json please"}])
        text = "".join(c.choices[0].delta.content or "" for c in answer if c.choices) if stream \
            else answer.choices[0].message.content
    cascadeflow.flush()
    assert sum(session.summary()["findings_by_rule"].values()) == 2
    if mode == "observe":
        assert text == JSON_ANSWER
    else:
        assert json.loads(text) == {"reply": "Call me:\n[PHONE]\n[EMAIL]"}


THOUGHT = f"The customer's SSN is {SSN}; answer briefly."
REASONING = {"type": "reasoning", "id": "rs_1", "summary": [],
             "content": [{"type": "reasoning_text", "text": THOUGHT}]}
MESSAGE = {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed",
           "content": [{"type": "output_text", "text": "Done.", "annotations": []}]}


def reasoning_events() -> str:
    """A Responses stream whose first item is reasoning text (gpt-oss, served by vLLM)."""
    final = json.loads(responses_body([REASONING, MESSAGE]))
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {**final, "output": [], "status": "in_progress"}},
        {"type": "response.output_item.added", "output_index": 0, "item": {**REASONING, "content": []}},
        {"type": "response.content_part.added", "item_id": "rs_1", "output_index": 0, "content_index": 0,
         "part": {"type": "reasoning_text", "text": ""}}]
    events += [{"type": "response.reasoning_text.delta", "item_id": "rs_1", "output_index": 0,
                "content_index": 0, "delta": THOUGHT[i:i + 5]} for i in range(0, len(THOUGHT), 5)]
    events += [{"type": "response.reasoning_text.done", "item_id": "rs_1", "output_index": 0,
                "content_index": 0, "text": THOUGHT},
               {"type": "response.content_part.done", "item_id": "rs_1", "output_index": 0,
                "content_index": 0, "part": REASONING["content"][0]},  # type: ignore[index]
               {"type": "response.output_item.done", "output_index": 0, "item": REASONING},
               {"type": "response.output_item.added", "output_index": 1, "item": {**MESSAGE, "content": []}},
               {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 1,
                "content_index": 0, "delta": "Done.", "logprobs": []},
               {"type": "response.output_text.done", "item_id": "msg_1", "output_index": 1,
                "content_index": 0, "text": "Done.", "logprobs": []},
               {"type": "response.output_item.done", "output_index": 1, "item": MESSAGE},
               {"type": "response.completed", "response": final}]
    return "".join(f"event: {e['type']}\ndata: {json.dumps({**e, 'sequence_number': n})}\n\n"
                   for n, e in enumerate(events))


@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_streamed_responses_reasoning_text_gets_the_output_rules(mode: str, provider: Any,
                                                                 tmp_path: Path) -> None:
    """Unstreamed, a reasoning item's text was judged (and redacted); streamed, its
    `response.reasoning_text.delta` events passed as the provider sent them."""
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY.format(action="redact"))
    cascadeflow.init(mode=mode, guardrails_file=path, capture_content=True)
    provider.inject(body=reasoning_events(), times=1)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(guardrails="support") as session:
        events = list(sdk.responses.create(model="gpt-4o-mini", input="why?", stream=True))
    handed = {"deltas": "".join(e.delta for e in events if e.type == "response.reasoning_text.delta"),
              "done": next(e.text for e in events if e.type == "response.reasoning_text.done"),
              "part": next(e.part.text for e in events if e.type == "response.content_part.done"),
              "item": next(e.item.content[0].text for e in events if e.type == "response.output_item.done"),
              "completed": next(e.response.output[0].content[0].text for e in events
                                if e.type == "response.completed")}
    cascadeflow.flush()
    assert session.summary()["findings_by_rule"] == {"no_ssn": 1}
    want = THOUGHT if mode == "observe" else THOUGHT.replace(SSN, "[SSN]")
    assert handed == dict.fromkeys(handed, want)
    call = next(e for e in session.trace() if e["operation"] == "responses")
    assert call["content"]["completion"] == "Done."  # the answer's text, not its reasoning
