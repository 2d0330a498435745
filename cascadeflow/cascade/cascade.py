"""A cascade: an ordered list of tiers tried in turn, with retries, a deadline and breakers.

    classify = Cascade([Tier("openai/gpt-4o", timeout=10), Tier("anthropic/claude-3-5-haiku-20241022"),
                        Tier("openai/gpt-4o-mini", degraded=True)], name="classify")
    response = classify.complete(messages=[...])
    response.degraded  # True when the last-resort tier answered

Each attempt goes through litellm, so when cascadeflow is on every attempt is a traced step,
reserved and settled against the session budget like any other call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cascadeflow.breakers import BreakerRegistry, BreakerSettings, breakers
from cascadeflow.cascade.clients import ClientPool, clients
from cascadeflow.closing import aclose
from cascadeflow.errors import AllProvidersFailed, CascadeflowError, ConfigError, PolicyStop
from cascadeflow.failures import BREAKER_FAILURES, FATAL, RETRY, Expectations, Failure, classify
from cascadeflow.pipeline import events
from cascadeflow.pipeline.runtime import attempting, current
from cascadeflow.retry import RetryPolicy
from cascadeflow.usage import provider_finished, read_usage

Alert = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Tier:
    """One rung: a model (with its own call parameters), or a final static answer."""

    model: str | None = None
    timeout: float | None = None
    degraded: bool = False
    static: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.model or "static answer"



class StreamInterrupted(CascadeflowError):
    """A stream failed after its first chunk: the answer is incomplete. `received` holds it;
    `failure` says how: `stream_broken` (the connection broke) or `truncated` (the stream ended
    before the provider finished it)."""

    def __init__(self, message: str, received: str, tier: str, failure: str = "stream_broken") -> None:
        super().__init__(message)
        self.received = received
        self.tier = tier
        self.failure = failure


def _tier(value: Tier | str) -> Tier:
    return value if isinstance(value, Tier) else Tier(model=value)


class Cascade:
    """Ordered fallback across tiers; injectable, so code that calls models can be tested."""

    def __init__(self, tiers: Sequence[Tier | str], *, name: str = "cascade",
                 retry: RetryPolicy | None = None, deadline_s: float = 60.0,
                 breaker: BreakerSettings | None = None, expect: Expectations | None = None,
                 on_fallback: Alert | None = None, registry: BreakerRegistry | None = None,
                 pool: ClientPool | None = None, sleep: Callable[[float], None] = time.sleep,
                 async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tiers = tuple(_tier(t) for t in tiers)
        if not self.tiers:
            raise ConfigError(f"cascades.{name}.tiers", [], "Cascade()", "a cascade needs at least one tier")
        for index, tier in enumerate(self.tiers):
            if (tier.model is None) == (tier.static is None):
                raise ConfigError(f"cascades.{name}.tiers[{index}]", tier, "Cascade()",
                                  "a tier has either a model or a static answer")
            if tier.static is not None and index != len(self.tiers) - 1:
                raise ConfigError(f"cascades.{name}.tiers[{index}]", tier, "Cascade()",
                                  "a static answer can only be the last tier")
        self.name = name
        self.retry = retry or RetryPolicy()
        self.deadline_s = deadline_s
        self.breaker = breaker or BreakerSettings()
        self.expect = expect or Expectations()
        if self.expect.schema is not None and isinstance(self.expect.schema, dict):
            try:
                import jsonschema  # noqa: F401
            except ImportError:
                raise ConfigError(f"cascades.{name}.schema", "dict", "Cascade()",
                                  "JSON-schema validation needs the jsonschema package; "
                                  "pass a pydantic model instead") from None
        self.on_fallback = on_fallback
        self.registry = registry or breakers
        self.pool = pool or clients
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock

    # -- direct use ------------------------------------------------------------------------
    def complete(self, **kwargs: Any) -> Any:
        """Like `litellm.completion` without `model`: the cascade picks it, tier by tier."""
        import litellm

        return self.run(lambda **kw: litellm.completion(**kw), kwargs)

    async def acomplete(self, **kwargs: Any) -> Any:
        """Like `litellm.acompletion` without `model`."""
        import litellm

        return await self.arun(lambda **kw: litellm.acompletion(**kw), kwargs)

    # -- the loop ------------------------------------------------------------------------
    # `_Run.plan()` decides what happens next (call a tier, wait, answer statically); `run` and
    # `arun` only carry it out, the one with plain calls and sleeps, the other with awaits.
    def run(self, call: Callable[..., Any], kwargs: Mapping[str, Any], client: str = "litellm",
            reachable: tuple[str, ...] | None = None) -> Any:
        """Try the tiers in order with `call(**kwargs, model=...)`; see `arun` for async."""
        state = _Run(self, kwargs, client, reachable)
        for move, value in state.plan():
            if move == "answer":
                return value
            if move == "wait":
                self._sleep(value)
                continue
            tier, t0 = value, self._clock()
            token = attempting.set(True)
            try:
                result = call(**state.arguments(tier, is_async=False))
                if state.stream:
                    result = state.peek_sync(tier, result)
            except Exception as exc:
                if isinstance(exc, PolicyStop):
                    state.breaker(tier).release()
                    raise
                state.failed(tier, exc, t0)
            except BaseException:  # interrupted: the attempt says nothing about the deployment
                state.breaker(tier).release()
                raise
            else:
                if state.checked(tier, result, t0) is None:
                    return result
            finally:
                attempting.reset(token)
        return state.exhausted()

    async def arun(self, call: Callable[..., Awaitable[Any]], kwargs: Mapping[str, Any],
                   client: str = "litellm", reachable: tuple[str, ...] | None = None) -> Any:
        state = _Run(self, kwargs, client, reachable)
        for move, value in state.plan():
            if move == "answer":
                return value
            if move == "wait":
                await self._async_sleep(value)
                continue
            tier, t0 = value, self._clock()
            try:
                # the event loop can enforce the deadline itself, whatever the client does
                result = await asyncio.wait_for(self._attempt(call, state, tier),
                                                max(state.deadline - self._clock(), 0.001))
            except Exception as exc:
                if isinstance(exc, PolicyStop):
                    state.breaker(tier).release()
                    raise
                state.failed(tier, exc, t0)
            except BaseException:  # cancelled (a client disconnect): a half-open probe slot goes back
                state.breaker(tier).release()
                raise
            else:
                if state.checked(tier, result, t0) is None:
                    return result
        return state.exhausted()

    @staticmethod
    async def _attempt(call: Callable[..., Awaitable[Any]], state: _Run, tier: Tier) -> Any:
        attempting.set(True)  # runs in its own task (wait_for): the caller's context is untouched
        result = await call(**state.arguments(tier, is_async=True))
        if state.stream:
            result = await state.peek_async(tier, result)
        return result


class _Run:
    """The bookkeeping of one cascaded call: attempts, deadline, events, breakers."""

    def __init__(self, cascade: Cascade, kwargs: Mapping[str, Any], client: str,
                 reachable: tuple[str, ...] | None) -> None:
        self.c = cascade
        self.rt = current()  # the cascade is an entry point: it reads the installed runtime once
        self.kwargs = dict(kwargs)
        self.kwargs.pop("model", None)
        self.client = client
        self.reachable = reachable
        self.stream = self.kwargs.get("stream") is True
        self.deadline = cascade._clock() + cascade.deadline_s
        self.attempts: list[dict[str, Any]] = []
        self.last_error: BaseException | None = None
        self.outcome: Failure | None = None  # of the latest attempt, reported by failed/checked

    def plan(self) -> Iterator[tuple[str, Any]]:
        """What to do next: ("call", tier), ("wait", seconds) or ("answer", response).

        After a "call" the driver reports the outcome through `failed` or `checked`; it stops
        asking once an attempt succeeds. When the plan runs out, every tier has failed.
        """
        for tier in self.c.tiers:
            if tier.static is not None:
                yield "answer", self.static_answer(tier)
                return
            if not self.usable(tier):
                continue
            attempt = 0
            tier_start = self.c._clock()
            while True:
                failure = self.gate(tier)
                if failure is None:
                    attempt += 1
                    yield "call", tier
                    failure = self.outcome
                pause = self.next_move(tier, failure, attempt, tier_start)
                if pause is None:
                    break
                yield "wait", pause

    def deployment(self, tier: Tier) -> str:
        """The tier's model at the endpoint the call will use: what a breaker guards."""
        base = tier.params.get("api_base") or tier.params.get("base_url") or self.kwargs.get("api_base") \
            or self.kwargs.get("base_url") or ""
        return f"{tier.model}@{base}"

    def breaker(self, tier: Tier) -> Any:
        return self.c.registry.get(self.deployment(tier), self.c.breaker, self.c._clock)

    def usable(self, tier: Tier) -> bool:
        """Skip tiers this client cannot reach or a compliance profile excludes (recorded)."""
        model = tier.model or ""
        provider = model.split("/", 1)[0] if "/" in model else None
        if self.reachable is not None and provider not in self.reachable:
            self._skip(tier, "tier_unreachable", f"{model} is not reachable through this client")
            return False
        if events.compliance_excludes(self.rt, model):
            self._skip(tier, "compliance_excluded", f"{model} is excluded by the compliance profile")
            return False
        return True

    def _skip(self, tier: Tier, reason: str, message: str) -> None:
        """A skipped tier is a fallback like any other: traced, alerted and told to `on_fallback`."""
        self.attempts.append({"tier": tier.label, "failure": reason, "latency_ms": 0.0, "attempt": 0})
        events.note(self.rt, "fallback", reason, model=tier.model, message=f"{self.c.name}: {message}")
        self._fallback(tier, Failure(reason, message))

    def gate(self, tier: Tier) -> Failure | None:
        """Refuse before sending when the deadline has passed or the breaker is open."""
        if self.c._clock() >= self.deadline:
            return Failure("deadline_exceeded", f"the {self.c.deadline_s}s deadline passed")
        if not self.breaker(tier).acquire():
            return Failure("circuit_open", f"the breaker of {self.deployment(tier)} is open")
        return None

    def arguments(self, tier: Tier, is_async: bool) -> dict[str, Any]:
        model = tier.model or ""
        if self.client == "openai" and "/" in model:
            model = model.split("/", 1)[1]
        remaining = max(self.deadline - self.c._clock(), 0.001)
        timeout = min(tier.timeout, remaining) if tier.timeout else remaining
        if self.client == "litellm":
            args = {**self.kwargs, **tier.params, "model": model, "timeout": timeout}
            args.setdefault("max_retries", 0)  # the cascade retries; the SDK underneath must not
            pooled = self.c.pool.client(model, args, is_async)
            if pooled is not None:  # the deployment's one client; the timeout goes per request
                args["client"] = pooled
            return args
        # an SDK client calls its own base_url with its own key: tier endpoints do not apply
        return {**self.kwargs, "model": model, "timeout": timeout}

    def failed(self, tier: Tier, exc: BaseException, t0: float) -> Failure:
        failure = classify(exc)
        self.last_error = exc
        self.outcome = failure
        self._attempt(tier, failure, t0, exc)
        return failure

    def checked(self, tier: Tier, result: Any, t0: float) -> Failure | None:
        """Success that is not success: empty, cut off, refusing, schema-invalid."""
        if self.stream:
            self.outcome = None
            self._succeed(tier, result)
            return None
        usage = read_usage("chat", result)
        failure = self.outcome = self.c.expect.check(usage.text, usage.finish_reason, usage.tool_calls)
        if failure is None:
            self._succeed(tier, result)
            return None
        self._attempt(tier, failure, t0, None)
        return failure

    def _succeed(self, tier: Tier, result: Any) -> None:
        self.breaker(tier).success()
        _mark(result, tier.degraded)
        if tier.degraded:
            events.note(self.rt, "fallback", "degraded_answer", model=tier.model, degraded=True,
                          message=f"{self.c.name}: answered by the last-resort tier {tier.label}")

    def _attempt(self, tier: Tier, failure: Failure, t0: float, exc: BaseException | None) -> None:
        breaker = self.breaker(tier)
        if failure.kind in BREAKER_FAILURES:
            breaker.failure()
        else:  # the deployment answered: it is up, whatever it said
            breaker.success()
        self.attempts.append({"tier": tier.label, "failure": failure.kind,
                              "latency_ms": (self.c._clock() - t0) * 1000.0,
                              "error": type(exc).__name__ if exc is not None else None,
                              "attempt": len(self.attempts) + 1})

    def next_move(self, tier: Tier, failure: Failure | None, attempt: int, tier_start: float
                  ) -> float | None:
        """Seconds to wait before retrying this tier, or None to move on (or raise when fatal)."""
        assert failure is not None
        if failure.kind in ("deadline_exceeded", "circuit_open"):
            self.attempts.append({"tier": tier.label, "failure": failure.kind, "latency_ms": 0.0,
                                  "attempt": 0})
            if failure.kind == "deadline_exceeded":
                self.deadline = -1.0  # nothing else may start either
            events.note(self.rt, "fallback", failure.kind, model=tier.model,
                          message=f"{self.c.name}: {failure.message}")
            self._fallback(tier, failure)
            return None
        if failure.disposition == FATAL:
            events.note(self.rt, "stop", failure.kind, model=tier.model,
                          message=f"{self.c.name}: {failure.message}")
            assert self.last_error is not None
            raise self.last_error
        clock = self.c._clock()
        if failure.disposition == RETRY and not self.c.retry.stop(attempt, clock - tier_start):
            pause = self.c.retry.wait(attempt, failure.retry_after)
            if clock + pause < self.deadline:
                events.note(self.rt, "retry", failure.kind, model=tier.model,
                              message=f"{self.c.name}: retrying {tier.label} in {pause:.3f}s")
                return pause
        events.note(self.rt, "fallback", failure.kind, model=tier.model,
                      message=f"{self.c.name}: leaving {tier.label} after {failure.kind}")
        self._fallback(tier, failure)
        return None

    def _fallback(self, tier: Tier, failure: Failure) -> None:
        event = {"cascade": self.c.name, "tier": tier.label, "failure": failure.kind,
                 "message": failure.message}
        events.alert(self.rt, "fallback", f"cascade {self.c.name}: {tier.label} failed ({failure.kind})",
                     event)
        if self.c.on_fallback is not None:
            self.c.on_fallback(event)

    def static_answer(self, tier: Tier) -> Any:
        events.note(self.rt, "fallback", "static_answer", model=None, degraded=tier.degraded,
                      message=f"{self.c.name}: answered with the static last tier")
        return _static(tier.static or "", self.client, tier.degraded)

    def exhausted(self) -> Any:
        tried = ", ".join(f"{a['tier']}: {a['failure']}" for a in self.attempts)
        raise AllProvidersFailed(f"cascade {self.c.name}: every tier failed ({tried})", self.attempts)

    # -- streams ---------------------------------------------------------------------------
    def peek_sync(self, tier: Tier, stream: Any) -> Any:
        iterator = iter(stream)
        first = next(iterator)  # a failure here falls through to the next tier
        return _SyncCascadeStream(first, iterator, stream, tier)

    async def peek_async(self, tier: Tier, stream: Any) -> Any:
        iterator = stream.__aiter__()
        first = await iterator.__anext__()
        return _AsyncCascadeStream(first, iterator, stream, tier)


