"""Patching that restores exactly, and the sync/async wrappers every adapter shares.

A wrapper turns the library's call into a `Request`, runs it through the pipeline and hands the
library's own response back. While one intercepted call runs, nested intercepted calls (litellm
calling the openai SDK underneath) pass straight through, so one call is one step.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from cascadeflow import pipeline, runtime
from cascadeflow.guardrails.enforce import check_output
from cascadeflow.interceptors.streams import AsyncStreamProxy, SyncStreamProxy
from cascadeflow.request import Request, StreamAccumulator, read_usage

ToRequest = Callable[[tuple[Any, ...], dict[str, Any]], Request | None]

_inside: ContextVar[bool] = ContextVar("cascadeflow_inside_call", default=False)
_lock = threading.RLock()
_active = False


def set_active(value: bool) -> None:
    global _active
    _active = value


@dataclass(slots=True)
class Patch:
    """One replaced attribute and everything needed to put the original back."""

    owner: Any
    name: str
    original: Any
    had_own: bool
    wrapper: Any

    def restore(self) -> None:
        if self.had_own:
            setattr(self.owner, self.name, self.original)
        else:
            delattr(self.owner, self.name)


_patches: dict[tuple[int, str], Patch] = {}


def patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace `owner.name` with `make(original)` once; a second call keeps the first patch."""
    with _lock:
        key = (id(owner), name)
        if key in _patches:
            return
        had_own = name in vars(owner)
        original = vars(owner)[name] if had_own else getattr(owner, name)
        wrapper = make(original)
        setattr(owner, name, wrapper)
        _patches[key] = Patch(owner, name, original, had_own, wrapper)


def unpatch_all() -> None:
    with _lock:
        for item in reversed(list(_patches.values())):
            item.restore()
        _patches.clear()


def patched() -> list[Patch]:
    with _lock:
        return list(_patches.values())


def _response(step: pipeline.Step, result: Any, is_async: bool) -> Any:
    request = step.request
    if request.stream:
        return AsyncStreamProxy(result, step) if is_async else SyncStreamProxy(result, step)
    if hasattr(result, "http_response") and callable(getattr(result, "parse", None)):
        # the SDK's raw-response wrappers: parse a read body, never consume a streamed one
        headers = request.kwargs.get("extra_headers") or {}
        if str(headers.get("X-Stainless-Raw-Response", "")).lower() == "stream":
            step.finish(StreamAccumulator(request.operation).finish(request))
            return result
        result_body = result.parse()
    else:
        result_body = result
    usage = read_usage(request.operation, result_body)
    step.finish(usage)
    check_output(step, result_body, usage.text)
    return result


def _intercept(to_request: ToRequest, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
    if not _active or _inside.get():
        return None
    return to_request(args, kwargs)


def _cascade(request: Request) -> Any:
    """The configured cascade when the requested model is a logical cascade name."""
    cascades = runtime.state().cascades
    return cascades.get(request.model) if cascades else None


def sync_wrapper(original: Callable[..., Any], to_request: ToRequest) -> Callable[..., Any]:
    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _intercept(to_request, args, kwargs)
        if request is None:
            return original(*args, **kwargs)
        cascade = _cascade(request)
        if cascade is not None:  # each tier's attempt comes back through this wrapper
            return cascade.run(lambda **kw: wrapper(*request.args, **kw), request.kwargs,
                               request.client, request.reachable)
        step = pipeline.begin(request)
        if step is None:
            return original(*args, **kwargs)
        token = _inside.set(True)
        try:
            result = original(*step.args, **step.kwargs)
        except BaseException as exc:
            step.fail(exc)
            raise
        finally:
            _inside.reset(token)
        return _response(step, result, is_async=False)

    wrapper.__cascadeflow_original__ = original  # type: ignore[attr-defined]
    return wrapper


def async_wrapper(original: Callable[..., Awaitable[Any]], to_request: ToRequest
                  ) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        request = _intercept(to_request, args, kwargs)
        if request is None:
            return await original(*args, **kwargs)
        cascade = _cascade(request)
        if cascade is not None:
            return await cascade.arun(lambda **kw: wrapper(*request.args, **kw), request.kwargs,
                                      request.client, request.reachable)
        step = pipeline.begin(request)
        if step is None:
            return await original(*args, **kwargs)
        token = _inside.set(True)
        try:
            result = await original(*step.args, **step.kwargs)
        except BaseException as exc:
            step.fail(exc)
            raise
        finally:
            _inside.reset(token)
        return _response(step, result, is_async=True)

    wrapper.__cascadeflow_original__ = original  # type: ignore[attr-defined]
    return wrapper


def maker(to_request: ToRequest, is_async: bool) -> Callable[[Any], Any]:
    """The factory `patch` calls with the original function."""
    def make(original: Any) -> Any:
        return async_wrapper(original, to_request) if is_async else sync_wrapper(original, to_request)
    return make
