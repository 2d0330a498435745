"""Deterministic OpenAI-shaped bodies for the built-in provider: chat, text, responses, embeddings."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cascadeflow import tokens
from cascadeflow.testing import bill


@dataclass
class Reply:
    """A canned answer: used for requests whose prompt contains `when` (and model, if given)."""

    content: str | None = None
    when: str | None = None
    model: str | None = None
    tool_call: tuple[str, dict[str, Any]] | None = None
    finish_reason: str | None = None
    times: int | None = None
    reasoning: str | None = None  # the message's `reasoning_content`, as reasoning models return it

    def matches(self, model: str, prompt: str) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.model is not None and self.model != model:
            return False
        return self.when is None or self.when in prompt


@dataclass
class Answer:
    """What the server will say: text or one tool call, with the usage it reports."""

    text: str
    tool_call: tuple[str, str] | None  # (name, JSON arguments)
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int  # for all choices together
    cached_tokens: int
    choices: int = 1
    legacy: bool = False  # the request offered `functions` (the chat API's legacy form of tools)
    reasoning: str | None = None  # a chat answer's `reasoning_content`


def _schema_args(schema: dict[str, Any], hint: str) -> dict[str, Any]:
    """Arguments that satisfy a JSON schema's required properties, made from the prompt."""
    props = schema.get("properties", {}) if isinstance(schema, dict) else {}
    out: dict[str, Any] = {}
    for key in schema.get("required", list(props)) if isinstance(schema, dict) else []:
        kind = props.get(key, {}).get("type", "string")
        out[key] = {"string": hint[:80] or key, "integer": 1, "number": 1.0, "boolean": True,
                    "array": [], "object": {}}.get(kind, hint[:80])
    return out


def _default_text(model: str, prompt: str) -> str:
    words = prompt.split()
    snippet = " ".join(words[-12:]) if words else "(empty prompt)"
    return f"Reply from {model}: received {len(words)} words, ending with \"{snippet}\"."


def answer(model: str, messages: Any, kwargs: dict[str, Any], replies: list[Reply],
           seen_prefixes: set[tuple[str, str]]) -> Answer:
    """Decide the reply: a matching canned one, a tool call when tools are offered, or default text."""
    prompt = tokens.message_text(messages)
    last_user = _last_user_text(messages) or prompt
    prompt_tokens = bill.input_tokens(model, messages, kwargs)
    cached = 0
    if isinstance(messages, list) and len(messages) > 1:
        first = tokens.message_text(messages[:1])
        key = (model, first)
        if key in seen_prefixes:
            cached = tokens.count(first, model)
        seen_prefixes.add(key)
    rule = next((r for r in replies if r.matches(model, prompt)), None)
    if rule is not None and rule.times is not None:
        rule.times -= 1
    tool_call: tuple[str, str] | None = None
    text = ""
    finish = "stop"
    if rule is not None and rule.tool_call is not None:
        tool_call = (rule.tool_call[0], json.dumps(rule.tool_call[1]))
    elif rule is not None:
        text = rule.content or ""
    elif _wants_tool(messages, kwargs):
        fn = _pick_tool(kwargs, messages)
        tool_call = (fn.get("name", "tool"), json.dumps(_schema_args(fn.get("parameters", {}), last_user)))
    elif (schema := _wanted_schema(kwargs)) is not None:
        text = json.dumps(_schema_args(schema, last_user))
    else:
        text = _default_text(model, last_user)
    if tool_call is not None:
        finish = "function_call" if _legacy(kwargs) else "tool_calls"
    limit = kwargs.get("max_tokens") or kwargs.get("max_completion_tokens") or kwargs.get(
        "max_output_tokens")
    billed: int | None = None  # an answer cut at the limit is billed the whole limit, as OpenAI
    # bills it (the text handed back ends at a word, so counting it billed less)
    if text and isinstance(limit, int) and tokens.count(text, model) > limit:
        enc_text = text.split(" ")
        while enc_text and tokens.count(" ".join(enc_text), model) > limit:
            enc_text.pop()
        text = " ".join(enc_text)
        finish, billed = "length", limit
    if rule is not None and rule.finish_reason:
        finish = rule.finish_reason
    n = kwargs.get("n")
    n = n if isinstance(n, int) and n > 1 else 1
    if billed is None:
        billed = tokens.count(text + (tool_call[1] if tool_call else ""), model)
    out_tokens = billed * n
    return Answer(text, tool_call, finish, prompt_tokens, out_tokens, cached, n, _legacy(kwargs),
                  rule.reasoning if rule is not None else None)


