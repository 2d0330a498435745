"""`@tool`: each execution is a traced step that counts toward `max_tool_calls`."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar, cast, overload

from cascadeflow.errors import ConfigError
from cascadeflow.pipeline import Step, begin, current, fail, finish, observe
from cascadeflow.request import Request
from cascadeflow.usage import Usage

F = TypeVar("F", bound=Callable[..., Any])
Handle = Step | observe.Capture  # enforce decides before the tool runs; observe only captures


@overload
def tool(name: F, *, irreversible: bool = False) -> F: ...


@overload
def tool(name: str | None = None, *, irreversible: bool = False) -> Callable[[F], F]: ...


def tool(name: str | Callable[..., Any] | None = None, *, irreversible: bool = False) -> Any:
    """Trace each execution; in enforce mode a denied tool raises `ToolDenied` and does not run.

    `irreversible=True` tools run only when the approver given to `init(approver=...)` says yes.
    Usable bare (`@tool`) or with arguments (`@tool(name="refund", irreversible=True)`).
    """
    if callable(name):
        return tool()(name)
    if name is not None and not isinstance(name, str):
        raise ConfigError("name", name, "@tool()", "expected the tool's name as a string")
    if not isinstance(irreversible, bool):
        raise ConfigError("irreversible", irreversible, "@tool()", "expected true or false")

    def decorate(fn: F) -> F:
        tool_name = name or getattr(fn, "__name__", None)
        if not isinstance(tool_name, str) or not tool_name:  # a callable object, a functools.partial
            raise ConfigError("name", name, "@tool()",
                              f"{type(fn).__name__} has no __name__: give the tool one, "
                              f"@tool(name=...)")

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Handle | None:
            rt = current()
            if rt.mode == "off":
                return None
            request = Request(operation="tool", client="tool", model=tool_name, tool=tool_name,
                              irreversible=irreversible, kwargs={"args": args, "kwargs": kwargs})
            if rt.enforce:
                return begin(rt, request)
            return observe.capture(rt, observe.tool_request(request), (), {})

        if inspect.isgeneratorfunction(fn):
            return cast(F, _wrap_gen(fn, start, tool_name))
        if inspect.isasyncgenfunction(fn):
            return cast(F, _wrap_async_gen(fn, start, tool_name))
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):
            @functools.wraps(fn)
            async def async_call(*args: Any, **kwargs: Any) -> Any:
                handle = start(args, kwargs)
                if handle is None:
                    return await fn(*args, **kwargs)
                _span_started(handle, tool_name)
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    _failed(handle, exc)
                    raise
                finally:
                    if handle.span is not None:
                        handle.rt.span_sent(handle.span)
                _done(handle)
                return result
            return cast(F, async_call)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            handle = start(args, kwargs)
            if handle is None:
                return fn(*args, **kwargs)
            _span_started(handle, tool_name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                _failed(handle, exc)
                raise
            finally:
                if handle.span is not None:
                    handle.rt.span_sent(handle.span)
            if asyncio.isfuture(result):  # a task it started: handed back as it is (the caller
                # may cancel it or add callbacks), the step settled when it is done
                result.add_done_callback(functools.partial(_future_settled, handle))
                return result
            if inspect.isawaitable(result):  # a lambda or sync wrapper handing back a coroutine:
                return _settled_when_awaited(handle, result)  # the work happens when awaited
            if inspect.isgenerator(result):  # or a generator: the work happens as it is iterated
                return _settled_when_exhausted(handle, result)
            if inspect.isasyncgen(result):
                return _settled_when_exhausted_async(handle, result)
            _done(handle)
            return result
        return cast(F, call)

    return decorate


async def _settled_when_awaited(handle: Handle, awaitable: Any) -> Any:
    """The step of a tool whose function returned an awaitable ends when that is done."""
    try:
        result = await awaitable
    except BaseException as exc:
        _failed(handle, exc)
        raise
    _done(handle)
    return result


def _future_settled(handle: Handle, future: asyncio.Future[Any]) -> None:
    """The step of a tool whose function returned a task or future ends when that is done."""
    error = asyncio.CancelledError() if future.cancelled() else future.exception()
    if error is None:
        _done(handle)
    else:
        _failed(handle, error)


def _settled_when_exhausted(handle: Handle, inner: Generator[Any, Any, Any]) -> Generator[Any, Any, Any]:
    """The step of a tool whose function returned a generator ends with it (a consumer that
    stops early ends it as done, as a generator function's step does)."""
    try:
        result = yield from inner
    except GeneratorExit:
        _done(handle)
        raise
    except BaseException as exc:
        _failed(handle, exc)
        raise
    _done(handle)
    return result


async def _settled_when_exhausted_async(handle: Handle, inner: AsyncGenerator[Any, Any]
                                        ) -> AsyncGenerator[Any, Any]:
    """`_settled_when_exhausted` for an async generator (asend, athrow and aclose relayed)."""
    sent: Any = None
    thrown: BaseException | None = None
    try:
        while True:
            try:
                item = await (inner.athrow(thrown) if thrown is not None else inner.asend(sent))
            except StopAsyncIteration:
                break
            thrown = None
            try:
                sent = yield item
            except GeneratorExit:
                await inner.aclose()
                _done(handle)
                raise
            except BaseException as exc:
                thrown = exc
    except GeneratorExit:
        raise
    except BaseException as exc:
        _failed(handle, exc)
        raise
    _done(handle)


Start = Callable[[tuple[Any, ...], dict[str, Any]], "Handle | None"]


def _wrap_gen(fn: Callable[..., Generator[Any, Any, Any]], start: Start, name: str
              ) -> Callable[..., Generator[Any, Any, Any]]:
    """A generator tool is one step from its first `next()` to its end: the step used to finish
    when the generator object was made, before any of its code ran, so an error it raised
    was traced as a success. A denied tool raises on the first `next()`. The step's span is
    current until the first item only: it must not stay current in the consumer's code."""
    @functools.wraps(fn)
    def gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        handle = start(args, kwargs)
        if handle is None:
            return (yield from fn(*args, **kwargs))
        _span_started(handle, name)
        current = handle.span is not None
        try:
            inner = fn(*args, **kwargs)
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                try:
                    item = inner.throw(thrown) if thrown is not None else inner.send(sent)
                except StopIteration as stop:
                    result = stop.value
                    break
                finally:
                    if current:
                        current = False
                        handle.rt.span_sent(handle.span)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:  # the consumer stopped early: the tool did what was asked
                    inner.close()
                    _done(handle)
                    raise
                except BaseException as exc:  # thrown in by the consumer: hand it on
                    thrown = exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            _failed(handle, exc)
            raise
        finally:
            if current:
                handle.rt.span_sent(handle.span)
        _done(handle)
        return result
    return gen


def _wrap_async_gen(fn: Callable[..., AsyncGenerator[Any, Any]], start: Start, name: str
                    ) -> Callable[..., AsyncGenerator[Any, Any]]:
    """An async generator tool is one step from its first item to its end (see `_wrap_gen`)."""
    @functools.wraps(fn)
    async def agen(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        handle = start(args, kwargs)
        sent: Any = None
        thrown: BaseException | None = None
        if handle is None:  # off: exactly the function's generator (asend, athrow and aclose reach it)
            inner = fn(*args, **kwargs)
            try:
                while True:
                    try:
                        item = await (inner.athrow(thrown) if thrown is not None else inner.asend(sent))
                    except StopAsyncIteration:
                        return
                    thrown = None
                    try:
                        sent = yield item
                    except GeneratorExit:
                        raise
                    except BaseException as exc:
                        thrown = exc
            finally:
                await inner.aclose()
        _span_started(handle, name)
        current = handle.span is not None
        try:
            inner = fn(*args, **kwargs)
            while True:
                try:
                    item = await (inner.athrow(thrown) if thrown is not None else inner.asend(sent))
                except StopAsyncIteration:
                    break
                finally:
                    if current:
                        current = False
                        handle.rt.span_sent(handle.span)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    await inner.aclose()
                    _done(handle)
                    raise
                except BaseException as exc:
                    thrown = exc
        except GeneratorExit:
            raise
        except BaseException as exc:
            _failed(handle, exc)
            raise
        finally:
            if current:
                handle.rt.span_sent(handle.span)
        _done(handle)
    return agen


def _span_started(handle: Handle, name: str) -> None:
    """The `execute_tool` span (`handle.span`), current while the tool's code runs."""
    if handle.rt.observer is not None:
        handle.span = handle.rt.span_started(handle.session, "tool", name)


def _done(handle: Handle) -> None:
    if isinstance(handle, Step):
        finish(handle, Usage())
    else:
        observe.usage_done(handle, Usage())


def _failed(handle: Handle, exc: BaseException) -> None:
    if isinstance(handle, Step):
        fail(handle, exc)
    else:
        observe.failed(handle, exc)
