"""The built-in provider for tests, demos and benchmarks: real HTTP on loopback, no API keys.

    with cascadeflow.testing.serve() as provider:
        litellm.completion(model="openai/gpt-4o-mini", api_base=provider.url, api_key="test", ...)

In pytest, the `cascadeflow_provider` fixture gives a started server, reset for each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cascadeflow.testing.replies import Reply
from cascadeflow.testing.server import FAULT_HEADER, Fault, ProviderServer, RecordedRequest

__all__ = ["FAULT_HEADER", "Fault", "ProviderServer", "RecordedRequest", "Reply", "serve"]


@contextmanager
def serve(seed: int = 0) -> Iterator[ProviderServer]:
    """Start the built-in provider on a free loopback port for the duration of the block."""
    server = ProviderServer(seed=seed).start()
    try:
        yield server
    finally:
        server.stop()
