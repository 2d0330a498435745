"""The openai SDK: chat.completions, responses and embeddings `create`, sync and async, streams.

The methods are replaced on the resource classes, so every client instance, made before or after
`init()`, is intercepted. A switch through an SDK client only picks models of that client's
provider: the client cannot reach any other.
"""

from __future__ import annotations

import importlib
from typing import Any

from cascadeflow.interceptors.base import maker as _maker
from cascadeflow.interceptors.base import patch
from cascadeflow.request import Request

# (module, class, operation, is async)
TARGETS: tuple[tuple[str, str, str, bool], ...] = (
    ("openai.resources.chat.completions", "Completions", "chat", False),
    ("openai.resources.chat.completions", "AsyncCompletions", "chat", True),
    ("openai.resources.responses", "Responses", "responses", False),
    ("openai.resources.responses", "AsyncResponses", "responses", True),
    ("openai.resources.embeddings", "Embeddings", "embeddings", False),
    ("openai.resources.embeddings", "AsyncEmbeddings", "embeddings", True),
)


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
    for module_name, class_name, operation, is_async in TARGETS:
        try:
            owner = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue
        patch(owner, "create", _maker(_adapter(operation), is_async, operation))
    return True
