"""litellm: completion, text_completion, embedding and responses, sync and async, streams, the
Router and the batch helpers.

The functions are replaced on the `litellm` module, which is where the Router and user code
look them up. Code that ran `from litellm import completion` before `init()` keeps the original
(intercepted only where litellm calls the openai SDK); litellm's error mapping is patched so a
stop raised there reaches that code as it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from cascadeflow.errors import stop_beneath
from cascadeflow.interceptors.base import maker as _maker
from cascadeflow.interceptors.base import patch
from cascadeflow.request import Request

# entry point -> (operation, names of its leading positional parameters, is async)
ENTRY_POINTS: dict[str, tuple[str, tuple[str, ...], bool]] = {
    "completion": ("chat", ("model", "messages"), False),
    "acompletion": ("chat", ("model", "messages"), True),
    "text_completion": ("text_completion", ("prompt", "model"), False),
    "atext_completion": ("text_completion", ("prompt", "model"), True),
    "embedding": ("embeddings", ("model", "input"), False),
    "aembedding": ("embeddings", ("model", "input"), True),
    "responses": ("responses", ("input", "model"), False),
    "aresponses": ("responses", ("input", "model"), True),
}


def _positional(function: Any) -> tuple[str, ...]:
    """The names of the parameters `function` takes by position, in order: a call that passes
    more than model and messages by position (`completion(model, messages, 30)`) is read too,
    not let through unchecked. Empty for `(*args, **kwargs)` (then the sync twin's are used)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return ()
    names: list[str] = []
    for parameter in parameters:
        if parameter.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            break
        names.append(parameter.name)
    return tuple(names)


def _adapter(operation: str, positional: tuple[str, ...]) -> Any:
    def to_request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Request | None:
        if not args:
            call = kwargs  # the wrapper's own **kwargs: a fresh dict no one else holds
        else:
            if len(args) > len(positional):
                return None  # an unusual call shape: let it through untouched rather than guess
            merged = dict(zip(positional, args, strict=False))
            if any(k in kwargs for k in merged):
                return None
            call = {**merged, **kwargs}
        model = call.get("model")
        if not isinstance(model, str):
            return None
        model = str.__str__(model)  # a str Enum's value, as litellm reads it
        provider = call.get("custom_llm_provider")
        if type(provider) is not str:
            provider = model.partition("/")[0] if "/" in model else None
        # positional arguments travel as keywords: the same call for litellm, and editable
        return Request(operation, "litellm", model, call, provider, (), call.get("stream") is True,
                       call.get("api_base") or call.get("base_url"))

    return to_request


def instrument() -> bool:
    """Patch litellm; False when it is not installed."""
    try:
        import litellm
    except ImportError:
        return False
    for name, (operation, positional, is_async) in ENTRY_POINTS.items():
        if not hasattr(litellm, name):
            continue
        names = _positional(getattr(litellm, name)) or _positional(getattr(litellm, name[1:], None))
        patch(litellm, name, _maker(_adapter(operation, names or positional), is_async, operation,
                                       "litellm"))
    _pass_stops_through()
    _carry_context_into_batches()
    _carry_context_into_sync_bridges()
    return True


def _carry_context_into_sync_bridges() -> None:
    """The Router's sync methods (and `completion_with_fallbacks`) run their async twin through
    `run_async_function`, which, where an event loop already runs (a notebook cell, sync code
    called from async code), runs it on a thread of its own with an empty context: its calls
    counted in the ambient session, past the caller's budget and step limit. Patched in each
    module that imported it by name, to run the coroutine in a copy of the caller's context."""
    from litellm.litellm_core_utils import asyncify

    _patch_where_imported("run_async_function", asyncify.run_async_function, _in_callers_context)


def _in_callers_context(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def run_async_function(async_function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        context = contextvars.copy_context()

        async def in_context() -> Any:
            return await asyncio.get_running_loop().create_task(async_function(*args, **kwargs),
                                                                context=context)

        return original(in_context)

    run_async_function.__cascadeflow_original__ = original  # type: ignore[attr-defined]
    return run_async_function


def _patch_where_imported(name: str, source: Any, make: Callable[[Any], Any]) -> None:
    """Patch `name` in every litellm module that holds `source` under it."""
    for module in [m for n, m in list(sys.modules.items()) if n.split(".")[0] == "litellm"]:
        if getattr(module, name, None) is source:
            patch(module, name, make)


def _carry_context_into_batches() -> None:
    """`batch_completion` and `batch_completion_models` send each call from a thread pool of
    their own, whose threads start with an empty context: without this their calls would count
    in the ambient session, outside the caller's budget and step limit. Their module's pool
    runs each call in a copy of the context it was submitted from, the caller's."""
    try:
        from litellm.batch_completion import main as batches
    except ImportError:
        return
    if isinstance(getattr(batches, "ThreadPoolExecutor", None), type):
        patch(batches, "ThreadPoolExecutor", _context_pool)


def _context_pool(original: type[concurrent.futures.ThreadPoolExecutor]) -> type:
    class ContextThreadPoolExecutor(original):  # type: ignore[valid-type,misc]
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            return super().submit(contextvars.copy_context().run, fn, *args, **kwargs)

    return ContextThreadPoolExecutor


def _pass_stops_through() -> None:
    """Have litellm's error mapping hand a PolicyStop on as it is. A litellm call that is not
    intercepted (its function imported before `init()`, `completion_with_retries`) reaches the
    openai SDK's interceptor, whose stop litellm would turn into a 500 to retry; the caller
    must get the stop, once. Patched in each module that imported the mapping by name."""
    from litellm.litellm_core_utils import exception_mapping_utils

    _patch_where_imported("exception_type", exception_mapping_utils.exception_type, _stop_first)


def _stop_first(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def exception_type(*args: Any, **kwargs: Any) -> Any:
        error = kwargs.get("original_exception", args[1] if len(args) > 1 else None)
        stop = stop_beneath(error) if isinstance(error, BaseException) else None
        return original(*args, **kwargs) if stop is None else stop

    exception_type.__cascadeflow_original__ = original  # type: ignore[attr-defined]
    return exception_type
