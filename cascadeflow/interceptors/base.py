"""Patching that restores exactly, and the sync/async wrappers every adapter shares.

A wrapper turns the library's call into a `Request`, runs it through the pipeline and hands the
library's own response back. While one intercepted call runs, nested intercepted calls (litellm
calling the openai SDK underneath) pass straight through, so one call is one step.
"""

from __future__ import annotations

import functools
import threading
import time
import types
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cascadeflow.errors import ConfigError
from cascadeflow.interceptors.inside import inside as _inside
from cascadeflow.interceptors.raw import RawResponseProxy
from cascadeflow.interceptors.streams import (
    AsyncStreamProxy,
    SyncStreamProxy,
    enforce_settle,
    finish_is_last,
    sent_request,
)
from cascadeflow.pipeline import (
    CascadeRunner,
    Runtime,
    Step,
    abegin,
    attempting,
    begin,
    fail,
    finish,
    observe,
    respond,
    settle_output,
)
from cascadeflow.pipeline import runtime as _runtime
from cascadeflow.pipeline.observe import Capture
from cascadeflow.request import PROMPT_KEYS, Request
from cascadeflow.usage import StreamAccumulator, Usage

ToRequest = Callable[[tuple[Any, ...], dict[str, Any]], Request | None]
RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"  # how the openai SDK asks `create` for a raw response

_lock = threading.RLock()
_active: frozenset[str] = frozenset()  # the libraries instrumented now: others' wrappers pass through


def set_active(libraries: frozenset[str]) -> None:
    """Which libraries' wrappers intercept: a wrapper still referenced after its library was
    restored (a bound method, a `with_raw_response` holder) passes straight through."""
    global _active
    _active = libraries


@dataclass(slots=True)
class Patch:
    """One replaced attribute and everything needed to put the original back."""

    owner: Any
    name: str
    original: Any
    had_own: bool
    wrapper: Any

    def restore(self) -> bool:
        """Take the wrapper out; False when it must stay (see `unpatch_all`)."""
        top = vars(self.owner).get(self.name)
        if top is self.wrapper:
            if self.had_own:
                setattr(self.owner, self.name, self.original)
            else:
                delattr(self.owner, self.name)
            return True
        above, gone = _layer_above(top, self.wrapper)
        if gone:
            return True  # replaced by a chain without ours: nothing of ours is left to remove
        if above is not None and _is_proxy(above):  # wrapt (OpenTelemetry instrumentors)
            above.__wrapped__ = self.original  # splice ours out from beneath it
            return True
        return False


def _layer_above(top: Any, wrapper: Any) -> tuple[Any, bool]:
    """(the layer whose `__wrapped__` is ours, following the chain down from `top`, or None;
    whether ours is certainly not in it: a chain of `__wrapped__` that ends without it)."""
    layer, depth = top, 0
    while depth < 32:
        inner = getattr(layer, "__wrapped__", None)
        if inner is None:
            return None, depth > 0
        if inner is wrapper:
            return layer, False
        layer, depth = inner, depth + 1
    return None, False


def _is_proxy(layer: Any) -> bool:
    """A wrapt object proxy, whose `__wrapped__` is what it calls (a `functools.wraps`
    function's `__wrapped__` is only a note: setting it changes nothing)."""
    return any(c.__name__ == "ObjectProxy" and "wrap" in c.__module__ for c in type(layer).__mro__)


_patches: dict[tuple[int, str], Patch] = {}


def patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Wrap `owner.name` with `make(original)` once; a second call keeps the first patch.

    Wrapt proxies already there (OpenTelemetry instrumentors) stay on top, with ours beneath
    them: their `uninstrument()` puts back what their proxy wraps, which must then be ours, not
    a proxy left beneath ours still reporting. Whatever the order of installing, the chain is
    the same: instrumentors' proxies, ours, the original."""
    with _lock:
        key = (id(owner), name)
        if key in _patches:
            return
        had_own = name in vars(owner)
        lowest = _lowest_proxy(vars(owner)[name]) if had_own else None
        if lowest is not None:
            original = lowest.__wrapped__
            wrapper = make(original)
            lowest.__wrapped__ = wrapper
        else:
            original = vars(owner)[name] if had_own else getattr(owner, name, None)
            wrapper = make(original)
            setattr(owner, name, wrapper)
        _patches[key] = Patch(owner, name, original, had_own, wrapper)


def _lowest_proxy(top: Any) -> Any:
    """The last of the wrapt proxies that wrap one another from `top` down, or None."""
    lowest = None
    layer = top
    for _ in range(32):
        if not _is_proxy(layer):
            break
        lowest, layer = layer, layer.__wrapped__
    return lowest


