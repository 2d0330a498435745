"""Streams whose text cascadeflow edits (output rules that redact or block, reversible
placeholders), in the shapes providers send that the built-in replies do not: several parts,
several choices, a last chunk with no delta, a response with no `done` event, a stream that
breaks. Each stream is written event by event and served by the built-in provider (`body`
fault), read through the real openai SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow.errors import GuardrailBlocked

EMAIL, SSN, SSN2 = "dana.roe@example.com", "123-45-6789", "234-56-7891"
POLICY = """
version = "s1"

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

[[profiles.support.output]]
name = "no_cards"
detector = "pii"
types = ["credit_card"]
action = "block"
"""
ASK = [{"role": "user", "content": f"mail {EMAIL}"}]  # makes [EMAIL_1] restorable in the run


@pytest.fixture
def sdk(provider: Any, tmp_path: Path) -> openai.OpenAI:
    path = tmp_path / "guardrails.toml"
    path.write_text(POLICY)
    cascadeflow.init(mode="enforce", guardrails_file=path, capture_content=True)
    return openai.OpenAI(base_url=provider.url, api_key="sk-test-0000000000000000", max_retries=0)


def serve(provider: Any, events: list[dict[str, Any]], tail: str = "data: [DONE]\n\n") -> None:
    provider.inject(body="".join(f"data: {json.dumps(e)}\n\n" for e in events) + tail, times=1)


def chunk(index: int, content: str | None = None, finish: str | None = None,
          delta: bool = True) -> dict[str, Any]:
    choice: dict[str, Any] = {"index": index, "finish_reason": finish, "logprobs": None}
    if delta:
        choice["delta"] = {} if content is None else {"content": content}
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
            "choices": [choice]}


def texts(chunks: list[Any]) -> dict[int, str]:
    out: dict[int, str] = {}
    for c in chunks:
        for choice in c.choices:
            out[choice.index] = out.get(choice.index, "") + ((choice.delta and choice.delta.content) or "")
    return out


def message_events(parts: list[str], done: bool = True,
                   end: str = "response.completed") -> list[dict[str, Any]]:
    """A responses stream with one message item per text, 12 characters a delta."""
    events: list[dict[str, Any]] = []

    def add(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    items = [{"type": "message", "id": f"msg_{i}", "status": "completed", "role": "assistant",
              "content": [{"type": "output_text", "text": text, "annotations": []}]}
             for i, text in enumerate(parts)]
    for i, (text, item) in enumerate(zip(parts, items, strict=True)):
        where = {"item_id": item["id"], "output_index": i, "content_index": 0}
        for k in range(0, len(text), 12):
            add("response.output_text.delta", delta=text[k:k + 12], logprobs=[], **where)
        if done:
            add("response.output_text.done", text=text, logprobs=[], **where)
            add("response.content_part.done", part=item["content"][0], **where)  # type: ignore[index]
            add("response.output_item.done", output_index=i, item=item)
    add(end, response={"id": "resp_1", "object": "response", "created_at": 1, "model": "gpt-4o-mini",
                       "status": "completed" if end == "response.completed" else "incomplete",
                       "output": items, "parallel_tool_calls": True, "tool_choice": "auto", "tools": []})
    return events


def test_each_part_of_a_responses_stream_gets_the_rules(provider: Any, sdk: openai.OpenAI) -> None:
    """One rule state for the whole stream found the second part's SSN at the positions of the
    first's and took it for one already reported: it went through, to the caller and the trace."""
    serve(provider, message_events([f"SSN {SSN} ok", f"SSN {SSN2} ok"]), tail="")
    with cascadeflow.run(guardrails="support") as session:
        events = list(sdk.responses.create(model="gpt-4o-mini", input=ASK, stream=True))  # type: ignore[arg-type]
    deltas: dict[int, str] = {}
    for e in events:
        if e.type == "response.output_text.delta":
            deltas[e.output_index] = deltas.get(e.output_index, "") + e.delta
    assert deltas == {0: "SSN [SSN] ok", 1: "SSN [SSN] ok"}
    assert [e.text for e in events if e.type == "response.output_text.done"] == ["SSN [SSN] ok"] * 2
    [completed] = [e.response.output_text for e in events if e.type == "response.completed"]
    assert completed == "SSN [SSN] okSSN [SSN] ok"
    cascadeflow.flush()
    assert SSN2 not in json.dumps(session.trace())


