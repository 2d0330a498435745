"""Closing a stream whatever client made it: an `aclose()` coroutine, a `close()` that returns
one (the openai SDK's async streams), or a plain `close()`. A stream with no such method of its
own (litellm's sync `CustomStreamWrapper` and `TextCompletionStreamWrapper`, its Responses API
iterators) is closed through what it reads from: the provider's stream it wraps
(`completion_stream`), else its HTTP response; left alone, that connection stayed open, the
provider still writing, until the stream was garbage-collected."""

from __future__ import annotations

from typing import Any

_DEPTH = 4  # how many wrappers deep a stream's closable source is looked for


def _source(stream: Any) -> Any:
    """What a stream with no close of its own reads from, or None."""
    for name in ("completion_stream", "response"):
        inner = getattr(stream, name, None)
        if inner is not None and inner is not stream:
            return inner
    return None


def close(stream: Any) -> None:
    """Close a sync stream; a stream with nothing to close is left alone."""
    for _ in range(_DEPTH):
        closer = getattr(stream, "close", None)
        if callable(closer):
            closer()
            return
        stream = _source(stream)
        if stream is None:
            return


async def aclose(stream: Any) -> None:
    """Close `stream` from a coroutine; a stream with nothing to close is left alone."""
    for _ in range(_DEPTH):
        closer = getattr(stream, "aclose", None) or getattr(stream, "close", None)
        if callable(closer):
            result = closer()
            if hasattr(result, "__await__"):
                await result
            return
        stream = _source(stream)
        if stream is None:
            return
