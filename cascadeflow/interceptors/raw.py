"""The openai SDK's raw responses: `with_streaming_response` and `with_raw_response`.

With these the SDK hands back its response object, not the parsed body, and the body is read
later by the caller: `.parse()` (a completion, or a `Stream` when `stream=True`), `.json()`,
`.read()`, `.text()`, or piece by piece with `.iter_bytes()`, `.iter_text()`, `.iter_lines()`.
The proxy settles the step from whatever the caller reads: a parsed stream through the stream
proxy, a body read whole or to its end from the JSON it holds or, for a stream, from the events
on its `data:` lines; and, when the response is closed or dropped unread (or read only in
part), from an estimate (the call was sent and billed; its usage was never seen).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

OnBody = Callable[[Any], None]  # settle from the parsed body (a completion object or a dict)
WrapStream = Callable[[Any], Any]  # the stream proxy for a parsed `Stream`
OnEvents = Callable[[list[Any]], None]  # settle from a stream's events, read by hand (dicts)
OnUnread = Callable[[], None]  # settle from an estimate
_PIECES = {"iter_bytes": b"", "iter_text": "", "iter_lines": "\n"}  # reader -> what joins its pieces


class RawResponseProxy:
    """Forwards everything to the SDK's response object; settles on the first read."""

    __slots__ = ("_done", "_on_body", "_on_events", "_on_unread", "_stream", "_wrap_stream", "_wrapped")

    def __init__(self, wrapped: Any, on_body: OnBody, wrap_stream: WrapStream | None,
                 on_unread: OnUnread, on_events: OnEvents | None = None) -> None:
        """`wrap_stream` and `on_events` are given when the request asked for a stream."""
        self._wrapped = wrapped
        self._on_body = on_body
        self._wrap_stream = wrap_stream
        self._on_events = on_events
        self._on_unread = on_unread
        self._stream: Any = None
        self._done = False

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the SDK's class
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        """The SDK's attribute; the body readers it has read through the proxy (they are a
        streaming response's: a raw response's `.text` is a property, and it has no `iter_*`)."""
        value = getattr(object.__getattribute__(self, "_wrapped"), name)
        if callable(value):
            if name in _PIECES:
                return functools.partial(self._read_pieces, value, _PIECES[name])
            if name == "text":
                return functools.partial(self._read_whole, value)
        return value

    def __repr__(self) -> str:
        return f"<cascadeflow proxy of {self._wrapped!r}>"

    # -- reading the body ------------------------------------------------------------------
    def parse(self, *args: Any, **kwargs: Any) -> Any:
        result = self._wrapped.parse(*args, **kwargs)
        if inspect.isawaitable(result):  # the async client's streaming response
            return self._parsed_later(result)
        return self._parsed(result)

    async def _parsed_later(self, result: Any) -> Any:
        return self._parsed(await result)

    def _parsed(self, result: Any) -> Any:
        if self._wrap_stream is not None:
            if self._stream is None:
                self._done = True  # the stream proxy settles it from here
                self._stream = self._wrap_stream(result)
            return self._stream
        self._settle(result)
        return result

    def json(self, *args: Any, **kwargs: Any) -> Any:
        result = self._wrapped.json(*args, **kwargs)
        if inspect.isawaitable(result):
            return self._read_later(result, lambda data: data)
        if self._wrap_stream is None:
            self._settle(result)
        return result

    def read(self) -> Any:
        return self._whole(self._wrapped.read())

    def _read_whole(self, reader: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self._whole(reader(*args, **kwargs))

    def _read_pieces(self, reader: Callable[..., Any], joint: Any, *args: Any, **kwargs: Any) -> Any:
        return self._pieces(reader(*args, **kwargs), joint)

    def _whole(self, result: Any) -> Any:
        """The body read at once (bytes or text), or an awaitable of it."""
        if inspect.isawaitable(result):
            return self._read_later(result, None)
        self._seen(result)
        return result

    async def _read_later(self, result: Any, to_body: Callable[[Any], Any] | None) -> Any:
        value = await result
        if to_body is None:
            self._seen(value)
        elif self._wrap_stream is None:
            self._settle(to_body(value))
        return value

    def _pieces(self, pieces: Any, joint: Any) -> Any:
        """The caller's iterator over the body, which settles once it has run to the end."""
        if hasattr(pieces, "__aiter__"):
            return self._apieces(pieces, joint)
        return self._spieces(pieces, joint)

    def _spieces(self, pieces: Iterator[Any], joint: Any) -> Iterator[Any]:
        seen = []
        for piece in pieces:
            seen.append(piece)
            yield piece
        self._seen(joint.join(seen))

    async def _apieces(self, pieces: AsyncIterator[Any], joint: Any) -> AsyncIterator[Any]:
        seen = []
        async for piece in pieces:
            seen.append(piece)
            yield piece
        self._seen(joint.join(seen))

    def _seen(self, raw: Any) -> None:
        """Settle from the whole body as the caller read it: JSON, or a stream's events."""
        if self._wrap_stream is None:
            self._settle(_loads(raw))
        elif self._on_events is not None and not self._done:
            self._done = True
            self._on_events(_events(raw))

    def _settle(self, body: Any) -> None:
        if not self._done:
            self._done = True
            self._on_body(body)

    # -- closing unread --------------------------------------------------------------------
    def close(self) -> Any:
        result = self._wrapped.close()
        if inspect.isawaitable(result):
            return self._closed_later(result)
        self._closed()
        return result

    async def _closed_later(self, result: Any) -> None:
        await result
        self._closed()

    def _closed(self) -> None:
        """The response is closed: unread, or the stream parsed from it ends here (the SDK's
        `with_streaming_response` block closes the response, not the stream)."""
        if self._stream is not None:  # the stream proxy `wrap_stream` made
            self._stream.response_closed()
        self._unread()

    def _unread(self) -> None:
        if not self._done:
            self._done = True
            self._on_unread()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # never raise from a finaliser
            self._unread()


def _loads(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def _events(raw: Any) -> list[Any]:
    """The events of a server-sent-events body: the JSON on each `data:` line, `[DONE]` left out."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    events = []
    for line in text.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            event = _loads(data) if data and data != "[DONE]" else None
            if event is not None:
                events.append(event)
    return events
