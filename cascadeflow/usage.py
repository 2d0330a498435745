"""What a finished call used and produced, read from any supported client's response or stream.

Readers accept the pydantic models of litellm and the openai SDK and plain dicts. Fields are read
from the object's `__dict__` first: a missing attribute on a pydantic model goes through its
`__getattr__`, which costs microseconds to build the error it then discards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cascadeflow import billing, tokens
from cascadeflow.request import Request

_MISSING = object()
ToolCall = tuple[str | None, str, str]  # (call id, function name, JSON arguments) as the model sent them
_ON_CLASS: dict[tuple[type, str], bool] = {}  # does the class define `name` (a property)?


@dataclass(slots=True)
class Usage:
    tokens_in: int = 0
    tokens_out: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cache_write_tokens: int = 0
    audio_tokens_in: int = 0  # of tokens_in, audio (priced apart)
    audio_tokens_out: int = 0  # of tokens_out, audio
    service_tier: str | None = None  # as the response reports it (`priority` is billed higher)
    tool_calls: int = 0
    tool_names: tuple[str, ...] = ()  # of the tool calls, where the response names them
    calls: tuple[ToolCall, ...] = ()  # the first choice's tool calls: (id, name, arguments)
    finish_reason: str | None = None
    model: str | None = None
    response_id: str | None = None
    estimated: bool = False
    text: str = ""
    reasoning_text: str = ""  # a stream's `reasoning_content` deltas (reasoning models), for output rules
    # a stream's texts as output rules judge them, each on its own: each choice's text and
    # reasoning, each responses text part; and each tool call's arguments (of every choice)
    texts: tuple[str, ...] = ()
    arguments: tuple[str, ...] = ()


def get(obj: Any, name: str, default: Any = None) -> Any:
    """Attribute or key, whichever the object has, without a failing `__getattr__`."""
    if obj is None:
        return default
    if isinstance(obj, dict):
        return obj.get(name, default)
    try:
        fields = obj.__dict__
    except AttributeError:  # slotted objects
        return getattr(obj, name, default)
    value = fields.get(name, _MISSING)
    if value is not _MISSING:
        return value
    extra = getattr(obj, "__pydantic_extra__", None)
    if extra and name in extra:
        return extra[name]
    cls = type(obj)
    defined = _ON_CLASS.get((cls, name))
    if defined is None:
        defined = _ON_CLASS[(cls, name)] = any(name in vars(k) for k in cls.__mro__)
    return getattr(obj, name, default) if defined else default


def fields(obj: Any) -> dict[str, Any]:
    """The attributes of a response object as one dict: a plain dict as it is, a pydantic model's
    fields with its extra fields (litellm keeps `usage` there). Missing keys are absent."""
    if isinstance(obj, dict):
        return obj
    try:
        found: dict[str, Any] = obj.__dict__
    except AttributeError:  # slotted objects: read the names a response can have
        return {n: v for n in _NAMES if (v := getattr(obj, n, _MISSING)) is not _MISSING}
    extra = getattr(obj, "__pydantic_extra__", None)
    return {**found, **extra} if extra else found


_NAMES = ("id", "model", "usage", "choices", "message", "content", "text", "tool_calls", "function_call",
          "finish_reason", "prompt_tokens", "completion_tokens", "prompt_tokens_details",
          "completion_tokens_details", "cached_tokens", "reasoning_tokens", "audio_tokens", "service_tier",
          "cache_creation_input_tokens")


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int:
    return value if type(value) is int else int(value) if isinstance(value, float) else 0


def read_usage(operation: str, response: Any) -> Usage:
    """Usage of a non-streamed response of any supported client."""
    if operation == "responses":
        return _responses_usage(response)
    r = fields(response)
    out = Usage(model=r.get("model"), response_id=r.get("id"), service_tier=_str(r.get("service_tier")))
    usage = r.get("usage")
    if usage is not None:
        u = fields(usage)
        out.tokens_in = _int(u.get("prompt_tokens"))
        out.tokens_out = _int(u.get("completion_tokens"))
        details = u.get("prompt_tokens_details")
        if details is not None:
            out.cached_tokens = _int(fields(details).get("cached_tokens"))
            out.audio_tokens_in = _int(fields(details).get("audio_tokens"))
        details = u.get("completion_tokens_details")
        if details is not None:
            out.reasoning_tokens = _int(fields(details).get("reasoning_tokens"))
            out.audio_tokens_out = _int(fields(details).get("audio_tokens"))
        out.cache_write_tokens = _int(u.get("cache_creation_input_tokens"))
    choices = r.get("choices")
    if choices:
        first = fields(choices[0])
        out.finish_reason = first.get("finish_reason")
        message = first.get("message")
        if message is not None:
            m = fields(message)
            content, calls = m.get("content"), message_calls(m)
        else:
            content, calls = first.get("text"), None
        out.text = content if isinstance(content, str) else str(content or "")
        out.tool_calls = len(calls) if calls else 0
        names = _call_names(calls) if calls else []
        if calls:
            out.calls = tuple(_call(call) for call in calls)
        for choice in choices[1:]:
            calls = message_calls(get(choice, "message"))
            out.tool_calls += len(calls) if calls else 0
            if calls:
                names += _call_names(calls)
        if names:
            out.tool_names = tuple(names)
    return out


# the openai SDK's parsers of a billed response (`parse`), and the argument that holds it
_PARSERS = {"parse_chat_completion": "chat_completion", "parse_response": "response"}


def carried_usage(operation: str, error: BaseException) -> Usage | None:
    """The usage of a response the provider billed but the client rejected once it arrived, or
    None. The openai SDK's `parse` raises `LengthFinishReasonError`, which carries the completion,
    or `ContentFilterFinishReasonError` or a pydantic `ValidationError` (an answer that does not
    fit the schema), which do not: the parser's argument, still in the traceback, holds it.
    Without this the call would settle at no cost."""
    response = getattr(error, "completion", None)
    if response is None:
        response = _parser_argument(error)
    if response is None or get(response, "usage") is None:
        return None
    return read_usage(operation, response)


def _parser_argument(error: BaseException) -> Any:
    """The response a parser of `_PARSERS` was given, when `error` was raised through it."""
    tb = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        name = _PARSERS.get(frame.f_code.co_name)
        if name is not None:
            return frame.f_locals.get(name)
        tb = tb.tb_next
    return None


def message_calls(message: Any) -> Any:
    """A message's tool calls; a legacy `function_call` (the answer to `functions=`) as one call
    without an id: it counts against `max_tool_calls` like any other."""
    calls = get(message, "tool_calls")
    if calls:
        return calls
    legacy = get(message, "function_call")
    return [{"function": legacy}] if legacy is not None else None


def _call_names(calls: Any) -> list[str]:
    return [str(get(get(call, "function"), "name") or "") for call in calls]


def _call(call: Any) -> ToolCall:
    function = get(call, "function")
    call_id = get(call, "id")
    return (None if call_id is None else str(call_id), str(get(function, "name") or ""),
            str(get(function, "arguments") or ""))


def _responses_usage(response: Any) -> Usage:
    usage = get(response, "usage")
    out = Usage(model=get(response, "model"), response_id=get(response, "id"),
                service_tier=_str(get(response, "service_tier")))
    out.tokens_in = _int(get(usage, "input_tokens"))
    out.tokens_out = _int(get(usage, "output_tokens"))
    out.cached_tokens = _int(get(get(usage, "input_tokens_details"), "cached_tokens"))
    out.reasoning_tokens = _int(get(get(usage, "output_tokens_details"), "reasoning_tokens"))
    items = get(response, "output") or []
    out.calls = tuple((get(item, "call_id"), str(get(item, "name") or ""), str(get(item, "arguments") or ""))
                      for item in items if get(item, "type") == "function_call")
    names = tuple(call[1] for call in out.calls)
    out.tool_calls, out.tool_names = len(names), names
    out.text = "".join(str(get(part, "text") or "") for item in items
                       for part in (get(item, "content") or ()))
    out.finish_reason = get(response, "status")
    return out


def delta_calls(delta: Any) -> Any:
    """A chunk's tool-call deltas; a legacy `function_call` delta as the delta of call 0."""
    calls = get(delta, "tool_calls")
    if calls:
        return calls
    legacy = get(delta, "function_call")
    return [{"index": 0, "function": legacy}] if legacy is not None else ()


