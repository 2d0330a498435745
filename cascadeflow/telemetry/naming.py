"""The conventional names of what a step called: provider, model on the wire, server.

cascadeflow's trace keeps litellm's names (`azure`, `openai/gpt-4o-mini`, as the user wrote
them); spans and metrics carry what the GenAI conventions define, so they match what the
instrumentation of the client library beneath would report for the same call.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from cascadeflow.telemetry import conventions as cv


def provider_name(provider: str | None) -> str | None:
    """`gen_ai.provider.name` for litellm's provider name (its own name when the conventions
    list none for it)."""
    if provider is None:
        return None
    return cv.PROVIDER_NAMES.get(provider, provider)


def wire_model(model: str, provider: str | None, client: str) -> str:
    """The model name sent to the provider: litellm strips its `provider/` prefix."""
    if client == "litellm" and provider and model.startswith(provider + "/"):
        return model[len(provider) + 1:]
    return model


@functools.lru_cache(maxsize=256)
def server(api_base: str | None) -> tuple[str | None, int | None]:
    """(`server.address`, `server.port`) of a base URL, parsed once per URL."""
    if not api_base:
        return None, None
    try:
        parts = urlsplit(api_base)
        return parts.hostname, parts.port
    except ValueError:  # a malformed port: no server attributes rather than a failed record
        return None, None
