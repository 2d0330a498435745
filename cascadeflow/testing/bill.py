"""How the built-in provider bills input, the way OpenAI documents it (written apart from
`cascadeflow.billing`, which must bound this bill from above without sharing its code).

- messages: the text's tokens, 3 per message and 3 to prime the reply;
- tool schemas: rendered as OpenAI renders functions for the model (a TypeScript-like
  `namespace functions { type name = (_: {...}) => any; }` block) and counted;
- `response_format` / `text.format` JSON schemas: counted as JSON;
- images: the tile rule. `detail: low` costs the base; otherwise the image is scaled to fit
  2048x2048, then its short side to 768, and each 512 px tile costs the per-tile rate. The size
  is read from a PNG data URL; other images are taken as 2048x2048. gpt-4o-mini bills images at
  its own (higher) rates, as OpenAI does.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from typing import Any

from cascadeflow import tokens

PER_MESSAGE = 3  # OpenAI's recipe for current chat models
PRIMING = 3
RATES = {"gpt-4o-mini": (2833, 5667)}  # (base, per tile); others: (85, 170)


def input_tokens(model: str, messages: Any, body: dict[str, Any]) -> int:
    """The prompt tokens the provider reports for this request."""
    if "prompt" in body and "messages" not in body and "input" not in body:
        # a legacy text completion bills its prompt's own tokens: no chat framing around it
        parts = messages if isinstance(messages, list) else [messages]
        return sum(1 if isinstance(p, int) else tokens.count(p, model) if isinstance(p, str) else 0
                   for p in parts)
    total = PRIMING
    items = messages if isinstance(messages, list) else [] if messages is None else [messages]
    for item in items:
        total += PER_MESSAGE + _item(model, item)
    tools = body.get("tools") or body.get("functions") or []  # (`functions`: the legacy form)
    if tools:
        total += tokens.count(_render_tools(tools), model)
    fmt = body.get("response_format")
    text = body.get("text")
    if fmt is None and isinstance(text, dict):
        fmt = text.get("format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        total += tokens.count(json.dumps(fmt.get("json_schema", fmt).get("schema", {})), model)
    return total


def _item(model: str, item: Any) -> int:
    if isinstance(item, str):
        return tokens.count(item, model)
    if not isinstance(item, dict):
        return 0
    total = 0
    kind = item.get("type")
    if kind in ("image_url", "input_image"):
        return _image(model, item)
    for key in ("text", "output", "arguments"):
        if isinstance(item.get(key), str):
            total += tokens.count(item[key], model)
    content = item.get("content")
    if isinstance(content, str):
        total += tokens.count(content, model)
    elif isinstance(content, list):
        total += sum(_item(model, part) for part in content)
    calls = [call.get("function") for call in item.get("tool_calls") or () if isinstance(call, dict)]
    for fn in [*calls, item.get("function_call")]:  # (`function_call`: the legacy form)
        if isinstance(fn, dict):
            total += tokens.count(str(fn.get("name", "")) + str(fn.get("arguments", "")), model)
    return total


def _image(model: str, part: dict[str, Any]) -> int:
    source = part.get("image_url")
    detail = part.get("detail", "auto")
    if isinstance(source, dict):
        detail = source.get("detail", detail)
        source = source.get("url")
    bare = model.rsplit("/", 1)[-1]
    base, tile = next((rate for prefix, rate in RATES.items() if bare.startswith(prefix)), (85, 170))
    if detail == "low":
        return base
    size = _png_size(source) or (2048, 2048)
    scale = min(1.0, 2048 / max(size))
    width, height = size[0] * scale, size[1] * scale
    scale = min(1.0, 768 / min(width, height))
    return base + tile * math.ceil(width * scale / 512) * math.ceil(height * scale / 512)


def _png_size(url: Any) -> tuple[int, int] | None:
    if not isinstance(url, str) or not url.startswith("data:image/png;base64,"):
        return None
    try:
        head = base64.b64decode(url.split(",", 1)[1][:64] + "==")[:24]
        width, height = struct.unpack(">II", head[16:24])
    except (ValueError, struct.error):
        return None
    return int(width), int(height)


def _render_tools(tools: list[Any]) -> str:
    lines = ["namespace functions {"]
    for tool in tools:
        fn = tool.get("function", tool) if isinstance(tool, dict) else {}
        if fn.get("description"):
            lines.append(f"// {fn['description']}")
        params = fn.get("parameters") or {}
        props = params.get("properties") or {}
        fields = []
        for name, spec in props.items():
            if isinstance(spec, dict) and spec.get("description"):
                fields.append(f"// {spec['description']}")
            kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
            enum = spec.get("enum") if isinstance(spec, dict) else None
            if enum:
                kind = " | ".join(json.dumps(v) for v in enum)
            fields.append(f"{name}: {kind},")
        body = "\n".join(fields)
        lines.append(f"type {fn.get('name', 'tool')} = (_: {{\n{body}\n}}) => any;")
    lines.append("} // namespace functions")
    return "\n".join(lines)