@pytest.mark.parametrize("end", ["response.completed", "response.incomplete"])
def test_a_responses_stream_without_done_events_still_hands_over_its_tail(
        provider: Any, sdk: openai.OpenAI, end: str) -> None:
    serve(provider, message_events([f"Your SSN {SSN} is on file; thanks."], done=False, end=end), tail="")
    with cascadeflow.run(guardrails="support"):
        events = list(sdk.responses.create(model="gpt-4o-mini", input=ASK, stream=True))  # type: ignore[arg-type]
    handed = "Your SSN [SSN] is on file; thanks."
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == handed
    assert events[-1].response.output[0].content[0].text == handed


def test_choices_of_one_stream_keep_their_own_text(provider: Any, sdk: openai.OpenAI) -> None:
    """n=2: the second choice's text landed in the first's, and a placeholder split across the
    first's chunks was cut in two by the other's."""
    serve(provider, [chunk(0, ""), chunk(1, ""), chunk(0, f"SSN {SSN} to [EMA"), chunk(1, f"SSN {SSN2} to "),
                     chunk(0, "IL_1] ok"), chunk(1, "x [EMAIL_1] ok"), chunk(0, None, "stop"),
                     chunk(1, " more"), chunk(1, None, "stop")])
    with cascadeflow.run(guardrails="support"):
        chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, n=2,  # type: ignore[call-overload]
                                                  stream=True))
    assert texts(chunks) == {0: f"SSN [SSN] to {EMAIL} ok", 1: f"SSN [SSN] to x {EMAIL} ok more"}


def pieces(answer: str) -> list[dict[str, Any]]:
    """The answer's chunks, 12 characters each."""
    return [chunk(0, answer[k:k + 12]) for k in range(0, len(answer), 12)]


def test_a_last_chunk_without_a_delta_still_hands_over_what_was_held(provider: Any,
                                                                     sdk: openai.OpenAI) -> None:
    answer = f"Your SSN {SSN} is on file, thanks for asking."
    serve(provider, [*pieces(answer), chunk(0, None, "stop", False)])
    with cascadeflow.run(guardrails="support"):
        chunks = list(sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True))  # type: ignore[call-overload]
    assert texts(chunks) == {0: "Your SSN [SSN] is on file, thanks for asking."}


def test_a_broken_stream_hands_over_what_arrived_before_the_break(provider: Any, sdk: openai.OpenAI) -> None:
    """The chunk a late release may be appended to waits for the next: when the next is the
    provider's error, it is handed over first, then the error. (The output rule holds the last
    64 characters until it has seen what follows them: those are not handed over.)"""
    answer = "Hello there, this is a fine answer which goes on for a while before the provider fails."
    serve(provider, pieces(answer), tail="data: {broken\n\n")
    received: list[str] = []
    with cascadeflow.run(guardrails="support") as session:
        stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)  # type: ignore[call-overload]
        with pytest.raises(json.JSONDecodeError):
            for c in stream:
                received.append(c.choices[0].delta.content or "")
        assert next(stream, None) is None  # and then it is over
    assert "".join(received) == answer[:len(answer) - 64]
    cascadeflow.flush()
    assert [e["status"] for e in session.trace() if e["operation"] == "chat"] == ["error"]


def test_a_blocked_stream_is_over(provider: Any, sdk: openai.OpenAI) -> None:
    """After `GuardrailBlocked`, reading on handed over the rest of the answer, the blocked text
    with it, and the provider's connection stayed open."""
    answer = "Card is 4242 4242 4242 4242 and then some more text that follows."
    serve(provider, [*pieces(answer), chunk(0, None, "stop")])
    received: list[str] = []
    with cascadeflow.run(guardrails="support"):
        stream = sdk.chat.completions.create(model="gpt-4o-mini", messages=ASK, stream=True)  # type: ignore[call-overload]
        with pytest.raises(GuardrailBlocked):
            for c in stream:
                received.append(c.choices[0].delta.content or "")
        received += [c.choices[0].delta.content or "" for c in stream]
    assert "4242" not in "".join(received) and "follows" not in "".join(received)
    assert stream.response.is_closed