def _mark(result: Any, degraded: bool) -> None:
    with contextlib.suppress(AttributeError, TypeError, ValueError):  # takes no new attributes
        result.degraded = degraded


def _static(text: str, client: str, degraded: bool) -> Any:
    body = {"id": "cascadeflow-static", "object": "chat.completion", "created": int(time.time()),
            "model": "static", "choices": [{"index": 0, "finish_reason": "stop",
                                            "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}}
    if client == "openai":
        from openai.types.chat import ChatCompletion

        result: Any = ChatCompletion.model_validate(body)
    else:
        import litellm

        result = litellm.ModelResponse(**body)
    _mark(result, degraded)
    return result


def _chunk_text(chunk: Any) -> str:
    choices = getattr(chunk, "choices", None) or []
    delta = getattr(choices[0], "delta", None) if choices else None
    return str(getattr(delta, "content", None) or "")


def _finishes(chunk: Any) -> bool:
    choices = getattr(chunk, "choices", None) or []
    return bool(choices) and getattr(choices[0], "finish_reason", None) is not None


def _broken(tier: str, received: list[str], exc: BaseException) -> StreamInterrupted:
    return StreamInterrupted(f"the stream from {tier} broke after {len(received)} chunks: {exc}",
                             "".join(received), tier)


def _truncated(tier: str, received: list[str]) -> StreamInterrupted:
    return StreamInterrupted(f"the stream from {tier} ended after {len(received)} chunks before the "
                             "provider finished it: the answer is incomplete", "".join(received), tier,
                             failure="truncated")


class _SyncCascadeStream:
    """Yields the peeked first chunk, then the rest; a mid-stream failure raises StreamInterrupted."""

    def __init__(self, first: Any, iterator: Iterator[Any], stream: Any, tier: Tier) -> None:
        self._pending: list[Any] = [first]
        self._iterator = iterator
        self._stream = stream
        self._received: list[str] = []
        self._finished = False
        self.tier = tier.label
        self.degraded = tier.degraded

    def __iter__(self) -> _SyncCascadeStream:
        return self

    def __next__(self) -> Any:
        if self._pending:
            chunk = self._pending.pop()
        else:
            try:
                chunk = next(self._iterator)
            except StopIteration:
                if not provider_finished(self._stream, self._finished):
                    raise _truncated(self.tier, self._received) from None
                raise
            except Exception as exc:
                raise _broken(self.tier, self._received, exc) from exc
        self._received.append(_chunk_text(chunk))
        self._finished = self._finished or _finishes(chunk)
        return chunk

    def close(self) -> None:
        closer = getattr(self._stream, "close", None)
        if callable(closer):
            closer()


class _AsyncCascadeStream:
    def __init__(self, first: Any, iterator: AsyncIterator[Any], stream: Any, tier: Tier) -> None:
        self._pending: list[Any] = [first]
        self._iterator = iterator
        self._stream = stream
        self._received: list[str] = []
        self._finished = False
        self.tier = tier.label
        self.degraded = tier.degraded

    def __aiter__(self) -> _AsyncCascadeStream:
        return self

    async def __anext__(self) -> Any:
        if self._pending:
            chunk = self._pending.pop()
        else:
            try:
                chunk = await self._iterator.__anext__()
            except StopAsyncIteration:
                if not provider_finished(self._stream, self._finished):
                    raise _truncated(self.tier, self._received) from None
                raise
            except Exception as exc:
                raise _broken(self.tier, self._received, exc) from exc
        self._received.append(_chunk_text(chunk))
        self._finished = self._finished or _finishes(chunk)
        return chunk

    async def aclose(self) -> None:
        await aclose(self._stream)
