"""The openai SDK: every resource method that sends a model request, sync and async, streams.

The methods are replaced on the resource classes, so every client instance, made before or after
`init()`, is intercepted. The SDK's helpers go through them: `chat.completions.stream` and
`responses.stream` call `create`, and `with_raw_response` / `with_streaming_response` wrap the
bound methods. Those two bind the method when first touched and the resource caches them, so
the classes of what they return get a descriptor that rebinds a method bound before `init()`
(LangChain's ChatOpenAI touches `with_raw_response` at its first call). A switch through an SDK
client only picks models of that client's provider: the client cannot reach any other.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from cascadeflow.interceptors.base import maker as _maker
from cascadeflow.interceptors.base import patch
from cascadeflow.request import Request

_CHAT = "openai.resources.chat.completions"
_RESPONSES = "openai.resources.responses"
_BETA_RESPONSES = "openai.resources.beta.responses.responses"
# (module, class, methods that POST a model request, operation); each class has an `Async` twin.
# tests/test_openai_coverage.py reads the SDK's source and fails when one appears that is not here.
RESOURCES: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    (_CHAT, "Completions", ("create", "parse"), "chat"),
    ("openai.resources.completions", "Completions", ("create",), "text_completion"),
    (_RESPONSES, "Responses", ("create", "parse", "compact"), "responses"),
    (_BETA_RESPONSES, "Responses", ("create", "compact"), "responses"),
    ("openai.resources.embeddings", "Embeddings", ("create",), "embeddings"),
)
# (module, class, method, operation, is async)
TARGETS: tuple[tuple[str, str, str, str, bool], ...] = tuple(
    (module, prefix + cls, method, operation, bool(prefix))
    for module, cls, methods, operation in RESOURCES for prefix in ("", "Async") for method in methods)


# the SDK's classes that hold a resource's methods wrapped for `with_raw_response` and
# `with_streaming_response` (named after the resource's), and the function that wraps them
HOLDERS = (("WithRawResponse", "openai._legacy_response", "to_raw_response_wrapper"),
           ("WithStreamingResponse", "openai._response", "to_streamed_response_wrapper"))


class Rebound:
    """A method of a `with_raw_response` / `with_streaming_response` object, read through the
    class: a data descriptor comes before the instance's own attribute, which the SDK set to its
    wrapper around the resource's method as bound when the object was made. Made before
    `init()`, that is the original, which would bypass interception for good: it is wrapped
    again around the method the resource has now."""

    def __init__(self, name: str, wrap: Callable[[Any], Any]) -> None:
        self.name = name
        self.wrap = wrap

    def __set__(self, holder: Any, value: Any) -> None:
        holder.__dict__[self.name] = value

    def __get__(self, holder: Any, owner: type | None = None) -> Any:
        if holder is None:
            return self
        try:
            held = holder.__dict__[self.name]
        except KeyError:
            raise AttributeError(self.name) from None
        bound = getattr(held, "__wrapped__", None)
        resource = getattr(bound, "__self__", None)
        if resource is None:
            return held  # not the SDK's wrapper of a bound method: left as it is
        now = getattr(resource, self.name, None)
        if now is None or now == bound:
            return held
        held = holder.__dict__[self.name] = self.wrap(now)
        return held


def _rebind(module: Any, class_name: str, method: str, is_async: bool) -> None:
    """Put `Rebound` on the classes that hold `class_name.method` for raw responses."""
    for suffix, wrappers, wrapper in HOLDERS:
        holder = getattr(module, class_name + suffix, None)
        wrap = getattr(importlib.import_module(wrappers), ("async_" if is_async else "") + wrapper, None)
        if isinstance(holder, type) and callable(wrap):
            patch(holder, method, functools.partial(_descriptor, method, wrap))


def _descriptor(method: str, wrap: Callable[[Any], Any], _original: Any) -> Rebound:
    return Rebound(method, wrap)


def _client_info(resource: Any) -> tuple[str, str | None]:
    client = getattr(resource, "_client", None)
    provider = "azure" if "Azure" in type(client).__name__ else "openai"
    base = getattr(client, "base_url", None)
    return provider, None if base is None else str(base)


def _adapter(operation: str, method: str) -> Any:
    def to_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        if len(args) != 1:
            return None
        model = kwargs.get("model")
        if not isinstance(model, str):
            if operation != "responses" or model:
                return None
            # left out (absent, None, or the SDK's falsy `omit`): the Responses API then takes
            # the model from the stored prompt (`prompt={"id": ...}`); the call is still a step,
            # its model unknown until the response names it
            model = ""
        provider, base = _client_info(args[0])
        model = str.__str__(model)  # a str Enum's value, as the SDK sends it
        return Request(operation=operation, client="openai", model=model, kwargs=kwargs, args=args,
                       provider=provider, stream=kwargs.get("stream") is True, api_base=base,
                       reachable=(provider,), method=method)

    return to_request


def instrument() -> bool:
    """Patch the openai SDK; False when it is not installed."""
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    for module_name, class_name, method, operation, is_async in TARGETS:
        try:
            module = importlib.import_module(module_name)
            owner = getattr(module, class_name)
        except (ImportError, AttributeError):
            continue
        if callable(getattr(owner, method, None)):
            patch(owner, method, _maker(_adapter(operation, method), is_async, operation, "openai"))
            _rebind(module, class_name, method, is_async)
    return True
