"""The library-neutral shape every interceptor produces: one `Request` per intercepted call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cascadeflow import tokens

MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")
TOOL_KEYS = ("tools", "functions")  # `functions`: the chat API's legacy form of `tools`
# where each operation carries its prompt
PROMPT_KEYS = {"chat": "messages", "text_completion": "prompt", "responses": "input",
               "embeddings": "input"}


def in_body(kwargs: dict[str, Any], key: str, kind: type = int) -> Any:
    """`key` as the provider receives it: the client's `extra_body` (which both the openai SDK
    and litellm merge into the request body, over the arguments) where it holds a `kind` there,
    else the argument."""
    extra = kwargs.get("extra_body")
    if isinstance(extra, dict) and isinstance(extra.get(key), kind):
        return extra[key]
    return kwargs.get(key)


def output_limit(kwargs: dict[str, Any]) -> int | None:
    """The output limit a request's kwargs set, under any key, in `extra_body` (which the
    provider receives over the arguments) or as an argument: None when neither holds one."""
    extra = kwargs.get("extra_body")
    if isinstance(extra, dict):
        for key in MAX_TOKEN_KEYS:
            value = extra.get(key)
            if isinstance(value, int):
                return int(value)
    for key in MAX_TOKEN_KEYS:
        value = kwargs.get(key)
        if isinstance(value, int):
            return int(value)
    return None


class Request:
    """One intercepted call: what was asked, of whom, through which client."""

    __slots__ = ("_counted", "_input_bound", "_prompt_text", "api_base", "args", "client", "irreversible",
                 "kwargs", "method", "model", "operation", "pinned", "provider", "reachable", "stored_tokens",
                 "stream", "tool", "underneath")

    def __init__(self, operation: str, client: str, model: str, kwargs: dict[str, Any],
                 provider: str | None = None, args: tuple[Any, ...] = (), stream: bool = False,
                 api_base: str | None = None, tool: str | None = None, irreversible: bool = False,
                 reachable: tuple[str, ...] | None = None, pinned: bool = False,
                 method: str = "create") -> None:
        self.operation = operation  # chat | text_completion | embeddings | responses | tool
        self.client = client  # litellm | openai | tool
        self.model = model
        key = PROMPT_KEYS.get(operation)
        prompt = kwargs.get(key) if key is not None else None
        if key is not None and not isinstance(prompt, list | str | dict | None) \
                and isinstance(prompt, tuple | Iterator):  # (the ABC's check only for the rare)
            # messages as a tuple or a generator, which both clients take and send as a JSON list:
            # a list here (in the call's own kwargs, which are what is sent), so that the
            # guardrails read it and a generator is not used up by the first reader
            kwargs[key] = list(prompt)
        self.kwargs = kwargs
        self.provider = provider
        self.args = args  # positional arguments to send as they came (the SDK resource)
        self.stream = stream
        self.api_base = api_base
        self.tool = tool
        self.irreversible = irreversible
        self.reachable = reachable  # provider prefixes a switch may use; None = any
        self.pinned = pinned  # a cascade attempt: the cascade chose the model; no switching it
        self.method = method  # the openai SDK's method it came through (`parse` does not call `create`)
        # intercepted libraries its send went through beneath it (litellm's, the openai SDK), once sent
        self.underneath: list[str] | None = None
        # input the provider holds and bills again (a Responses call's `previous_response_id`),
        # when this process settled that response; None when there is none or it is unknown
        self.stored_tokens: int | None = None
        self._prompt_text: str | None = None
        self._input_bound: int | None = None
        self._counted: tuple[str, int] | None = None  # (model, tiktoken count of the prompt text)

    def __repr__(self) -> str:
        return f"Request({self.operation!r}, {self.client!r}, {self.model!r})"

    @property
    def prompt(self) -> Any:
        """Messages, prompt or input, whichever the operation takes."""
        key = PROMPT_KEYS.get(self.operation)
        return None if key is None else self.kwargs.get(key)

    def prompt_text(self) -> str:
        """The prompt's text, computed once."""
        if self._prompt_text is None:
            prompt = self.prompt
            if self.operation == "responses" and self.kwargs.get("instructions"):
                prompt = [{"content": self.kwargs["instructions"]},
                          *(prompt if isinstance(prompt, list) else [{"content": prompt}])]
            self._prompt_text = tokens.message_text(prompt)
        return self._prompt_text

    def prompt_tokens(self, model: str) -> int:
        """The tiktoken count of the prompt's text for `model`, computed once: a call that waits
        for settlements is decided again several times, and tokenizing is the costly part."""
        counted = self._counted
        if counted is None or counted[0] != model:
            counted = self._counted = (model, tokens.count(self.prompt_text(), model))
        return counted[1]

    def input_bound(self) -> int:
        """A free upper bound on the prompt's input tokens, computed once: the UTF-8 length of
        its text (no byte-level BPE token is shorter than a byte) plus the chat format's
        per-message overhead."""
        if self._input_bound is None:
            prompt = self.prompt
            if self._prompt_text is not None or (self.operation == "responses"
                                                 and self.kwargs.get("instructions")):
                size = tokens.upper_bound(self.prompt_text())
            else:
                size = tokens.text_bytes(prompt)
            self._input_bound = size + tokens.message_overhead(prompt)
        return self._input_bound

    def freeze(self) -> None:
        """Copy the kwargs and the prompt list (shallow) so what is recorded later is what was sent,
        even when the caller appends to its message list after the call returns."""
        kwargs = dict(self.kwargs)
        key = PROMPT_KEYS.get(self.operation)
        if key is not None and isinstance(kwargs.get(key), list):
            kwargs[key] = list(kwargs[key])
        self.kwargs = kwargs

    @property
    def max_tokens(self) -> int | None:
        """The output limit the caller set, whichever key holds it (read as `max_tokens_key`
        finds it, without calling it: the engine asks on every decision)."""
        return output_limit(self.kwargs)

    @property
    def max_tokens_key(self) -> str | None:
        """The key of the output limit the caller set: one whose value is a number, so the
        openai SDK's `omit` / `NOT_GIVEN` (what its `.stream()` helper passes) is no limit."""
        kwargs = self.kwargs
        for key in MAX_TOKEN_KEYS:
            if isinstance(kwargs.get(key), int):
                return key
        return None

    @property
    def tools(self) -> list[Any]:
        """The tool definitions offered: `tools` and chat's legacy `functions`, which the model
        calls just the same, so the lists and caps read both."""
        found: list[Any] = []
        for key in TOOL_KEYS:
            tools = self.kwargs.get(key)
            if isinstance(tools, list | tuple):
                found.extend(tools)
        return found

    @property
    def offers_tools(self) -> bool:
        """A non-empty `tools` or `functions` list (asked on every decision: no generator)."""
        kwargs = self.kwargs
        tools = kwargs.get("tools")
        if tools and isinstance(tools, list | tuple):
            return True
        functions = kwargs.get("functions")
        return bool(functions) and isinstance(functions, list | tuple)

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
