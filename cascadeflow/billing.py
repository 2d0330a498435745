"""What a request can be billed for, at most: the pre-flight worst case of the budget rule.

Providers bill more than the message text: tool schemas, `response_format` schemas, images and
the chat format's overhead all count as input, and `n` choices multiply the output. A budget
that counts less than the bill can be overrun by one call, so every part is bounded here:

- text (messages, instructions, tool-call arguments and results, schemas): its UTF-8 length, a
  bound no byte-level BPE token count can exceed; or, when that bound does not fit the budget,
  the tiktoken count plus a per-item margin;
- images: the most the model's documented rule can charge for one image (`IMAGE_TOKENS`);
- audio and files, which have no bound short of the model's context window: that window;
- and never more than the context window (one per input of an embeddings batch, each billed on
  its own), which caps what any request can be billed for.

`None` means no bound exists (an audio part for a model whose window is unknown): the budget
rule then follows the `unknown_price` setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cascadeflow import tokens
from cascadeflow.request import PROMPT_KEYS, Request, in_body

TOOL_OVERHEAD = 12  # tokens a tool or response_format schema adds around its JSON (wrapper, separators)
ITEM_MARGIN = 1  # per message, above the recipe's overhead: a bound must never undercount
# The most one image can cost, in input tokens, by model family (bare-name prefixes, first match
# wins). OpenAI's tile rule (`detail: high`, scaled to fit 2048x2048, then 768 on the short side:
# at most 2x4 tiles): gpt-4o 85 + 8 x 170; gpt-4o-mini 2833 + 8 x 5667. Patch-based models
# (gpt-4.1-mini/nano, o4-mini): 1536 patches times the model's multiplier. Anthropic: about
# 1600 per image at its 1.15 megapixel limit; Gemini: 258 per image (larger ones are tiled,
# bounded by the window). Unknown families get the largest of these.
IMAGE_TOKENS: tuple[tuple[str, int], ...] = (
    ("gpt-4o-mini", 2833 + 8 * 5667),
    ("gpt-4.1-nano", 3799),  # 1536 x 2.46
    ("gpt-4.1-mini", 2489),  # 1536 x 1.62
    ("o4-mini", 2642),  # 1536 x 1.72
    ("gpt-4o", 85 + 8 * 170),
    ("gpt-4.1", 85 + 8 * 170),
    ("gpt-4.5", 85 + 8 * 170),
    ("gpt-5", 70 + 8 * 140),
    ("o1", 75 + 8 * 150),
    ("o3", 75 + 8 * 150),
    ("claude", 1600),
)
IMAGE_TOKENS_UNKNOWN = max(n for _, n in IMAGE_TOKENS)
_IMAGE_PARTS = frozenset({"image_url", "input_image", "image"})
_OPAQUE_PARTS = frozenset({"input_audio", "audio", "file", "input_file", "document"})
_TEXT_KEYS = ("text", "output", "arguments", "refusal", "summary")  # text-bearing keys of parts/items
# request keys holding schemas billed as input (`text_format`: the SDK's `responses.parse`)
_SCHEMA_KEYS = frozenset({"tools", "functions", "response_format", "text", "text_format"})


@dataclass(slots=True)
class Shape:
    """The billable parts of a request's input."""

    texts: list[str] = field(default_factory=list)  # every piece of text billed as input
    items: int = 0  # messages or input items: each adds the chat format's overhead
    schemas: int = 0  # tool and response_format schemas: each adds its wrapper
    images: int = 0
    opaque: int = 0  # audio and files: bounded only by the context window


def image_tokens(model: str) -> int:
    """The most one image part can cost `model` (see `IMAGE_TOKENS`)."""
    bare = model.rsplit("/", 1)[-1].lower()
    for prefix, most in IMAGE_TOKENS:
        if bare.startswith(prefix):
            return most
    return IMAGE_TOKENS_UNKNOWN


def plain(request: Request) -> bool:
    """True for the usual request: chat messages that are plain text, no tools or schemas.
    Its bound is the prompt's text alone, which `Request.input_bound` computes for free."""
    kwargs = request.kwargs
    if not _SCHEMA_KEYS.isdisjoint(kwargs) or request.stored_tokens:
        return False
    prompt = kwargs.get(PROMPT_KEYS.get(request.operation, ""))
    if type(prompt) is list:
        for message in prompt:
            if type(message) is not dict or type(message.get("content")) is not str \
                    or "tool_calls" in message:
                return False
        return request.operation != "responses"
    return prompt is None or isinstance(prompt, str)


def shape(request: Request) -> Shape:
    """Walk everything the provider bills as input."""
    out = Shape()
    kwargs = request.kwargs
    if request.operation == "responses" and isinstance(kwargs.get("instructions"), str):
        out.texts.append(kwargs["instructions"])
        out.items += 1
    prompt = request.prompt
    if isinstance(prompt, str):
        out.texts.append(prompt)
        out.items += 1
    elif isinstance(prompt, list | tuple):
        for item in prompt:
            out.items += 1
            _walk(item, out)
    elif prompt is not None:
        out.items += 1
        _walk(prompt, out)
    for key in ("tools", "functions"):
        for tool in kwargs.get(key) or ():
            out.texts.append(_json(tool))
            out.schemas += 1
    text = kwargs.get("text")
    for schema in (kwargs.get("response_format"), kwargs.get("text_format"),
                   text.get("format") if isinstance(text, dict) else None):
        if schema:  # (the SDK's helpers pass its falsy `omit` for arguments not given)
            out.texts.append(_json(schema))
            out.schemas += 1
    return out


