"""A cascaded stream: the first chunk was peeked (a failure before it falls through to the next
tier); a failure after it, or an end before the provider finished, raises `StreamInterrupted`
with what was received, never a silent switch to another model mid-answer. A stop of the policy
(enforce mode's budget cut, a guardrail's block) is raised as it is: the deployment did no wrong."""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any

from cascadeflow.cascade.clients import Lease
from cascadeflow.closing import aclose, close
from cascadeflow.errors import CascadeflowError, PolicyStop
from cascadeflow.secrets import mask
from cascadeflow.usage import provider_finished


class StreamInterrupted(CascadeflowError):
    """A stream failed after its first chunk: the answer is incomplete. `received` holds it;
    `failure` says how: `stream_broken` (the connection broke) or `truncated` (the stream ended
    before the provider finished it)."""

    def __init__(self, message: str, received: str, tier: str, failure: str = "stream_broken") -> None:
        super().__init__(message)
        self.received = received
        self.tier = tier
        self.failure = failure


def _chunk_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    return str(getattr(delta, "content", None) or "")


def _finishes(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None) or []
    return bool(choices) and getattr(choices[0], "finish_reason", None) is not None


def empty_start(stream: Any, first: Any) -> bool:
    """Whether the first chunk is all there is of an empty stream: litellm makes up a last chunk
    with finish reason "stop" when the provider ended the stream without one, and sends it first
    when nothing came before it."""
    return _finishes(first) and not _chunk_text(first) and not _tool_calls(first) \
        and not provider_finished(stream, False)


def _tool_calls(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    return bool(getattr(delta, "tool_calls", None))


def static_chunk(text: str, client: str) -> Any:
    """A static last tier's text as the one chunk of a stream, shaped like the client's own."""
    body = {"id": "cascadeflow-static", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": "static", "choices": [{"index": 0, "finish_reason": "stop",
                                            "delta": {"role": "assistant", "content": text}}]}
    if client == "openai":
        from openai.types.chat import ChatCompletionChunk

        return ChatCompletionChunk.model_validate(body)
    import litellm

    return litellm.ModelResponseStream(**body)


class _Peeked:
    """What both kinds share: the peeked chunk, the text so far, whether the provider finished."""

    def __init__(self, first: Any, stream: Any, tier: str, degraded: bool,
                 conceal: Callable[[str], str] = mask, broken: Callable[[], None] | None = None,
                 lease: Lease | None = None) -> None:
        """`conceal` masks the secrets an error's text may quote (the key the call was sent);
        `broken` tells the deployment's breaker that the stream broke midway; `lease` holds the
        pooled client the stream reads through, given back when the stream ends, breaks, is
        closed, or is collected unfinished (or at exit)."""
        self._lease = lease
        self._released = None if lease is None else weakref.finalize(self, lease.release)
        self._pending: list[Any] = [first]
        self._conceal = conceal
        self._broken = broken
        self._stream = stream
        self._received: list[str] = []
        self._finished = False
        self.tier = tier
        self.degraded = degraded

    def _seen(self, chunk: Any) -> Any:
        self._received.append(_chunk_text(chunk))
        self._finished = self._finished or _finishes(chunk)
        return chunk

    def _ended(self) -> StreamInterrupted | None:
        """At the stream's end: the error when the provider had not finished it."""
        if provider_finished(self._stream, self._finished):
            return None
        return StreamInterrupted(f"the stream from {self.tier} ended after {len(self._received)} chunks "
                                 "before the provider finished it: the answer is incomplete",
                                 "".join(self._received), self.tier, failure="truncated")

    def _done(self) -> None:
        """The client is given back (a sync one: closed if `shutdown()` retired it meanwhile)."""
        if self._released is not None:
            self._released()

    async def _adone(self) -> None:
        if self._released is not None and self._released.detach() is not None:
            assert self._lease is not None
            await self._lease.arelease()

    def _broke(self, exc: BaseException) -> StreamInterrupted:
        if self._broken is not None:
            self._broken()
        return StreamInterrupted(f"the stream from {self.tier} broke after {len(self._received)} chunks: "
                                 f"{self._conceal(str(exc))}", "".join(self._received), self.tier)


class SyncCascadeStream(_Peeked):
    """Yields the peeked first chunk, then the rest; a mid-stream failure raises StreamInterrupted."""

    def __init__(self, first: Any, iterator: Iterator[Any], stream: Any, tier: str, degraded: bool,
                 conceal: Callable[[str], str] = mask, broken: Callable[[], None] | None = None,
                 lease: Lease | None = None) -> None:
        super().__init__(first, stream, tier, degraded, conceal, broken, lease)
        self._iterator = iterator

    def __iter__(self) -> SyncCascadeStream:
        return self

    def __next__(self) -> Any:
        if self._pending:
            return self._seen(self._pending.pop())
        try:
            chunk = next(self._iterator)
        except StopIteration:
            self._done()
            error = self._ended()
            if error is not None:
                raise error from None
            raise
        except PolicyStop:  # the policy cut it (a budget, a guardrail): not the deployment's fault
            raise
        except Exception as exc:
            self._done()
            raise self._broke(exc) from exc
        return self._seen(chunk)

    def close(self) -> None:
        try:
            close(self._stream)
        finally:
            self._done()

    def __enter__(self) -> SyncCascadeStream:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncCascadeStream(_Peeked):
    def __init__(self, first: Any, iterator: AsyncIterator[Any], stream: Any, tier: str,
                 degraded: bool, conceal: Callable[[str], str] = mask,
                 broken: Callable[[], None] | None = None, lease: Lease | None = None) -> None:
        super().__init__(first, stream, tier, degraded, conceal, broken, lease)
        self._iterator = iterator

    def __aiter__(self) -> AsyncCascadeStream:
        return self

    async def __anext__(self) -> Any:
        if self._pending:
            return self._seen(self._pending.pop())
        try:
            chunk = await self._iterator.__anext__()
        except StopAsyncIteration:
            await self._adone()
            error = self._ended()
            if error is not None:
                raise error from None
            raise
        except PolicyStop:  # the policy cut it (a budget, a guardrail): not the deployment's fault
            raise
        except Exception as exc:
            await self._adone()
            raise self._broke(exc) from exc
        return self._seen(chunk)

    async def aclose(self) -> None:
        try:
            await aclose(self._stream)
        finally:
            await self._adone()

    async def close(self) -> None:  # the openai SDK's AsyncStream is closed with `await close()`
        await self.aclose()

    async def __aenter__(self) -> AsyncCascadeStream:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
