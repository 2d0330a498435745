"""Closing a stream whatever client made it: an `aclose()` coroutine, a `close()` that returns
one (the openai SDK's async streams), or a plain `close()`."""

from __future__ import annotations

from typing import Any


def close(stream: Any) -> None:
    """Close a sync stream; a stream with nothing to close is left alone."""
    closer = getattr(stream, "close", None)
    if callable(closer):
        closer()


async def aclose(stream: Any) -> None:
    """Close `stream` from a coroutine; a stream with nothing to close is left alone."""
    closer = getattr(stream, "aclose", None) or getattr(stream, "close", None)
    if callable(closer):
        result = closer()
        if hasattr(result, "__await__"):
            await result