def _walk(item: Any, out: Shape) -> None:
    """One message, input item or content part (dict or SDK object)."""
    if isinstance(item, str):
        out.texts.append(item)
        return
    data = item if isinstance(item, dict) else _as_dict(item)
    if data is None:
        out.texts.append(str(item))
        return
    kind = data.get("type")
    if kind in _IMAGE_PARTS:
        out.images += 1
        return
    if kind in _OPAQUE_PARTS:
        out.opaque += 1
        return
    content = data.get("content")
    if isinstance(content, str):
        out.texts.append(content)
    elif isinstance(content, list | tuple):
        for part in content:
            _walk(part, out)
    for key in _TEXT_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            out.texts.append(value)
        elif isinstance(value, list | tuple):
            for part in value:
                _walk(part, out)
    legacy = data.get("function_call")  # an assistant's call in the legacy form, sent back
    for call in [*(data.get("tool_calls") or ()), *([{"function": legacy}] if legacy else [])]:
        call_data = call if isinstance(call, dict) else _as_dict(call) or {}
        fn = call_data.get("function") or {}
        fn_data = fn if isinstance(fn, dict) else _as_dict(fn) or {}
        out.texts.append(str(fn_data.get("name", "")) + str(fn_data.get("arguments", "")))
    if isinstance(data.get("name"), str) and kind == "function_call":
        out.texts.append(data["name"])


def _as_dict(obj: Any) -> dict[str, Any] | None:
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        found = dump()
        return found if isinstance(found, dict) else None
    return None


def _json(value: Any) -> str:
    """A schema as JSON with the usual spaces after `,` and `:` (a provider that renders it so
    bills more tokens than for compact JSON, which tokenizes shorter); a pydantic model class
    (the SDK's `parse`) by its JSON schema."""
    schema = getattr(value, "model_json_schema", None)
    if callable(schema):
        value = schema()
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def input_tokens(request: Request, model: str, window: int | None, exact: bool, margin: bool = True
                 ) -> int | None:
    """The most the request's input can be billed, in tokens; None when nothing bounds it.

    `exact=False` is free (UTF-8 lengths); `exact=True` counts with tiktoken (for providers
    whose tokenizer it knows) plus the same margins, a tighter bound that still never undercounts.
    `margin=False` leaves the margins out: an estimate of the bill, not a bound (streams whose
    provider reports no usage).
    """
    if window is not None:
        window *= inputs(request)  # (an embeddings batch: every input up to the window)
    if plain(request):
        if not exact:
            most = request.input_bound()
            return most if window is None or most < window else window
        prompt = request.prompt
        most = request.prompt_tokens(model) + tokens.message_overhead(prompt)
        if margin:
            most += ITEM_MARGIN * (len(prompt) if isinstance(prompt, list | tuple) else 1)
        return most if window is None else min(most, window)
    extra = ITEM_MARGIN if margin else 0
    schema = TOOL_OVERHEAD if margin else 0
    found = shape(request)
    if found.opaque:
        return window
    if exact:
        text = sum(tokens.count(t, model) for t in found.texts)
    else:
        text = sum(tokens.upper_bound(t) for t in found.texts)
    most = (text + found.items * (tokens.MESSAGE_OVERHEAD + extra) + tokens.REPLY_PRIMING
            + found.schemas * schema + found.images * image_tokens(model) + (request.stored_tokens or 0))
    return most if window is None else min(most, window)


def inputs(request: Request) -> int:
    """How many inputs the request is billed for, each up to the context window: an embeddings
    call embeds each item of a list (strings, or lists of token ids) on its own, and a text
    completion answers each prompt of a list on its own; otherwise 1."""
    if request.operation not in ("embeddings", "text_completion"):
        return 1
    prompt = request.prompt
    if isinstance(prompt, list | tuple) and prompt and not isinstance(prompt[0], int):
        return len(prompt)
    return 1


def choices(request: Request) -> int:
    """How many answers are billed as output: `n`, or a text completion's `best_of` (the
    provider writes that many and returns the best `n`, billing them all), for each prompt of
    a text completion's list."""
    most = 1
    for key in ("n", "best_of"):  # (also in `extra_body`, which the provider receives the same)
        value = in_body(request.kwargs, key)
        if isinstance(value, int) and not isinstance(value, bool) and value > most:
            most = value
    return most * inputs(request) if request.operation == "text_completion" else most


def service_tier(request: Request) -> str | None:
    """`priority` when the request asks for it (in `extra_body` or as the argument), which the
    provider bills higher; else None: the standard prices bound the call (a cheaper tier's
    call may be served, and billed, at the standard one)."""
    return "priority" if in_body(request.kwargs, "service_tier", str) == "priority" else None