def unpatch_all() -> None:
    """Remove every wrapper of ours, and only ours. A wrapt proxy above ours (OpenTelemetry's)
    is kept, with ours spliced out from beneath it; a wrapper we cannot splice out of stays in
    its chain, passing straight through while cascadeflow is inactive, and is removed by a
    later `unpatch_all` once it is on top again (a later `patch` reuses it)."""
    with _lock:
        for key, item in reversed(list(_patches.items())):
            if item.restore():
                del _patches[key]


def unpatch_library(library: str) -> None:
    """`unpatch_all` for one client library's patches only (`litellm`, `openai`): a later
    `init()` that no longer names it leaves it as it found it."""
    with _lock:
        for key, item in reversed(list(_patches.items())):
            if _library(item.owner) == library and item.restore():
                del _patches[key]


def _library(owner: Any) -> str:
    """The top-level package a patched module or class belongs to."""
    name = owner.__name__ if isinstance(owner, types.ModuleType) else owner.__module__
    return str(name).split(".")[0]


def patched() -> list[Patch]:
    with _lock:
        return list(_patches.values())


def _endpoint(request: Request) -> str | None:
    """The base URL an openai SDK client calls: its cascade's breakers are that endpoint's (a
    litellm call's endpoints are its tiers')."""
    return request.api_base if request.client == "openai" else None


def _cascade(rt: Runtime, args: tuple[Any, ...], kwargs: dict[str, Any], to_request: ToRequest
             ) -> tuple[CascadeRunner, Request] | None:
    """The configured cascade when the requested model is one of its logical names. Never for a
    cascade's own attempt: a cascade named like a model of its tiers (`gpt-4o`, a tier
    `openai/gpt-4o` sent as `gpt-4o` through the openai SDK) would call itself without end."""
    if attempting.get():
        return None
    model = kwargs.get("model")
    if model is None:  # litellm's positional form
        request = to_request(args, kwargs)
        model = None if request is None else request.model
    # a str Enum hashes by its member name: looked up by its value
    cascade = rt.cascades.get(str.__str__(model)) if isinstance(model, str) else None
    if cascade is None:
        return None
    request = to_request(args, kwargs)
    if request is None:
        return None
    if request.stream and _raw_kind(request.kwargs) is not None:
        # a cascade reads a stream's first chunk to judge it, and hands back a stream of its own
        raise ConfigError("model", model, "a raw streaming call (with_raw_response or "
                          "with_streaming_response, stream=True)",
                          f"the cascade {model!r} answers streams through the plain call only: "
                          "call create(..., stream=True) without with_raw_response")
    if request.client == "openai" and request.args:
        own = getattr(getattr(request.args[0], "_client", None), "timeout", None)
        if own is not None and "timeout" not in request.kwargs:  # the client's own bounds each attempt
            request.kwargs["timeout"] = own
        request.args = (_without_retries(request.args[0]), *request.args[1:])
    return cascade, request


def _without_retries(resource: Any) -> Any:
    """The resource on a copy of its openai SDK client that never retries: the cascade retries,
    with its backoff, deadline and breakers, and the SDK's own retries (2 by default) made each
    attempt up to 3 requests. The caller's client is left as it is."""
    client = getattr(resource, "_client", None)
    copy = getattr(client, "with_options", None)
    if copy is None or getattr(client, "max_retries", 0) == 0:
        return resource
    try:
        return type(resource)(copy(max_retries=0))
    except TypeError:  # an SDK whose resources are made otherwise: its retries stay
        return resource


def _model(kwargs: dict[str, Any]) -> str:
    """The model asked for, for the span's name before the worker knows the request."""
    model = kwargs.get("model")  # (litellm's positional forms name it later, on the worker)
    return str.__str__(model) if isinstance(model, str) else ""


def _raw_kind(kwargs: dict[str, Any]) -> str | None:
    headers = kwargs.get("extra_headers")
    return headers.get(RAW_RESPONSE_HEADER) if isinstance(headers, dict) else None


# -- enforce: decide, maybe change or stop, send, settle -------------------------------------
def _response(step: Step, result: Any, is_async: bool) -> Any:
    request = step.request
    raw = _raw_kind(request.kwargs) if "extra_headers" in request.kwargs else None
    if raw is not None and (raw == "stream" or request.stream):  # the caller reads the body later
        return RawResponseProxy(
            result, functools.partial(_enforce_body, step),
            functools.partial(_enforce_stream, step, is_async) if request.stream else None,
            functools.partial(_enforce_unread, step), functools.partial(_enforce_events, step),
            edits=_edits(step), operation=request.operation)
    if request.stream:
        return _enforce_stream(step, is_async, result)
    if raw:
        return _enforce_raw(step, result)
    if step.view.output_acts or step.placeholders is not None:  # `_enforce_body`, inline
        settle_output(step, result)
    else:
        respond(step, result, request.operation)
    return result


