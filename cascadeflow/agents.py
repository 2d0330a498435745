"""`run()` and `@agent`: both open a session; an agent opens a fresh child session per call."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any, TypeVar, cast, overload

from cascadeflow.config import RunLimits, limits
from cascadeflow.config import resolve as resolve_config
from cascadeflow.errors import ConfigError
from cascadeflow.pipeline import Runtime, initialised
from cascadeflow.pipeline import current as current_runtime
from cascadeflow.session import Session, current, reset_current, set_current

F = TypeVar("F", bound=Callable[..., Any])


def _merge(base: RunLimits, given: dict[str, Any], source: str) -> RunLimits:
    explicit = {k: v for k, v in given.items() if v is not None}
    return limits({**base.model_dump(exclude_defaults=True), **explicit}, source)


def run(*, budget: float | None = None, max_tool_calls: int | None = None, max_steps: int | None = None,
        max_latency_ms: float | None = None, compliance: str | None = None,
        kpi_weights: dict[str, float] | None = None, guardrails: str | None = None,
        tools_allow: list[str] | None = None, tools_deny: list[str] | None = None,
        user: str | None = None, agent: str | None = None, project: str | None = None,
        metadata: dict[str, Any] | None = None) -> Session:
    """A session to use as `with` or `async with`; values not given come from `init`/config."""
    rt = current_runtime()
    given = {"budget": budget, "max_tool_calls": max_tool_calls, "max_steps": max_steps,
             "max_latency_ms": max_latency_ms, "compliance": compliance, "kpi_weights": kpi_weights,
             "guardrails": guardrails, "tools_allow": tools_allow, "tools_deny": tools_deny}
    _check_labels(user=user, agent=agent, project=project)
    if metadata is not None and not (isinstance(metadata, Mapping) and all(isinstance(k, str)
                                                                          for k in metadata)):
        raise ConfigError("metadata", metadata, "run()", "expected a dict with string keys")
    merged = _merge(_base(rt, current(), agent), given, "run()")
    rt.config.check_compliance(merged.compliance, "compliance",
                               "run()" if compliance is not None else "config")
    _check_guardrails(rt, merged.guardrails, "run()")
    return Session(merged, agent=agent, user=user, project=project, metadata=metadata, hooks=rt,
                   max_entries=rt.config.run_max_entries)


@overload
def agent(name: F) -> F: ...


@overload
def agent(name: str | None = None, *, budget: float | None = None, max_tool_calls: int | None = None,
          max_steps: int | None = None, max_latency_ms: float | None = None,
          compliance: str | None = None, kpi_weights: dict[str, float] | None = None,
          guardrails: str | None = None, tools_allow: list[str] | None = None,
          tools_deny: list[str] | None = None) -> Callable[[F], F]: ...


def agent(name: str | Callable[..., Any] | None = None, *, budget: float | None = None,
          max_tool_calls: int | None = None, max_steps: int | None = None,
          max_latency_ms: float | None = None,
          compliance: str | None = None, kpi_weights: dict[str, float] | None = None,
          guardrails: str | None = None, tools_allow: list[str] | None = None,
          tools_deny: list[str] | None = None) -> Any:
    """Give a function its own policy: each call opens a child session under the open one.

    Works on sync and async functions, generators and async generators, objects with an async
    `__call__` and callables that return a coroutine; keeps the signature.
    Limits given here win over `[agents.<name>]` in the config, as code wins everywhere.
    """
    if callable(name):  # bare `@agent`: the function itself came as `name`
        return agent()(name)
    if name is not None and not isinstance(name, str):
        raise ConfigError("name", name, "@agent()", "expected the agent's name as a string")
    given = {"budget": budget, "max_tool_calls": max_tool_calls, "max_steps": max_steps,
             "max_latency_ms": max_latency_ms, "compliance": compliance, "kpi_weights": kpi_weights,
             "guardrails": guardrails, "tools_allow": tools_allow, "tools_deny": tools_deny}

    def decorate(fn: F) -> F:
        agent_name = name or getattr(fn, "__name__", None)
        if not isinstance(agent_name, str) or not agent_name:  # a callable object, a functools.partial
            raise ConfigError("name", name, "@agent()",
                              f"{type(fn).__name__} has no __name__: give the agent one, "
                              f"@agent(name=...)")
        source = f"@agent({agent_name!r})"
        _merge(RunLimits(), given, source)  # fail at decoration time on a bad value
        if compliance is not None:  # a profile unknown to the runtime now, and to the config file
            _check_compliance_early(compliance, source)

        def open_session() -> Session:
            rt = current_runtime()
            merged = _merge(_base(rt, current(), agent_name), given, source)
            rt.config.check_compliance(merged.compliance, "compliance", source)
            _check_guardrails(rt, merged.guardrails, source)
            return Session(merged, agent=agent_name, hooks=rt, max_entries=rt.config.run_max_entries)

        if inspect.isasyncgenfunction(fn):
            return cast(F, _wrap_async_gen(fn, open_session))
        if inspect.isgeneratorfunction(fn):
            return cast(F, _wrap_gen(fn, open_session))
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__):  # an object's
            @functools.wraps(fn)
            async def async_call(*args: Any, **kwargs: Any) -> Any:
                async with open_session():
                    return await fn(*args, **kwargs)
            return cast(F, async_call)

        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            session = open_session()
            session.attach(current())
            entered = set_current(session)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                reset_current(entered)
                session.close(exc)
                raise
            reset_current(entered)
            # a plain callable that hands back a generator (a sync decorator over a generator
            # function): its body runs as it is iterated, in the same session, closed at its end
            if inspect.isgenerator(result):
                return _wrap_gen(lambda: result, lambda: session, attached=True)()
            if inspect.isasyncgen(result):
                return _wrap_async_gen(lambda: result, lambda: session, attached=True)()
            if asyncio.isfuture(result):
                # a task or future the call started (`asyncio.ensure_future`): handed back as it
                # is, since the caller may cancel it or add callbacks; its work runs in the
                # context it was made in, this session's, which closes when it is done
                result.add_done_callback(functools.partial(_future_done, session))
                return result
            if inspect.isawaitable(result):
                # a plain callable that hands back a coroutine (a lambda, a sync decorator): the
                # work happens when it is awaited, so the same session is open again then (one
                # call is one session: a second one would show in the run's `sessions`)
                return _awaited(session, result)
            session.close()
            return result
        return cast(F, call)

    return decorate


def _future_done(session: Session, future: asyncio.Future[Any]) -> None:
    if session.mode == "off":  # reading its exception would silence asyncio's "never retrieved"
        session.close()
    else:
        session.close(asyncio.CancelledError() if future.cancelled() else future.exception())


async def _awaited(session: Session, awaitable: Any) -> Any:
    entered = set_current(session)
    try:
        result = await awaitable
    except BaseException as exc:
        reset_current(entered)
        session.close(exc)
        raise
    reset_current(entered)
    session.close()
    return result


def _wrap_gen(fn: Callable[..., Generator[Any, Any, Any]], open_session: Callable[[], Session],
              attached: bool = False) -> Callable[..., Generator[Any, Any, Any]]:
    @functools.wraps(fn)
    def gen(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        session = open_session()
        if not attached:  # (a session opened by the call that made the generator is)
            session.attach(current())
        token = set_current(session)
        try:
            inner = fn(*args, **kwargs)
        finally:
            reset_current(token)
        error: BaseException | None = None
        try:
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = set_current(session)
                try:
                    item = inner.throw(thrown) if thrown is not None else inner.send(sent)
                except StopIteration as stop:
                    return stop.value
                finally:
                    reset_current(token)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    thrown = exc
        except BaseException as exc:  # what ended the generator: its span ends with it
            error = exc
            raise
        finally:
            token = set_current(session)
            try:
                inner.close()
            finally:
                reset_current(token)
                session.close(error)
    return gen


def _wrap_async_gen(fn: Callable[..., AsyncGenerator[Any, Any]], open_session: Callable[[], Session],
                    attached: bool = False) -> Callable[..., AsyncGenerator[Any, Any]]:
    @functools.wraps(fn)
    async def agen(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        session = open_session()
        if not attached:  # (a session opened by the call that made the generator is)
            session.attach(current())
        token = set_current(session)
        try:
            inner = fn(*args, **kwargs)
        finally:
            reset_current(token)
        error: BaseException | None = None
        try:
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                token = set_current(session)
                try:
                    item = await (inner.athrow(thrown) if thrown is not None else inner.asend(sent))
                except StopAsyncIteration:
                    return
                finally:
                    reset_current(token)
                thrown = None
                try:
                    sent = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    thrown = exc
        except BaseException as exc:  # what ended the generator: its span ends with it
            error = exc
            raise
        finally:
            token = set_current(session)
            try:
                await inner.aclose()
            finally:
                reset_current(token)
                session.close(error)
    return agen


def _base(rt: Runtime, outer: Session | None, agent: str | None) -> RunLimits:
    """The limits a session starts from before its own: the config's defaults for a top-level
    one (a run, or an agent called outside any run), nothing for a nested one (it inherits from
    its parents: defaults again would override what an outer run set explicitly); then the
    config's `[agents.<name>]`."""
    base = rt.config.run if outer is None or outer.ambient else RunLimits()
    if agent is not None and agent in rt.config.agents:
        base = _merge(base, rt.config.agents[agent].model_dump(exclude_defaults=True),
                      f"config agents.{agent}")
    return base


def _check_labels(**labels: Any) -> None:
    for key, value in labels.items():
        if value is not None and not isinstance(value, str):
            raise ConfigError(key, value, "run()", "expected a string")


def _check_compliance_early(name: str, source: str) -> None:
    """At decoration, once `init()` has run: the profile must be built in, known to the runtime
    it installed, or defined in the config file the process would load. Decorators usually run
    at import, before `init()`, which may name another file (`init(config=...)`): their profile
    is checked when the agent is first called, and nothing is read here."""
    if not initialised() or name in current_runtime().config.compliance:
        return
    try:
        config = resolve_config({})
    except ConfigError:
        return  # the config file itself is broken: init() will say so
    config.check_compliance(name, "compliance", source)


def _check_guardrails(rt: Runtime, name: str | None, source: str) -> None:
    policy = rt.policy()
    if name is None or policy is None:
        return
    if name not in policy.profiles:
        raise ConfigError("guardrails", name, source,
                          f"no such guardrail profile in {policy.source}; known: {sorted(policy.profiles)}")


def current_session() -> Session:
    """The innermost open session here, or the process-wide ambient session when none is open."""
    return current() or current_runtime().ambient
