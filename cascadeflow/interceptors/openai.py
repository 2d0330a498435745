"""The openai SDK: every resource method that sends a model request, sync and async, streams.

The methods are replaced on the resource classes, so every client instance, made before or after
`init()`, is intercepted. The SDK's helpers go through them: `chat.completions.stream` and
`responses.stream` call `create`, and `with_raw_response` / `with_streaming_response` wrap the
bound methods, so they are covered with no patch of their own. A switch through an SDK client
only picks models of that client's provider: the client cannot reach any other.
"""

from __future__ import annotations

import importlib
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


def _client_info(resource: Any) -> tuple[str, str | None]:
    client = getattr(resource, "_client", None)
    provider = "azure" if "Azure" in type(client).__name__ else "openai"
    base = getattr(client, "base_url", None)
    return provider, None if base is None else str(base)


def _adapter(operation: str) -> Any:
    def to_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        if len(args) != 1:
            return None
        model = kwargs.get("model")
        if not isinstance(model, str):
            return None
        provider, base = _client_info(args[0])
        return Request(operation=operation, client="openai", model=model, kwargs=kwargs, args=args,
                       provider=provider, stream=kwargs.get("stream") is True, api_base=base,
                       reachable=(provider,))

    return to_request


def instrument() -> bool:
    """Patch the openai SDK; False when it is not installed."""
    try:
        import openai  # noqa: F401
    except ImportError:
        return False
    for module_name, class_name, method, operation, is_async in TARGETS:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        if callable(getattr(owner, method, None)):
            patch(owner, method, _maker(_adapter(operation), is_async, operation))
    return True