def _enforce_raw(step: Step, raw: Any) -> Any:
    """Settle from a raw response's body, read now (the SDK keeps what `parse()` returned, so
    the caller's `parse()` gets the same, edited, object). A body that does not parse settles
    the step as failed and the raw response is returned, as with cascadeflow off: the caller's
    `parse()` raises. Unless output rules or placeholders had to edit that body: unvetted, it is
    not handed over, and the error is raised here."""
    try:
        body = raw.parse()
    except Exception as exc:
        fail(step, exc)
        if _edits(step):
            raise
        return raw
    _enforce_body(step, body)
    if not _edits(step):
        return raw
    # its `.text` and `.content` hand over the edited answer too, not the provider's bytes
    return RawResponseProxy(raw, functools.partial(_enforce_body, step), None,
                            functools.partial(_enforce_unread, step), edits=True).settled(body)


def _edits(step: Step) -> bool:
    """Whether output rules or the run's placeholders may change the answer the caller gets."""
    return step.view.output_acts or step.placeholders is not None


def _enforce_stream(step: Step, is_async: bool, stream: Any) -> Any:
    settle = functools.partial(enforce_settle, step)
    late = functools.partial(step.rt.worker.submit, enforce_settle, step)
    cls = AsyncStreamProxy if is_async else SyncStreamProxy
    operation = step.request.operation
    return cls(stream, operation, settle, late, step, finish_is_last(operation, step.kwargs, stream))


def _enforce_body(step: Step, body: Any) -> None:
    if _edits(step):  # the answer may be edited here
        settle_output(step, body)
    else:
        respond(step, body, step.request.operation)


def _enforce_events(step: Step, events: list[Any]) -> None:
    enforce_settle(step, _accumulated(step.request.operation, events), None, "ok")


def _accumulated(operation: str, events: list[Any]) -> StreamAccumulator:
    """A stream's events the caller read by hand, as the stream proxy would have seen them."""
    acc = StreamAccumulator(operation)
    for event in events:
        acc.add(event)
    return acc


def _enforce_unread(step: Step) -> None:
    finish(step, StreamAccumulator(step.request.operation).finish(sent_request(step)), status="unread")


# -- observe: capture, send, hand back; the worker does the rest -----------------------------
def _observed(cap: Capture, result: Any, operation: str, kwargs: dict[str, Any], is_async: bool) -> Any:
    stream = kwargs.get("stream") is True
    if "extra_headers" not in kwargs:
        if stream:
            return _observed_stream(cap, operation, is_async, result)
        # the usual call: settled by the worker from the response
        cap.rt.worker.submit(observe.settle_response, cap, result, operation, time.perf_counter_ns())
        return result
    raw = _raw_kind(kwargs)
    if raw is not None and (raw == "stream" or stream):
        return RawResponseProxy(
            result, functools.partial(observe.done, cap, operation=operation),
            functools.partial(_observed_stream, cap, operation, is_async) if stream else None,
            functools.partial(_observed_unread, cap), functools.partial(_observed_events, cap, operation))
    if stream:
        return _observed_stream(cap, operation, is_async, result)
    if raw:
        return _observed_raw(cap, result, operation)
    observe.done(cap, result, operation)
    return result


def _observed_raw(cap: Capture, raw: Any, operation: str) -> Any:
    """Settle from a raw response's body, read now (the SDK keeps what `parse()` returned); a
    body that does not parse is recorded as the error the caller's own `parse()` will raise."""
    try:
        body = raw.parse()
    except Exception as exc:
        observe.failed(cap, exc)
    else:
        observe.done(cap, body, operation)
    return raw


def _observed_stream(cap: Capture, operation: str, is_async: bool, stream: Any) -> Any:
    settle = functools.partial(observe.stream_done, cap)
    cls = AsyncStreamProxy if is_async else SyncStreamProxy
    return cls(stream, operation, settle, settle, None, finish_is_last(operation, cap.kwargs, stream))


def _observed_events(cap: Capture, operation: str, events: list[Any]) -> None:
    observe.stream_done(cap, _accumulated(operation, events), None, "ok", cuts=False)


def _observed_unread(cap: Capture) -> None:
    observe.usage_done(cap, Usage(estimated=True), status="unread")


