"""The library-neutral shapes every interceptor produces: `Request` in, `Usage` out.

Readers accept both objects (pydantic models of litellm and the openai SDK) and plain dicts,
so one function serves every client.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from cascadeflow import tokens

MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
# set while a cascade makes an attempt: the cascade chose the model, so policies must not switch it
attempting: ContextVar[bool] = ContextVar("cascadeflow_cascade_attempt", default=False)


@dataclass(slots=True)
class Request:
    """One intercepted call: what was asked, of whom, through which client."""

    operation: str  # chat | text_completion | embeddings | responses | tool
    client: str  # litellm | openai | tool
    model: str
    kwargs: dict[str, Any]
    provider: str | None = None
    args: tuple[Any, ...] = ()  # positional arguments to send as they came (the SDK resource)
    stream: bool = False
    api_base: str | None = None
    tool: str | None = None
    irreversible: bool = False
    reachable: tuple[str, ...] | None = None  # provider prefixes a switch may use; None = any
    pinned: bool = False  # a cascade attempt: the cascade chose the model, policies do not switch it
    _prompt_text: str | None = field(default=None, repr=False)

    @property
    def prompt(self) -> Any:
        """Messages, prompt or input, whichever the operation takes."""
        kw = self.kwargs
        if self.operation == "chat":
            return kw.get("messages")
        if self.operation == "text_completion":
            return kw.get("prompt")
        if self.operation == "responses":
            return kw.get("input")
        if self.operation == "embeddings":
            return kw.get("input")
        return None

    def prompt_text(self) -> str:
        """The prompt's text, computed once."""
        if self._prompt_text is None:
            prompt = self.prompt
            if self.operation == "responses" and self.kwargs.get("instructions"):
                prompt = [{"content": self.kwargs["instructions"]},
                          *(prompt if isinstance(prompt, list) else [{"content": prompt}])]
            self._prompt_text = tokens.message_text(prompt)
        return self._prompt_text

    @property
    def max_tokens(self) -> int | None:
        for key in MAX_TOKEN_KEYS:
            value = self.kwargs.get(key)
            if isinstance(value, int):
                return value
        return None

    @property
    def tools(self) -> list[Any]:
        tools = self.kwargs.get("tools")
        return list(tools) if isinstance(tools, list | tuple) else []

    def tool_names(self) -> list[str]:
        return [name for name in (tool_name(t) for t in self.tools) if name]


def tool_name(tool: Any) -> str | None:
    """Name of a tool definition in chat (`{"function": {"name"}}`) or responses (`{"name"}`) form."""
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function")
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):
        return str(fn["name"])
    name = tool.get("name")
    return name if isinstance(name, str) else None


@dataclass(slots=True)
class Usage:
    """What a finished call used and produced."""

    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    tool_calls: int = 0
    finish_reason: str | None = None
    model: str | None = None
    response_id: str | None = None
    estimated: bool = False
    text: str = ""


def get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or key, whichever the object has."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _int(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def read_usage(operation: str, response: Any) -> Usage:
    """Usage of a non-streamed response of any supported client."""
    usage = get(response, "usage")
    out = Usage(model=get(response, "model"), response_id=get(response, "id"))
    if operation == "responses":
        out.tokens_in = _int(get(usage, "input_tokens"))
        out.tokens_out = _int(get(usage, "output_tokens"))
        out.cached_tokens = _int(get(get(usage, "input_tokens_details"), "cached_tokens"))
        out.reasoning_tokens = _int(get(get(usage, "output_tokens_details"), "reasoning_tokens"))
        items = get(response, "output") or []
        out.tool_calls = sum(1 for item in items if get(item, "type") == "function_call")
        out.text = "".join(str(get(part, "text") or "") for item in items
                           for part in (get(item, "content") or ()))
        out.finish_reason = get(response, "status")
        return out
    out.tokens_in = _int(get(usage, "prompt_tokens"))
    out.tokens_out = _int(get(usage, "completion_tokens"))
    out.cached_tokens = _int(get(get(usage, "prompt_tokens_details"), "cached_tokens"))
    out.reasoning_tokens = _int(get(get(usage, "completion_tokens_details"), "reasoning_tokens"))
    out.cache_write_tokens = _int(get(usage, "cache_creation_input_tokens"))
    choices = get(response, "choices") or []
    if choices:
        first = choices[0]
        out.finish_reason = get(first, "finish_reason")
        message = get(first, "message")
        out.text = str((get(message, "content") if message is not None else get(first, "text")) or "")
        for choice in choices:
            calls = get(get(choice, "message"), "tool_calls")
            out.tool_calls += len(calls) if calls else 0
    return out


class StreamAccumulator:
    """Collects what a stream delivered so the step can be settled however the stream ends."""

    __slots__ = ("chunks", "operation", "parts", "tool_args", "tool_ids", "usage", "usage_reported")

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.parts: list[str] = []
        self.tool_args: list[str] = []
        self.tool_ids: set[Any] = set()
        self.usage = Usage()
        self.chunks = 0
        self.usage_reported = False

    def add(self, chunk: Any) -> None:
        self.chunks += 1
        usage = self.usage
        model = get(chunk, "model")
        if model:
            usage.model = model
        if usage.response_id is None:
            usage.response_id = get(chunk, "id")
        if self.operation == "responses":
            self._add_event(chunk)
            return
        reported = get(chunk, "usage")
        if reported is not None and get(reported, "prompt_tokens") is not None:
            usage.tokens_in = _int(get(reported, "prompt_tokens"))
            usage.tokens_out = _int(get(reported, "completion_tokens"))
            usage.cached_tokens = _int(get(get(reported, "prompt_tokens_details"), "cached_tokens"))
            usage.reasoning_tokens = _int(get(get(reported, "completion_tokens_details"),
                                              "reasoning_tokens"))
            self.usage_reported = True
        for choice in get(chunk, "choices") or ():
            if self.operation == "text_completion":
                text = get(choice, "text")
            else:
                delta = get(choice, "delta")
                text = get(delta, "content")
                for call in get(delta, "tool_calls") or ():
                    key = (get(choice, "index", 0), get(call, "index", 0))
                    self.tool_ids.add(key)
                    args = get(get(call, "function"), "arguments")
                    if args:
                        self.tool_args.append(args)
            if text:
                self.parts.append(text)
            reason = get(choice, "finish_reason")
            if reason:
                usage.finish_reason = reason

    def _add_event(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "response.output_text.delta":
            self.parts.append(get(event, "delta") or "")
        elif kind in ("response.completed", "response.incomplete"):
            final = read_usage("responses", get(event, "response"))
            final.text = ""
            self.usage = final
            self.usage_reported = True

    def finish(self, request: Request) -> Usage:
        """The usage: as reported by the stream, else counted with tiktoken and marked estimated."""
        usage = self.usage
        usage.text = "".join(self.parts)
        usage.tool_calls = max(usage.tool_calls, len(self.tool_ids))
        if self.usage_reported:
            return usage
        model = usage.model or request.model
        usage.tokens_in = tokens.count(request.prompt_text(), model) + tokens.message_overhead(
            request.prompt)
        usage.tokens_out = tokens.count(usage.text + "".join(self.tool_args), model)
        usage.estimated = True
        return usage
