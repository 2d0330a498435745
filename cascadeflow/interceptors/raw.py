"""The openai SDK's raw responses: `with_streaming_response` and `with_raw_response`.

With these the SDK hands back its response object, not the parsed body, and the body is read
later by the caller: `.parse()` (a completion, or a `Stream` when `stream=True`), `.json()`,
`.read()`, `.text()`, or piece by piece with `.iter_bytes()`, `.iter_text()`, `.iter_lines()`.
The proxy settles the step from whatever the caller reads: a parsed stream through the stream
proxy, a body read whole or to its end from the JSON it holds or, for a stream, from the events
on its `data:` lines; and, when the response is closed or dropped unread (or read only in
part), from an estimate (the call was sent and billed; its usage was never seen).

When output rules or the run's placeholders may edit the answer (`edits`), every reader hands
over the edited answer, never the provider's bytes: a body is parsed, edited and written again
as JSON; a stream is read through the stream proxy (`parse()`) and its events written again as
server-sent events. The transport's own `http_response` is left as it is.
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

    __slots__ = ("_body", "_done", "_edits", "_on_body", "_on_events", "_on_unread", "_operation",
                 "_stream", "_wrap_stream", "_wrapped")

    def __init__(self, wrapped: Any, on_body: OnBody, wrap_stream: WrapStream | None,
                 on_unread: OnUnread, on_events: OnEvents | None = None, edits: bool = False,
                 operation: str = "chat") -> None:
        """`wrap_stream` and `on_events` are given when the request asked for a stream; `edits`
        when output rules or placeholders may change the answer (see the module's docstring),
        whose events are written back in the shape of `operation`'s stream."""
        self._wrapped = wrapped
        self._on_body = on_body
        self._wrap_stream = wrap_stream
        self._on_events = on_events
        self._on_unread = on_unread
        self._stream: Any = None
        self._done = False
        self._edits = edits
        self._operation = operation
        self._body: Any = None  # the body as settled (and edited), once it is

    def settled(self, body: Any) -> RawResponseProxy:
        """This proxy over a body already parsed and settled (`with_raw_response`)."""
        self._done, self._body = True, body
        return self

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
        elif name in ("text", "content") and self._edits:  # a raw response's body properties
            return self._written(value)  # (a stream's raise before it is read, as the SDK's do)
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
        reader = self._wrapped.json  # (a raw response has none: the SDK's AttributeError)
        if self._edits and self._wrap_stream is None and self._done:  # parsed before: its edits
            return _plain(self._body)
        result = reader(*args, **kwargs)
        if inspect.isawaitable(result):
            return self._read_later(result, lambda data: data)
        if self._wrap_stream is None:
            self._settle(result)
            return _plain(self._body) if self._edits else result
        return result

    def read(self) -> Any:
        if self._edits and self._wrap_stream is not None:
            return self._stream_whole(self._wrapped.read, b"")
        return self._whole(self._wrapped.read())

    def _read_whole(self, reader: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._edits and self._wrap_stream is not None:
            return self._stream_whole(reader, "")
        return self._whole(reader(*args, **kwargs))

    def _read_pieces(self, reader: Callable[..., Any], joint: Any, *args: Any, **kwargs: Any) -> Any:
        if self._edits and self._wrap_stream is not None:
            return self._stream_pieces(reader, joint)
        return self._pieces(reader(*args, **kwargs), joint)

    def _whole(self, result: Any) -> Any:
        """The body read at once (bytes or text), or an awaitable of it."""
        if inspect.isawaitable(result):
            return self._read_later(result, None)
        self._seen(result)
        return self._written(result)

    async def _read_later(self, result: Any, to_body: Callable[[Any], Any] | None) -> Any:
        value = await result
        if to_body is None:
            self._seen(value)
            return self._written(value)
        if self._wrap_stream is None:
            self._settle(to_body(value))
            return _plain(self._body) if self._edits else value
        return value

    def _written(self, raw: Any) -> Any:
        """What a reader hands over of a body read whole: with `edits`, the settled (edited)
        body written again as JSON, bytes where the reader gave bytes."""
        if not self._edits or self._wrap_stream is not None or not self._done or self._body is None:
            return raw
        written = json.dumps(_plain(self._body))
        return written.encode() if isinstance(raw, (bytes, bytearray)) else written

    # -- a stream's body, with `edits`: its events as the stream proxy hands them over -----
    def _stream_whole(self, reader: Callable[..., Any], empty: Any) -> Any:
        """The whole stream, as `read()` or `text()` would give it (`reader` is not called: the
        body is read through `parse()`)."""
        stream, operation = self.parse(), self._operation
        if inspect.isawaitable(stream):
            async def whole() -> Any:
                text = "".join([piece async for piece in _asse(await stream, operation)])
                return text.encode() if isinstance(empty, bytes) else text
            return whole()
        text = "".join(_sse(stream, operation))
        return text.encode() if isinstance(empty, bytes) else text

    def _stream_pieces(self, reader: Callable[..., Any], joint: Any) -> Any:
        """The stream piece by piece, as `reader` (`iter_lines`, ...) would give it."""
        stream, operation = self.parse(), self._operation
        lines = joint == "\n"
        if inspect.isawaitable(stream):
            async def pieces() -> AsyncIterator[Any]:
                async for piece in _asse(await stream, operation):
                    for out in _split(piece, joint, lines):
                        yield out
            return pieces()
        return (out for piece in _sse(stream, operation) for out in _split(piece, joint, lines))

    def _pieces(self, pieces: Any, joint: Any) -> Any:
        """The caller's iterator over the body, which settles once it has run to the end."""
        if hasattr(pieces, "__aiter__"):
            return self._apieces(pieces, joint)
        return self._spieces(pieces, joint)

    def _spieces(self, pieces: Iterator[Any], joint: Any) -> Iterator[Any]:
        if self._edits:  # the body may change: it is handed over whole, once edited
            whole = joint.join(pieces)
            self._seen(whole)
            yield self._written(whole)
            return
        seen = []
        for piece in pieces:
            seen.append(piece)
            yield piece
        self._seen(joint.join(seen))

    async def _apieces(self, pieces: AsyncIterator[Any], joint: Any) -> AsyncIterator[Any]:
        if self._edits:  # the body may change: it is handed over whole, once edited
            whole = joint.join([piece async for piece in pieces])
            self._seen(whole)
            yield self._written(whole)
            return
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
            self._body = body  # edited in place by the output rules and placeholders

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


def _plain(body: Any) -> Any:
    """A body as JSON data: an SDK object's fields as sent (a dict stays as it is)."""
    dump = getattr(body, "model_dump", None)
    return dump(mode="json", by_alias=True, exclude_unset=True) if callable(dump) else body


def _event_text(event: Any, operation: str) -> str:
    """One event written again as server-sent events (`event:` line for the Responses API)."""
    data = json.dumps(_plain(event))
    kind = _plain(event).get("type") if operation == "responses" else None
    return (f"event: {kind}\n" if isinstance(kind, str) else "") + f"data: {data}\n\n"


def _sse(stream: Any, operation: str) -> Iterator[str]:
    for event in stream:
        yield _event_text(event, operation)
    if operation != "responses":
        yield "data: [DONE]\n\n"


async def _asse(stream: Any, operation: str) -> AsyncIterator[str]:
    async for event in stream:
        yield _event_text(event, operation)
    if operation != "responses":
        yield "data: [DONE]\n\n"


def _split(piece: str, joint: Any, lines: bool) -> list[Any]:
    """A written event as the reader hands pieces over: its lines (no line ends), its text, or
    its bytes."""
    if lines:
        return piece.split("\n")[:-1]
    return [piece.encode()] if isinstance(joint, bytes) else [piece]