def _wanted_schema(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of a structured-output request (chat `response_format` or responses
    `text.format`), whose answer must be JSON that fits it."""
    fmt = kwargs.get("response_format")
    if fmt is None and isinstance(kwargs.get("text"), dict):
        fmt = kwargs["text"].get("format")
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema":
        return None
    schema = fmt.get("json_schema", fmt).get("schema")
    return schema if isinstance(schema, dict) else {}


def _last_user_text(messages: Any) -> str:
    if isinstance(messages, str):
        return messages
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in ("user", None):
            return tokens.message_text([message])
    return ""


def _legacy(kwargs: dict[str, Any]) -> bool:
    """The request offers `functions` and no `tools`: the answer is a legacy `function_call`."""
    return bool(kwargs.get("functions")) and not kwargs.get("tools")


def _wants_tool(messages: Any, kwargs: dict[str, Any]) -> bool:
    """Call a tool when tools are offered, unless the turn answers a tool result (then text),
    or the request forces one (`tool_choice` "required" or named), as output tools do."""
    choice = kwargs.get("function_call") if _legacy(kwargs) else kwargs.get("tool_choice")
    if not (kwargs.get("tools") or _legacy(kwargs)) or choice == "none":
        return False
    if choice == "required" or isinstance(choice, dict):
        return True
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        last = messages[-1]
        return last.get("role") not in ("tool", "function") and last.get("type") != "function_call_output"
    return True


def _called(messages: Any) -> set[str]:
    """Names of the tools already called in the conversation (chat or responses items)."""
    names: set[str] = set()
    for message in messages if isinstance(messages, list) else ():
        if not isinstance(message, dict):
            continue
        if message.get("type") == "function_call":
            names.add(str(message.get("name")))
        for call in message.get("tool_calls") or ():
            if isinstance(call, dict):
                names.add(str((call.get("function") or {}).get("name")))
        if isinstance(message.get("function_call"), dict):  # the legacy form
            names.add(str(message["function_call"].get("name")))
    return names


def _pick_tool(kwargs: dict[str, Any], messages: Any = None) -> dict[str, Any]:
    """The named tool; else the first not called yet in the conversation; else the last."""
    offered = kwargs.get("functions") if _legacy(kwargs) else kwargs.get("tools")
    tools = [item.get("function", item) for item in offered or [] if isinstance(item, dict)]
    choice = kwargs.get("function_call") if _legacy(kwargs) else kwargs.get("tool_choice")
    if isinstance(choice, dict):
        wanted = (choice.get("function") or choice).get("name")
        for fn in tools:
            if fn.get("name") == wanted:
                return dict(fn)
    called = _called(messages)
    fresh = [fn for fn in tools if fn.get("name") not in called]
    if fresh:
        return dict(fresh[0])
    return dict(tools[-1]) if tools else {"name": "tool", "parameters": {}}


def _usage(a: Answer) -> dict[str, Any]:
    return {"prompt_tokens": a.prompt_tokens, "completion_tokens": a.completion_tokens,
            "total_tokens": a.prompt_tokens + a.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": a.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def chat_body(model: str, a: Answer, rid: str) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": a.text or None}
    if a.reasoning:
        message["reasoning_content"] = a.reasoning
    if a.tool_call and a.legacy:
        message["function_call"] = {"name": a.tool_call[0], "arguments": a.tool_call[1]}
    elif a.tool_call:
        message["tool_calls"] = [{"id": f"call_{rid[-12:]}", "type": "function",
                                  "function": {"name": a.tool_call[0], "arguments": a.tool_call[1]}}]
    return {"id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_cascadeflow",
            "choices": [{"index": i, "message": message, "logprobs": None,
                         "finish_reason": a.finish_reason} for i in range(a.choices)],
            "usage": _usage(a)}


def chat_chunks(model: str, a: Answer, rid: str, include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_cascadeflow"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                    "logprobs": None, "finish_reason": None}]}]
    if a.tool_call and a.legacy:
        name, args = a.tool_call
        chunks.append({**base, "choices": [{"index": 0, "logprobs": None, "finish_reason": None,
                                            "delta": {"function_call": {"name": name, "arguments": ""}}}]})
        for piece in _pieces(args):
            chunks.append({**base, "choices": [{"index": 0, "logprobs": None, "finish_reason": None,
                                                "delta": {"function_call": {"arguments": piece}}}]})
    elif a.tool_call:
        name, args = a.tool_call
        chunks.append({**base, "choices": [{"index": 0, "logprobs": None, "finish_reason": None,
                                            "delta": {"tool_calls": [{"index": 0, "id": f"call_{rid[-12:]}",
                                                                      "type": "function",
                                                                      "function": {"name": name,
                                                                                   "arguments": ""}}]}}]})
        for piece in _pieces(args):
            chunks.append({**base, "choices": [{"index": 0, "logprobs": None, "finish_reason": None,
                                                "delta": {"tool_calls": [{"index": 0, "function": {
                                                    "arguments": piece}}]}}]})
    for piece in _pieces(a.reasoning or ""):  # a reasoning model thinks aloud before it answers
        chunks.append({**base, "choices": [{"index": 0, "delta": {"reasoning_content": piece},
                                            "logprobs": None, "finish_reason": None}]})
    for piece in _pieces(a.text):
        chunks.append({**base, "choices": [{"index": 0, "delta": {"content": piece}, "logprobs": None,
                                            "finish_reason": None}]})
    chunks.append({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                        "finish_reason": a.finish_reason}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _usage(a)})
    return chunks


def text_body(model: str, answers: list[Answer], rid: str) -> dict[str, Any]:
    """A text completion: `n` choices per prompt (a list of prompts is answered prompt by
    prompt, as the Completions API does, the choices of prompt k at indexes k*n to k*n+n-1),
    the usage of them all."""
    return {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
            "choices": [{"text": a.text, "index": i, "logprobs": None, "finish_reason": a.finish_reason}
                        for i, a in _text_choices(answers)],
            "usage": _summed(answers)}


def _text_choices(answers: list[Answer]) -> list[tuple[int, Answer]]:
    """Each choice's index and the answer it repeats: every prompt's answer `n` times."""
    return list(enumerate(a for a in answers for _ in range(a.choices)))


def text_chunks(model: str, answers: list[Answer], rid: str, include_usage: bool) -> list[dict[str, Any]]:
    base = {"id": rid, "object": "text_completion", "created": int(time.time()), "model": model}
    chunks = []
    for i, a in _text_choices(answers):
        chunks += [{**base, "choices": [{"text": p, "index": i, "logprobs": None, "finish_reason": None}]}
                   for p in _pieces(a.text)]
        chunks.append({**base, "choices": [{"text": "", "index": i, "logprobs": None,
                                            "finish_reason": a.finish_reason}]})
    if include_usage:
        chunks.append({**base, "choices": [], "usage": _summed(answers)})
    return chunks


def _summed(answers: list[Answer]) -> dict[str, Any]:
    """The usage of several answers billed as one response."""
    usage = _usage(answers[0])
    for a in answers[1:]:
        more = _usage(a)
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            usage[key] += more[key]
        usage["prompt_tokens_details"]["cached_tokens"] += a.cached_tokens
    return usage


def responses_body(model: str, a: Answer, rid: str) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if a.tool_call:
        output.append({"type": "function_call", "id": f"fc_{rid[-12:]}", "call_id": f"call_{rid[-12:]}",
                       "name": a.tool_call[0], "arguments": a.tool_call[1], "status": "completed"})
    else:
        output.append({"type": "message", "id": f"msg_{rid[-12:]}", "status": "completed",
                       "role": "assistant",
                       "content": [{"type": "output_text", "text": a.text, "annotations": []}]})
    return {"id": rid, "object": "response", "created_at": int(time.time()), "model": model,
            "status": "completed" if a.finish_reason != "length" else "incomplete",
            "output": output, "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
            "usage": {"input_tokens": a.prompt_tokens, "output_tokens": a.completion_tokens,
                      "total_tokens": a.prompt_tokens + a.completion_tokens,
                      "input_tokens_details": {"cached_tokens": a.cached_tokens},
                      "output_tokens_details": {"reasoning_tokens": 0}}}


def compacted_body(model: str, a: Answer, rid: str, messages: Any) -> dict[str, Any]:
    """`responses.compact`: the user messages kept, then one compaction item."""
    kept = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"] \
        if isinstance(messages, list) else [{"role": "user", "content": str(messages or "")}]
    output = [{"type": "message", "id": f"msg_{i}", "role": "user", "status": "completed",
               "content": [{"type": "input_text", "text": tokens.message_text([m])}]}
              for i, m in enumerate(kept)]
    output.append({"type": "compaction", "id": f"cmp_{rid[-12:]}",
                   "encrypted_content": base64.b64encode(a.text.encode()).decode()})
    body = responses_body(model, a, rid)
    return {"id": rid, "object": "response.compaction", "created_at": body["created_at"],
            "output": output, "usage": body["usage"]}


def responses_events(model: str, a: Answer, rid: str) -> list[dict[str, Any]]:
    """The Responses API's event sequence, as the SDK's stream helpers expect it."""
    final = responses_body(model, a, rid)
    item = final["output"][0]
    events: list[dict[str, Any]] = []

    def add(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    add("response.created", response={**final, "status": "in_progress", "output": []})
    add("response.in_progress", response={**final, "status": "in_progress", "output": []})
    if item["type"] == "function_call":
        add("response.output_item.added", output_index=0, item={**item, "arguments": "",
                                                                 "status": "in_progress"})
        for piece in _pieces(item["arguments"]):
            add("response.function_call_arguments.delta", item_id=item["id"], output_index=0,
                delta=piece)
        add("response.function_call_arguments.done", item_id=item["id"], output_index=0,
            arguments=item["arguments"], name=item["name"])
    else:
        add("response.output_item.added", output_index=0, item={**item, "content": [],
                                                                 "status": "in_progress"})
        add("response.content_part.added", item_id=item["id"], output_index=0, content_index=0,
            part={"type": "output_text", "text": "", "annotations": []})
        for piece in _pieces(a.text):
            add("response.output_text.delta", item_id=item["id"], output_index=0, content_index=0,
                delta=piece, logprobs=[])
        add("response.output_text.done", item_id=item["id"], output_index=0, content_index=0,
            text=a.text, logprobs=[])
        add("response.content_part.done", item_id=item["id"], output_index=0, content_index=0,
            part=item["content"][0])
    add("response.output_item.done", output_index=0, item=item)
    add("response.completed", response=final)
    return events


def embedding_body(model: str, inputs: Any, dimensions: int, encoding: str | None) -> dict[str, Any]:
    items = inputs if isinstance(inputs, list) else [inputs]
    data = []
    total = 0
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else json.dumps(item)
        total += tokens.count(text, model)
        digest = hashlib.sha256(text.encode()).digest()
        vector = [((digest[i % len(digest)] / 255.0) * 2 - 1) for i in range(dimensions)]
        if encoding == "base64":
            packed = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": packed})
        else:
            data.append({"object": "embedding", "index": index, "embedding": vector})
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": total, "total_tokens": total}}


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]
