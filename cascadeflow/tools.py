"""`@tool`: each execution is a traced step that counts toward `max_tool_calls`."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
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
        tool_name = name or fn.__name__

        def start(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Handle | None:
            rt = current()
            if rt.mode == "off":
                return None
            request = Request(operation="tool", client="tool", model=tool_name, tool=tool_name,
                              irreversible=irreversible, kwargs={"args": args, "kwargs": kwargs})
            if rt.enforce:
                return begin(rt, request)
            return observe.capture(rt, observe.tool_request(request), (), {})

        if inspect.iscoroutinefunction(fn):
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
            _done(handle)
            return result
        return cast(F, call)

    return decorate


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
