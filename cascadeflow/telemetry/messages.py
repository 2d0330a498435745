"""Captured content in the GenAI conventions' form: `gen_ai.input.messages` and
`gen_ai.output.messages` are JSON arrays of `{"role", "parts": [...]}` (output messages with a
`finish_reason`), parts being `{"type": "text", "content"}`, `{"type": "tool_call", "id", "name",
"arguments"}` or `{"type": "tool_call_response", "id", "response"}`. Built on the background
worker, only when content capture is on; secrets are masked by the caller (`scrub`).
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from cascadeflow.usage import Usage, get

Message = dict[str, Any]


def input_messages(operation: str, prompt: Any, kwargs: dict[str, Any]) -> list[Message]:
    """The prompt of a chat, text completion, responses or embeddings call as messages."""
    if operation == "chat":
        return [_chat_message(m) for m in prompt or ()]
    if operation == "responses":
        out = [_text_message("system", kwargs["instructions"])] if kwargs.get("instructions") else []
        if isinstance(prompt, str):
            return [*out, _text_message("user", prompt)]
        return out + [_response_item(item) for item in prompt or ()]
    texts = [prompt] if isinstance(prompt, str) else [t for t in prompt or () if isinstance(t, str)]
    return [{"role": "user", "parts": [_text(t) for t in texts]}]  # text completion, embeddings


def output_messages(usage: Usage) -> list[Message]:
    """The answer (its first choice) as one assistant message."""
    parts = [_text(usage.text)] if usage.text else []
    parts += [_tool_call(call_id, name, arguments) for call_id, name, arguments in usage.calls]
    return [{"role": "assistant", "parts": parts, "finish_reason": usage.finish_reason or "error"}]


def _chat_message(message: Any) -> Message:
    role = str(get(message, "role") or "user")
    content = get(message, "content")
    if role == "tool":
        return {"role": role, "parts": [{"type": "tool_call_response", "id": get(message, "tool_call_id"),
                                         "response": content}]}
    parts = _content_parts(content)
    for call in get(message, "tool_calls") or ():
        function = get(call, "function")
        parts.append(_tool_call(get(call, "id"), str(get(function, "name") or ""),
                                get(function, "arguments")))
    return {"role": role, "parts": parts}


def _response_item(item: Any) -> Message:
    kind = get(item, "type")
    if kind == "function_call":
        return {"role": "assistant", "parts": [
            _tool_call(get(item, "call_id"), str(get(item, "name") or ""), get(item, "arguments"))]}
    if kind == "function_call_output":
        return {"role": "tool", "parts": [{"type": "tool_call_response", "id": get(item, "call_id"),
                                           "response": get(item, "output")}]}
    return {"role": str(get(item, "role") or "user"), "parts": _content_parts(get(item, "content"))}


def _content_parts(content: Any) -> list[dict[str, Any]]:
    """Text parts of a message's content: a string, or a list of parts (text kept, other
    modalities named by their type only)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [_text(content)]
    parts: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else [content]:
        if isinstance(part, str):
            parts.append(_text(part))
            continue
        text = get(part, "text")
        if isinstance(text, str):
            parts.append(_text(text))
        else:
            parts.append({"type": str(get(part, "type") or "unknown")})
    return parts


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "content": text}


def _text_message(role: str, text: Any) -> Message:
    return {"role": role, "parts": [_text(str(text))]}


def _tool_call(call_id: Any, name: str, arguments: Any) -> dict[str, Any]:
    """Arguments as the JSON object the model sent, or the raw text when it is not JSON."""
    if isinstance(arguments, str):
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments)
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}