def sync_wrapper(original: Callable[..., Any], to_request: ToRequest, operation: str, library: str
                 ) -> Callable[..., Any]:
    prompt_key = PROMPT_KEYS.get(operation)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        underneath = _inside.get()
        if underneath is not None:  # the outer call's step covers this one
            if library not in underneath:
                underneath.append(library)
            return original(*args, **kwargs)
        if library not in _active:
            return original(*args, **kwargs)
        rt = _runtime._installed  # `current()`, one frame less on every call
        if rt.mode == "off":
            return original(*args, **kwargs)
        if rt.cascades:
            routed = _cascade(rt, args, kwargs, to_request)
            if routed is not None:  # each tier's attempt comes back through this wrapper
                cascade, request = routed
                return cascade.run(lambda **kw: wrapper(*request.args, **kw), request.kwargs,
                                   request.client, request.reachable, request.operation, _endpoint(request))
        if not rt.enforce:
            cap = observe.capture(rt, to_request, args, kwargs, prompt_key)
            token = _inside.set(cap.underneath)
            if rt.observer is not None:
                cap.span = rt.span_started(cap.session, operation, _model(kwargs))
            try:
                result = original(*args, **kwargs)
            except BaseException as exc:
                observe.failed(cap, exc)
                raise
            finally:
                _inside.reset(token)
                if cap.span is not None:
                    rt.span_sent(cap.span)
            if "extra_headers" not in kwargs and kwargs.get("stream") is not True:
                # the usual call (`_observed`, inline): settled by the worker from the response
                cap.rt.worker.submit(observe.settle_response, cap, result, operation, time.perf_counter_ns())
                return result
            return _observed(cap, result, operation, kwargs, False)
        wanted = to_request(args, kwargs)
        if wanted is None:
            return original(*args, **kwargs)
        step = begin(rt, wanted)
        step.request.underneath = []
        token = _inside.set(step.request.underneath)
        if rt.observer is not None:
            step.span = rt.span_started(step.session, operation, step.model)
        try:
            result = original(*step.args, **step.kwargs)
        except BaseException as exc:
            fail(step, exc)
            raise
        finally:
            _inside.reset(token)
            if step.span is not None:
                rt.span_sent(step.span)
        return _response(step, result, is_async=False)

    wrapper.__cascadeflow_original__ = original  # type: ignore[attr-defined]
    return wrapper


def async_wrapper(original: Callable[..., Awaitable[Any]], to_request: ToRequest, operation: str,
                  library: str) -> Callable[..., Awaitable[Any]]:
    prompt_key = PROMPT_KEYS.get(operation)

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        underneath = _inside.get()
        if underneath is not None:  # the outer call's step covers this one
            if library not in underneath:
                underneath.append(library)
            return await original(*args, **kwargs)
        if library not in _active:
            return await original(*args, **kwargs)
        rt = _runtime._installed  # `current()`, one frame less on every call
        if rt.mode == "off":
            return await original(*args, **kwargs)
        if rt.cascades:
            routed = _cascade(rt, args, kwargs, to_request)
            if routed is not None:
                cascade, request = routed
                return await cascade.arun(lambda **kw: wrapper(*request.args, **kw), request.kwargs,
                                          request.client, request.reachable, request.operation,
                                          _endpoint(request))
        if not rt.enforce:
            cap = observe.capture(rt, to_request, args, kwargs, prompt_key)
            token = _inside.set(cap.underneath)
            if rt.observer is not None:
                cap.span = rt.span_started(cap.session, operation, _model(kwargs))
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                observe.failed(cap, exc)
                raise
            finally:
                _inside.reset(token)
                if cap.span is not None:
                    rt.span_sent(cap.span)
            return _observed(cap, result, operation, kwargs, True)
        wanted = to_request(args, kwargs)
        if wanted is None:
            return await original(*args, **kwargs)
        step = await abegin(rt, wanted)
        step.request.underneath = []
        token = _inside.set(step.request.underneath)
        if rt.observer is not None:
            step.span = rt.span_started(step.session, operation, step.model)
        try:
            result = await original(*step.args, **step.kwargs)
        except BaseException as exc:
            fail(step, exc)
            raise
        finally:
            _inside.reset(token)
            if step.span is not None:
                rt.span_sent(step.span)
        return _response(step, result, is_async=True)

    wrapper.__cascadeflow_original__ = original  # type: ignore[attr-defined]
    return wrapper


def maker(to_request: ToRequest, is_async: bool, operation: str, library: str) -> Callable[[Any], Any]:
    """The factory `patch` calls with the original function of `library` (`litellm`, `openai`)."""
    def make(original: Any) -> Any:
        if is_async:
            return async_wrapper(original, to_request, operation, library)
        return sync_wrapper(original, to_request, operation, library)
    return make
