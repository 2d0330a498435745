"""Stream proxies: pass every chunk through untouched and settle the step however the stream ends.

They forward every attribute they don't handle and report the wrapped class as their own, so
`isinstance(stream, openai.Stream)` still holds. A stream is settled when it is exhausted, when
it raises, when it is closed, or when it is garbage-collected half-read (status `abandoned`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cascadeflow.request import StreamAccumulator

if TYPE_CHECKING:
    from cascadeflow.pipeline import Step


class StreamIncomplete(Exception):
    """Recorded as the error of a stream that was closed or dropped before its end."""


class _Proxy:
    __slots__ = ("_acc", "_done", "_iter", "_step", "_wrapped")

    def __init__(self, wrapped: Any, step: Step) -> None:
        self._wrapped = wrapped
        self._step = step
        self._acc = StreamAccumulator(step.request.operation)
        self._done = False
        self._iter: Any = None

    @property  # type: ignore[misc]
    def __class__(self) -> type:  # isinstance() sees the wrapped type
        return type(self._wrapped)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_wrapped"), name)

    def __repr__(self) -> str:
        return f"<cascadeflow stream proxy of {self._wrapped!r}>"

    def _end(self, error: BaseException | None = None, status: str = "ok") -> None:
        if self._done:
            return
        self._done = True
        if isinstance(error, StreamIncomplete) and self._acc.usage.finish_reason is not None:
            error = None  # the last chunk arrived; closing early lost nothing
        usage = self._acc.finish(self._step.request)
        if error is None:
            self._step.finish(usage)
        else:
            self._step.fail(error, usage, status=status)

    def __del__(self) -> None:
        try:
            if not object.__getattribute__(self, "_done"):
                self._end(StreamIncomplete("stream abandoned before its end"), status="abandoned")
        except Exception:  # never raise from a finaliser
            pass


class SyncStreamProxy(_Proxy):
    __slots__ = ()

    def __iter__(self) -> SyncStreamProxy:
        return self

    def __next__(self) -> Any:
        if self._iter is None:
            self._iter = iter(self._wrapped)
        try:
            chunk = next(self._iter)
        except StopIteration:
            self._end()
            raise
        except BaseException as exc:
            self._end(exc, status="error")
            raise
        self._acc.add(chunk)
        return chunk

    def close(self) -> None:
        try:
            closer = getattr(self._wrapped, "close", None)
            if callable(closer):
                closer()
        finally:
            self._end(StreamIncomplete("stream closed before its end"), status="closed")

    def __enter__(self) -> SyncStreamProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncStreamProxy(_Proxy):
    __slots__ = ()

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        if self._iter is None:
            self._iter = self._wrapped.__aiter__()
        try:
            chunk = await self._iter.__anext__()
        except StopAsyncIteration:
            self._end()
            raise
        except BaseException as exc:
            self._end(exc, status="error")
            raise
        self._acc.add(chunk)
        return chunk

    async def aclose(self) -> None:
        try:
            closer = getattr(self._wrapped, "aclose", None) or getattr(self._wrapped, "close", None)
            if callable(closer):
                result = closer()
                if hasattr(result, "__await__"):
                    await result
        finally:
            self._end(StreamIncomplete("stream closed before its end"), status="closed")

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> AsyncStreamProxy:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