def provider_finished(stream: Any, finish_seen: bool) -> bool:
    """Whether the provider ended a stream that ran out: a stream whose connection closes before
    the finish reason (a terminal event for the Responses API) carries an incomplete answer, however
    cleanly it closed. litellm's stream wrapper makes up a final chunk with finish reason "stop"
    when the provider sent none, so for its streams its record of what arrived is read instead."""
    for candidate in (stream, getattr(stream, "completion_stream", None)):  # text completions nest
        received = getattr(candidate, "received_finish_reason", _MISSING)
        if received is not _MISSING:
            return received is not None
    return finish_seen


class StreamAccumulator:
    """Collects what a stream delivered so the step can be settled however the stream ends."""

    __slots__ = ("calls", "chunks", "operation", "parts", "texts", "thoughts", "tool_args", "tool_ids",
                 "tool_names", "usage", "usage_reported")

    def __init__(self, operation: str) -> None:
        self.operation = operation
        self.parts: list[str] = []
        self.thoughts: list[str] = []  # reasoning_content deltas
        self.tool_args: list[str] = []
        self.tool_ids: set[Any] = set()
        self.tool_names: list[str] = []
        self.calls: dict[Any, list[Any]] = {}  # first choice's calls by index: [id, name, argument parts]
        # the pieces of each text output rules judge on its own, by part: ("text", choice),
        # ("reasoning", choice), ("args", choice, call); responses: ("text", output, content),
        # ("args", output). (`parts` interleaves the choices of an `n` > 1 stream.)
        self.texts: dict[tuple[Any, ...], list[str]] = {}
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
        if self.operation != "responses":
            tier = get(chunk, "service_tier")
            if isinstance(tier, str):
                usage.service_tier = tier
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
            usage.cache_write_tokens = _int(get(reported, "cache_creation_input_tokens"))
            usage.audio_tokens_in = _int(get(get(reported, "prompt_tokens_details"), "audio_tokens"))
            usage.audio_tokens_out = _int(get(get(reported, "completion_tokens_details"), "audio_tokens"))
            self.usage_reported = True
        for choice in get(chunk, "choices") or ():
            if self.operation == "text_completion":
                text = get(choice, "text")
            else:
                delta = get(choice, "delta")
                text = get(delta, "content")
                thought = get(delta, "reasoning_content")
                if thought and isinstance(thought, str):
                    self.thoughts.append(thought)
                    self._add_text(("reasoning", get(choice, "index", 0)), thought)
                for call in delta_calls(delta):
                    key = (get(choice, "index", 0), get(call, "index", 0))
                    self.tool_ids.add(key)
                    custom = get(call, "custom")  # a custom tool's input: plain text
                    name = get(custom if custom is not None else get(call, "function"), "name")
                    if name:
                        self.tool_names.append(name)
                    if custom is not None:
                        args = get(custom, "input")
                        if args:
                            self.tool_args.append(args)
                            if isinstance(args, str):
                                self._add_text(("input", *key), args)
                    else:
                        args = get(get(call, "function"), "arguments")
                        if args:
                            self.tool_args.append(args)
                            if isinstance(args, str):
                                self._add_text(("args", *key), args)
                    if key[0] == 0:
                        self._add_call(key[1], get(call, "id"), name, args)
            if text:
                self.parts.append(text)
                if isinstance(text, str):
                    self._add_text(("text", get(choice, "index", 0)), text)
            reason = get(choice, "finish_reason")
            if reason:
                usage.finish_reason = reason

    def _add_text(self, key: tuple[Any, ...], piece: str) -> None:
        pieces = self.texts.get(key)
        if pieces is None:
            self.texts[key] = [piece]
        else:
            pieces.append(piece)

    def _add_call(self, index: Any, call_id: Any, name: Any, args: Any) -> None:
        found = self.calls.get(index)
        if found is None:
            found = self.calls[index] = [None, "", []]
        if call_id:
            found[0] = str(call_id)
        if name:
            found[1] = str(name)
        if args:
            found[2].append(str(args))

    def _add_event(self, event: Any) -> None:
        kind = get(event, "type")
        if kind == "response.output_text.delta":
            delta = get(event, "delta") or ""
            self.parts.append(delta)
            if isinstance(delta, str):
                self._add_text(("text", get(event, "output_index"), get(event, "content_index")), delta)
        elif kind == "response.function_call_arguments.delta":
            delta = get(event, "delta") or ""
            self.tool_args.append(delta)
            if isinstance(delta, str):
                self._add_text(("args", get(event, "output_index")), delta)
        elif kind == "response.reasoning_text.delta":  # reasoning text some models stream (gpt-oss)
            delta = get(event, "delta") or ""
            if isinstance(delta, str):
                self.thoughts.append(delta)
                self._add_text(("reasoning", get(event, "output_index"), get(event, "content_index")), delta)
        elif kind == "response.custom_tool_call_input.delta":  # a custom tool's input: plain text
            delta = get(event, "delta") or ""
            self.tool_args.append(delta)
            if isinstance(delta, str):
                self._add_text(("input", get(event, "output_index")), delta)
        elif kind in ("response.completed", "response.incomplete") or \
                (kind == "response.failed" and get(get(event, "response"), "usage") is not None):
            final = read_usage("responses", get(event, "response"))
            final.text = ""
            self.usage = final
            self.usage_reported = True

    def finish(self, request: Request) -> Usage:
        """The usage: as reported by the stream, else counted with tiktoken and marked estimated."""
        usage = self.usage
        usage.text = "".join(self.parts)
        usage.reasoning_text = "".join(self.thoughts)
        if self.texts:
            joined = [(key[0], "".join(pieces)) for key, pieces in self.texts.items()]
            usage.texts = tuple(text for kind, text in joined if text and kind != "args")
            usage.arguments = tuple(text for kind, text in joined if text and kind == "args")
        usage.tool_calls = max(usage.tool_calls, len(self.tool_ids))
        if self.tool_names and not usage.tool_names:
            usage.tool_names = tuple(self.tool_names)
        if self.calls and not usage.calls:
            usage.calls = tuple((c[0], c[1], "".join(c[2])) for c in self.calls.values())
        if self.usage_reported:
            return usage
        model = usage.model or request.model
        usage.tokens_in = billing.input_tokens(request, model, None, exact=True, margin=False) or 0
        usage.tokens_out = tokens.count(usage.reasoning_text + usage.text + "".join(self.tool_args), model)
        usage.estimated = True
        return usage
