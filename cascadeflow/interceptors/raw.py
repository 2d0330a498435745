"""The openai SDK's raw responses: `with_streaming_response` and `with_raw_response`.

With these the SDK hands back its response object, not the parsed body, and the body is read
later by the caller: `.parse()` (a completion, or a `Stream` when `stream=True`), `.json()`,
`.read()`. The proxy settles the step from whatever the caller reads, streams through the
stream proxy, and, when the response is closed or dropped unread, from an estimate (the call
was sent and billed; its usage was never seen).
"""

from __future__ import annotations

import contextlib
import inspect
import json
from collections.abc import Callable
from typing import Any

OnBody = Callable[[Any], None]  # settle from the parsed body (a completion object or a dict)
WrapStream = Callable[[Any], Any]  # the stream proxy for a parsed `Stream`
OnUnread = Callable[[], None]  # settle from an estimate


class RawResponseProxy:
    """Forwards everything to the SDK's response object; settles on the first read."""

    __slots__ = ("_done", "_on_body", "_on_unread", "_stream", "_wrap_stream", "_wrapped")

    def __init__(self, wrapped: Any, on_body: OnBody, wrap_stream: WrapStream | None,
                 on_unread: OnUnread) -> None:
        """`wrap_stream` is given when the request asked for a stream."""
        self._wrapped = wrapped
        self._on_body = on_body
        self._wrap_stream = wrap_stream
        self._on_unread = on_unread
        self._stream: Any = None
        self._done = False

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the SDK's class
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_wrapped"), name)

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
        result = self._wrapped.read()
        if inspect.isawaitable(result):
            return self._read_later(result, _loads)
        if self._wrap_stream is None:
            self._settle(_loads(result))
        return result

    async def _read_later(self, result: Any, to_body: Callable[[Any], Any]) -> Any:
        value = await result
        if self._wrap_stream is None:
            self._settle(to_body(value))
        return value

    def _settle(self, body: Any) -> None:
        if not self._done:
            self._done = True
            self._on_body(body)

    # -- closing unread --------------------------------------------------------------------
    def close(self) -> Any:
        result = self._wrapped.close()
        if inspect.isawaitable(result):
            return self._closed_later(result)
        self._unread()
        return result

    async def _closed_later(self, result: Any) -> None:
        await result
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
