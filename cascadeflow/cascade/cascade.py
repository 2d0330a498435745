"""A cascade: an ordered list of tiers tried in turn, with retries, a deadline and breakers.

    classify = Cascade([Tier("openai/gpt-4o", timeout=10), Tier("anthropic/claude-3-5-haiku-20241022"),
                        Tier("openai/gpt-4o-mini", degraded=True)], name="classify",
                       retries={"rate_limited": 5, "timeout": 1},
                       fallbacks={"context_window_exceeded": [Tier("gemini/gemini-1.5-pro")]})
    response = classify.complete(messages=[...])
    response.degraded  # True when the last-resort tier answered

Each attempt goes through litellm, so when cascadeflow is on every attempt is a traced step,
reserved and settled against the session budget like any other call. A tier may hold several
deployments of its model, balanced by its strategy; a retry goes to another one when it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cascadeflow.balance import Load, load
from cascadeflow.breakers import (
    BreakerRegistry,
    BreakerSettings,
    CircuitBreaker,
    Ticket,
    breakers,
    deployment_key,
)
from cascadeflow.cascade.clients import ClientPool, Lease, clients
from cascadeflow.cascade.streams import AsyncCascadeStream, SyncCascadeStream, empty_start, static_chunk
from cascadeflow.cascade.tiers import (
    Deployment,
    Tier,
    check_breaker,
    check_failure_classes,
    check_seconds,
    check_tiers,
    tier,
)
from cascadeflow.closing import aclose, close
from cascadeflow.errors import AllProvidersFailed, BudgetExceeded, ConfigError, PolicyStop
from cascadeflow.failures import BREAKER_FAILURES, FATAL, RETRY, EmptyStream, Expectations, Failure, classify
from cascadeflow.pipeline import events
from cascadeflow.pipeline.runtime import attempting, current
from cascadeflow.retry import RetryPolicy
from cascadeflow.secrets import MASK, mask, secret_key
from cascadeflow.usage import get, read_usage

Alert = Callable[[dict[str, Any]], None]

log = logging.getLogger("cascadeflow.cascade")


@dataclass(frozen=True)
class Pick:
    """Where one attempt goes: a tier, and the deployment of it chosen for this attempt."""

    tier: Tier
    deployment: Deployment
    key: str  # the deployment at the endpoint the call will use: what a breaker guards
    ticket: Ticket | None = None  # the breaker's admission: its outcome is reported with it


class Cascade:
    """Ordered fallback across tiers; injectable, so code that calls models can be tested."""

    def __init__(self, tiers: Sequence[Tier | str], *, name: str = "cascade",
                 retry: RetryPolicy | None = None, deadline_s: float = 60.0,
                 breaker: BreakerSettings | None = None, expect: Expectations | None = None,
                 retries: Mapping[str, int] | None = None,
                 fallbacks: Mapping[str, Sequence[Tier | str]] | None = None,
                 on_fallback: Alert | None = None, registry: BreakerRegistry | None = None,
                 pool: ClientPool | None = None, balance: Load | None = None,
                 rng: random.Random | None = None, sleep: Callable[[float], None] = time.sleep,
                 async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, source: str = "Cascade()") -> None:
        """`source` is where the settings came from, for errors (the config file, for cascades
        built from it)."""
        setting = f"cascades.{name}"
        self.tiers = tuple(tier(t) for t in tiers)
        if not self.tiers:
            raise ConfigError(f"{setting}.tiers", [], source, "a cascade needs at least one tier")
        check_tiers(self.tiers, f"{setting}.tiers", source)
        self.retries = dict(retries or {})
        check_failure_classes(self.retries, f"{setting}.retries", source)
        for kind, count in self.retries.items():
            if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                raise ConfigError(f"{setting}.retries.{kind}", count, source,
                                  "a number of retries: a whole number, 0 or more")
        self.fallbacks = {kind: tuple(tier(t) for t in chain) for kind, chain in (fallbacks or {}).items()}
        check_failure_classes(self.fallbacks, f"{setting}.fallbacks", source)
        for kind, chain in self.fallbacks.items():
            if not chain:
                raise ConfigError(f"{setting}.fallbacks.{kind}", [], source, "at least one tier")
            check_tiers(chain, f"{setting}.fallbacks.{kind}", source)
        check_seconds(deadline_s, f"{setting}.deadline_s", source)
        self.name = name
        self.retry = retry or RetryPolicy()
        self.deadline_s = deadline_s
        self.breaker = breaker or BreakerSettings()
        check_breaker(self.breaker, f"{setting}.breaker", source)
        self.expect = expect or Expectations()
        if self.expect.schema is not None and isinstance(self.expect.schema, dict):
            try:
                import jsonschema
            except ImportError:
                raise ConfigError(f"{setting}.schema", "dict", source,
                                  "JSON-schema validation needs the jsonschema package; "
                                  "pass a pydantic model instead") from None
            try:  # here, not in a call: after a paid answer, and only once one parses
                jsonschema.validators.validator_for(self.expect.schema).check_schema(self.expect.schema)
            except jsonschema.SchemaError as exc:
                raise ConfigError(f"{setting}.schema", self.expect.schema, source,
                                  f"not a JSON schema: {exc.message}") from None
        self.on_fallback = on_fallback
        self.fallback_errors = 0  # exceptions `on_fallback` raised (logged, never passed on)
        self.registry = registry or breakers
        self.pool = pool or clients
        self.load = balance or load
        self.rng = rng or random.Random()
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

    def embed(self, **kwargs: Any) -> Any:
        """Like `litellm.embedding` without `model`: embeddings tier by tier (no static answer)."""
        import litellm

        return self.run(lambda **kw: litellm.embedding(**kw), kwargs, operation="embeddings")

    async def aembed(self, **kwargs: Any) -> Any:
        """Like `litellm.aembedding` without `model`."""
        import litellm

        return await self.arun(lambda **kw: litellm.aembedding(**kw), kwargs, operation="embeddings")

    # -- the loop ------------------------------------------------------------------------
    # `_Run.plan()` decides what happens next (call a deployment, wait, answer statically); `run`
    # and `arun` only carry it out, the one with plain calls and sleeps, the other with awaits.
    def run(self, call: Callable[..., Any], kwargs: Mapping[str, Any], client: str = "litellm",
            reachable: tuple[str, ...] | None = None, operation: str = "chat",
            endpoint: str | None = None) -> Any:
        """Try the tiers in order with `call(**kwargs, model=...)`; see `arun` for async.
        `endpoint` is the base URL an openai SDK client calls (its deployments' breakers)."""
        state = _Run(self, kwargs, client, reachable, operation, is_async=False, endpoint=endpoint)
        for move, value in state.plan():
            if move == "answer":
                return value
            if move == "wait":
                self._sleep(value)
                continue
            pick, t0 = value, self._clock()
            token = attempting.set(True)
            self.load.started(pick.key)
            lease: Lease | None = None
            try:
                arguments, lease = state.arguments(pick, is_async=False)
                result = call(**arguments)
                if state.stream:  # the stream gives the client back when it is done with it
                    result, lease = state.peek_sync(pick, result, lease), None
            except Exception as exc:
                state.failed_or_stopped(pick, exc, t0)
            except BaseException:  # interrupted: the attempt says nothing about the deployment
                state.abandon(pick)
                raise
            else:
                if state.checked(pick, result, t0) is None:
                    return result
            finally:
                attempting.reset(token)
                if lease is not None:
                    lease.release()
        return state.exhausted()

    async def arun(self, call: Callable[..., Awaitable[Any]], kwargs: Mapping[str, Any],
                   client: str = "litellm", reachable: tuple[str, ...] | None = None,
                   operation: str = "chat", endpoint: str | None = None) -> Any:
        state = _Run(self, kwargs, client, reachable, operation, is_async=True, endpoint=endpoint)
        for move, value in state.plan():
            if move == "answer":
                return value
            if move == "wait":
                await self._async_sleep(value)
                continue
            pick, t0 = value, self._clock()
            self.load.started(pick.key)
            try:
                # the event loop can enforce the deadline itself, whatever the client does
                result = await asyncio.wait_for(self._attempt(call, state, pick),
                                                max(state.deadline - self._clock(), 0.001))
            except Exception as exc:
                state.failed_or_stopped(pick, exc, t0)
            except BaseException:  # cancelled (a client disconnect): a half-open probe slot goes back
                state.abandon(pick)
                raise
            else:
                if state.checked(pick, result, t0) is None:
                    return result
        return state.exhausted()

    @staticmethod
    async def _attempt(call: Callable[..., Awaitable[Any]], state: _Run, pick: Pick) -> Any:
        # reset, not left to a task of its own: from Python 3.12 `wait_for` awaits in the
        # caller's task, where a flag left set would pin every later call of that task
        token = attempting.set(True)
        lease: Lease | None = None
        try:
            arguments, lease = state.arguments(pick, is_async=True)
            result = await call(**arguments)
            if state.stream:  # the stream gives the client back when it is done with it
                result, lease = await state.peek_async(pick, result, lease), None
            return result
        finally:
            attempting.reset(token)
            if lease is not None:
                await lease.arelease()


class _Run:
    """The bookkeeping of one cascaded call: attempts, deadline, events, breakers, load."""

    def __init__(self, cascade: Cascade, kwargs: Mapping[str, Any], client: str,
                 reachable: tuple[str, ...] | None, operation: str, is_async: bool,
                 endpoint: str | None = None) -> None:
        self.c = cascade
        self.rt = current()  # the cascade is an entry point: it reads the installed runtime once
        self.kwargs = dict(kwargs)
        self.kwargs.pop("model", None)
        self.client = client
        self.reachable = reachable
        self.operation = operation
        self.stream = self.kwargs.get("stream") is True
        self.is_async = is_async
        self.endpoint = endpoint
        self.deadline = cascade._clock() + cascade.deadline_s
        self.attempts: list[dict[str, Any]] = []
        self.last_error: BaseException | None = None
        self.outcome: Failure | None = None  # of the latest attempt, reported by failed/checked
        self.left_after: str | None = None  # the failure class the cascade left the latest tier with
        self.switched = False  # running a failure class's own fallbacks
        self.priced_out: BudgetExceeded | None = None  # the latest tier the budget could not pay for
        # the caller's own timeouts cap each attempt, as a tier's does: the call's `timeout=`
        # (an openai SDK client's own, which the interceptor passes as it), and litellm's
        # `request_timeout` where it was set; the attempt's timeout replaces them in the call
        self.given_timeouts: tuple[Any, ...] = (self.kwargs.get("timeout"),) + (
            (_litellm_timeout(),) if client == "litellm" else ())

    def plan(self) -> Iterator[tuple[str, Any]]:
        """What to do next: ("call", pick), ("wait", seconds) or ("answer", response).

        After a "call" the driver reports the outcome through `failed` or `checked`; it stops
        asking once an attempt succeeds. When the plan runs out, every tier has failed.
        """
        chain, index = self.c.tiers, 0
        while index < len(chain):
            current_tier = chain[index]
            index += 1
            if current_tier.static is not None:
                if self.operation == "chat":  # a fixed text answers a chat, nothing else
                    yield "answer", self.static_answer(current_tier)
                return
            deployments = self.usable(current_tier)
            if not deployments:
                continue
            attempt, tier_start = 0, self.c._clock()
            tried: set[str] = set()
            counts: Counter[str] = Counter()
            self.left_after = None
            while True:
                pick, failure = self.gate(current_tier, deployments, tried)
                if pick is not None:
                    attempt += 1
                    tried.add(pick.key)
                    yield "call", pick
                    failure = self.outcome
                assert failure is not None
                pause = self.next_move(current_tier, failure, attempt, tier_start, counts,
                                       untried=self.untried(current_tier, deployments, tried),
                                       shut=self.shut(current_tier, deployments))
                if pause is None:
                    break
                yield "wait", pause
            special = self.c.fallbacks.get(self.left_after or "")
            if special and not self.switched:
                chain, index, self.switched = special, 0, True

    # -- choosing where an attempt goes ------------------------------------------------------
    def key(self, tier_: Tier, deployment: Deployment) -> str:
        """The deployment at the endpoint its call will use (`arguments` merges the same three;
        an openai SDK client calls its own base URL, whatever the tier says)."""
        if self.client == "openai":
            return deployment_key(deployment.model, (self.endpoint or "").rstrip("/"))
        base = ""
        for params in (deployment.params, tier_.params, self.kwargs):
            base = params.get("api_base") or params.get("base_url") or ""
            if base:
                break
        return deployment_key(deployment.model, base)

    def breaker(self, key: str) -> CircuitBreaker:
        return self.c.registry.get(key, self.c.breaker, self.c._clock)

    def usable(self, tier_: Tier) -> tuple[Deployment, ...]:
        """The deployments this client can reach and the compliance profiles allow; a tier left
        with none is skipped (recorded, alerted, told to `on_fallback`)."""
        out = []
        reasons: list[tuple[str, str]] = []
        for deployment in tier_.choices():
            model = deployment.model
            if self.reachable is not None and self.provider(model) not in self.reachable:
                reasons.append(("tier_unreachable", f"{model} is not reachable through this client"))
            elif events.compliance_excludes(self.rt, model):
                reasons.append(("compliance_excluded", f"{model} is excluded by the compliance profile"))
            else:
                out.append(deployment)
        if not out:
            self._skip(tier_, *reasons[0])
        return tuple(out)

    def provider(self, model: str) -> str | None:
        """The provider a model is called at: its prefix, or ("gpt-4o") where litellm's tables
        place it, as a litellm call would."""
        return model.split("/", 1)[0] if "/" in model else self.c.pool.provider(model, None)

    def _skip(self, tier_: Tier, reason: str, message: str) -> None:
        """A skipped tier is a fallback like any other: traced, alerted and told to `on_fallback`."""
        self.attempts.append(_skipped(tier_, reason))
        self.rt.note("fallback", reason, model=tier_.model or tier_.label,
                     message=f"{self.c.name}: {message}")
        self._fallback(tier_, Failure(reason, message))

    def gate(self, tier_: Tier, deployments: tuple[Deployment, ...], tried: set[str]
             ) -> tuple[Pick | None, Failure | None]:
        """The deployment the next attempt goes to, or why none may be called: the deadline has
        passed or every deployment's breaker is open. Untried deployments come first."""
        if self.c._clock() >= self.deadline:
            return None, Failure("deadline_exceeded", f"the {self.c.deadline_s}s deadline passed")
        keys = [self.key(tier_, d) for d in deployments]
        order = [0] if len(deployments) == 1 else self.c.load.order(
            tier_.strategy, keys, [d.weight for d in deployments], tried, self.c.rng)
        for index in order:
            ticket = self.breaker(keys[index]).admit()
            if ticket is not None:
                return Pick(tier_, deployments[index], keys[index], ticket), None
        return None, _circuit_open(tier_, keys)

    def shut(self, tier_: Tier, deployments: tuple[Deployment, ...]) -> Failure | None:
        """`circuit_open` when every deployment's breaker is open now: a retry would be refused."""
        keys = [self.key(tier_, d) for d in deployments]
        if any(self.breaker(key).state != "open" for key in keys):
            return None
        return _circuit_open(tier_, keys)

    def untried(self, tier_: Tier, deployments: tuple[Deployment, ...], tried: set[str]) -> bool:
        """Whether a deployment of the tier not tried yet could take the next attempt (one whose
        breaker is open cannot: a retry that waits for none would hammer the one that failed)."""
        return any(key not in tried and self.breaker(key).state != "open"
                   for key in (self.key(tier_, d) for d in deployments))

    def arguments(self, pick: Pick, is_async: bool) -> tuple[dict[str, Any], Lease | None]:
        """The attempt's arguments, and the lease on the pooled client they carry (to release
        when the attempt, or the stream it returns, is done)."""
        model = pick.deployment.model
        if self.client == "openai" and "/" in model:
            model = model.split("/", 1)[1]
        bound = max(self.deadline - self.c._clock(), 0.001)
        if pick.tier.timeout is not None:
            bound = min(bound, pick.tier.timeout)
        timeout = _within(bound, (*self.given_timeouts, pick.tier.params.get("timeout"),
                                  pick.deployment.params.get("timeout")))
        if self.client == "litellm":
            args = {**self.kwargs, **pick.tier.params, **pick.deployment.params, "model": model,
                    "timeout": timeout}
            args.setdefault("max_retries", 0)  # the cascade retries; the SDK underneath must not
            lease = self.c.pool.lease(model, args, is_async)
            if lease is not None:  # the deployment's one client; the timeout goes per request
                args["client"] = lease.client
            return args, lease
        # an SDK client calls its own base_url with its own key: tier endpoints do not apply
        return {**self.kwargs, "model": model, "timeout": timeout}, None

    # -- outcomes ------------------------------------------------------------------------------
    def abandon(self, pick: Pick) -> None:
        """The attempt ended without a word about the deployment (a stop, a cancellation)."""
        self.breaker(pick.key).release(pick.ticket)
        self.c.load.ended(pick.key, None)

    def failed_or_stopped(self, pick: Pick, exc: Exception, t0: float) -> None:
        """An attempt that raised: the provider's failure, or the policy's stop before anything
        was sent. A stop ends the cascade, except the budget's: what this tier's model costs (or
        that its price is unknown) does not fit, and a later, cheaper tier may, so the tier is
        passed over like one whose breaker is open."""
        if not isinstance(exc, PolicyStop):
            self.failed(pick, exc, t0)
            return
        self.abandon(pick)
        if not isinstance(exc, BudgetExceeded):
            raise exc
        self.priced_out = exc
        self.outcome = Failure("budget_exceeded", str(exc))

    def failed(self, pick: Pick, exc: BaseException, t0: float) -> Failure:
        failure = classify(exc)
        failure = replace(failure, message=_conceal(failure.message, self.secrets(pick)))
        self.last_error = exc
        self.outcome = failure
        self.c.load.ended(pick.key, None)
        self._attempt(pick, failure, t0, exc)
        return failure

    def secrets(self, pick: Pick) -> tuple[str, ...]:
        """The secrets this attempt was called with (its key), to be masked wherever a provider's
        text may quote them: a key of no recognisable format is masked only by knowing it.
        Short values are left: masking them would garble the text."""
        return tuple(value for params in (pick.deployment.params, pick.tier.params, self.kwargs)
                     for name, value in params.items()
                     if isinstance(value, str) and len(value) >= _SECRET_MIN and secret_key(str(name)))

    def checked(self, pick: Pick, result: Any, t0: float) -> Failure | None:
        """Success that is not success: empty, cut off, refusing, schema-invalid."""
        self.c.load.ended(pick.key, self.c._clock() - t0)
        try:
            body = _body(result)
        except Exception as exc:  # a raw response whose body does not parse
            self.last_error = exc
            self.outcome = Failure("malformed_response",
                                   _conceal(f"{type(exc).__name__}: {exc}", self.secrets(pick)))
            self._attempt(pick, self.outcome, t0, exc)
            return self.outcome
        if self.stream:
            failure = None
        elif self.operation == "embeddings":
            failure = None if get(body, "data") else Failure("empty_response", "no embeddings")
        else:
            usage = read_usage(self.operation, body)
            failure = self.c.expect.check(usage.text, usage.finish_reason, usage.tool_calls)
        self.outcome = failure
        if failure is None:
            self._succeed(pick, result)
            return None
        self._attempt(pick, failure, t0, None)
        return failure

    def _succeed(self, pick: Pick, result: Any) -> None:
        self.breaker(pick.key).success(pick.ticket)
        _mark(result, pick.tier.degraded)
        if pick.tier.degraded:
            self.rt.note("fallback", "degraded_answer", model=pick.deployment.model, degraded=True,
                         message=f"{self.c.name}: answered by the last-resort tier {pick.tier.label}")

    def _attempt(self, pick: Pick, failure: Failure, t0: float, exc: BaseException | None) -> None:
        breaker = self.breaker(pick.key)
        if failure.kind in BREAKER_FAILURES:
            breaker.failure(pick.ticket)
        else:  # the deployment answered: it is up, whatever it said
            breaker.success(pick.ticket)
        self.attempts.append({"tier": pick.tier.label, "model": pick.deployment.model,
                              "failure": failure.kind, "latency_ms": (self.c._clock() - t0) * 1000.0,
                              "error": type(exc).__name__ if exc is not None else None,
                              "attempt": len(self.attempts) + 1})

    def next_move(self, tier_: Tier, failure: Failure, attempt: int, tier_start: float,
                  counts: Counter[str], untried: bool, shut: Failure | None = None) -> float | None:
        """Seconds to wait before the tier's next attempt, or None to move on (or raise when fatal).

        A failure class listed in the cascade's `retries` gets that many retries on the tier,
        whatever its disposition; others follow the retry policy when they are retryable. With a
        deployment of the tier not tried yet, a retry goes there at once; with every deployment's
        breaker open (`shut`), there is none to make: the cascade moves on without waiting."""
        if failure.kind in ("deadline_exceeded", "circuit_open", "budget_exceeded"):
            self.attempts.append(_skipped(tier_, failure.kind))
            if failure.kind == "deadline_exceeded":
                self.deadline = -1.0  # nothing else may start either
            self.rt.note("fallback", failure.kind, model=tier_.model or tier_.label,
                         message=f"{self.c.name}: {failure.message}")
            self._fallback(tier_, failure)
            return None
        limit = self.c.retries.get(failure.kind)
        if limit is None and failure.disposition == FATAL:
            self.rt.note("stop", failure.kind, model=tier_.model or tier_.label,
                         message=f"{self.c.name}: {failure.message}")
            assert self.last_error is not None
            raise self.last_error
        clock = self.c._clock()
        if limit is not None:
            counts[failure.kind] += 1
            again = counts[failure.kind] <= limit
        else:
            again = failure.disposition == RETRY and not self.c.retry.stop(attempt, clock - tier_start)
        if again and shut is not None:
            return self.next_move(tier_, shut, attempt, tier_start, counts, untried)
        if again:
            pause = 0.0 if untried else self.c.retry.wait(attempt, failure.retry_after)
            if clock + pause < self.deadline:
                self.rt.note("retry", failure.kind, model=tier_.model or tier_.label,
                             message=f"{self.c.name}: retrying {tier_.label} in {pause:.3f}s")
                return pause
        self.left_after = failure.kind
        then = f": trying the {failure.kind} fallbacks" if not self.switched and \
            failure.kind in self.c.fallbacks else ""
        self.rt.note("fallback", failure.kind, model=tier_.model or tier_.label,
                     message=f"{self.c.name}: leaving {tier_.label} after {failure.kind}{then}")
        self._fallback(tier_, failure)
        return None

    def _fallback(self, tier_: Tier, failure: Failure) -> None:
        event = {"cascade": self.c.name, "tier": tier_.label, "failure": failure.kind,
                 "message": failure.message}
        events.alert(self.rt, "fallback", f"cascade {self.c.name}: {tier_.label} failed ({failure.kind})",
                     event)
        if self.c.on_fallback is not None:
            try:
                self.c.on_fallback(event)
            except Exception:  # a callback that watches the cascade must not fail its call
                self.c.fallback_errors += 1
                if self.c.fallback_errors == 1 or self.c.fallback_errors % 1000 == 0:
                    log.exception("on_fallback of cascade %s raised (%d so far); the cascade goes on",
                                  self.c.name, self.c.fallback_errors)

    def static_answer(self, tier_: Tier) -> Any:
        """The fixed text as the client's response; asked for a stream, a stream of one chunk."""
        self.rt.note("fallback", "static_answer", model=None, degraded=tier_.degraded,
                     message=f"{self.c.name}: answered with the static last tier")
        if not self.stream:
            return _static(tier_.static or "", self.client, tier_.degraded)
        chunk = static_chunk(tier_.static or "", self.client)
        if self.is_async:
            return AsyncCascadeStream(chunk, _nothing(), None, tier_.label, tier_.degraded)
        return SyncCascadeStream(chunk, iter(()), None, tier_.label, tier_.degraded)

    def exhausted(self) -> Any:
        if self.priced_out is not None and not any(a["attempt"] for a in self.attempts):
            raise self.priced_out  # no tier was called: the budget, not the providers, is why
        tried = ", ".join(f"{a['tier']}: {a['failure']}" for a in self.attempts)
        raise AllProvidersFailed(f"cascade {self.c.name}: every tier failed ({tried})", self.attempts)

    # -- streams ---------------------------------------------------------------------------
    # A failure before the first chunk falls through to the next tier; so does a stream that
    # ends before it (the provider's chunk, not one litellm made up at the end of nothing). The
    # empty stream is closed at once: left open, its step (and its worst-case reservation)
    # would wait for the garbage collector. One that breaks later raises, and counts as a
    # failure of its deployment (its first chunk counted as a success).
    def peek_sync(self, pick: Pick, stream: Any, lease: Lease | None = None) -> Any:
        iterator = iter(stream)
        first = next(iterator, _END)
        if first is _END or empty_start(stream, first):
            close(stream)
            raise EmptyStream(f"the stream from {pick.tier.label} ended before its first chunk")
        return SyncCascadeStream(first, iterator, stream, pick.tier.label, pick.tier.degraded,
                                 functools.partial(_conceal, secrets=self.secrets(pick)),
                                 functools.partial(self.breaker(pick.key).failure, pick.ticket),
                                 lease)

    async def peek_async(self, pick: Pick, stream: Any, lease: Lease | None = None) -> Any:
        iterator = stream.__aiter__()
        first = await anext(iterator, _END)
        if first is _END or empty_start(stream, first):
            await aclose(stream)
            raise EmptyStream(f"the stream from {pick.tier.label} ended before its first chunk")
        return AsyncCascadeStream(first, iterator, stream, pick.tier.label, pick.tier.degraded,
                                  functools.partial(_conceal, secrets=self.secrets(pick)),
                                  functools.partial(self.breaker(pick.key).failure, pick.ticket),
                                  lease)


_END = object()  # what `next` gives back for a stream that had nothing


async def _nothing() -> AsyncIterator[Any]:
    """An async iterator that ends at once (after a static answer's one chunk)."""
    return
    yield


_PHASES = ("connect", "read", "write", "pool")  # an httpx.Timeout's


def _seconds(value: Any) -> float | None:
    """A timeout given in seconds (a number, or a string of one, as litellm takes), if it is one
    that bounds anything: positive and finite."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def _within(bound: float, given: Sequence[Any]) -> Any:
    """An attempt's timeout: `bound` (what is left of the deadline, the tier's timeout), made
    shorter by each timeout the caller gave. One given as an httpx.Timeout keeps its shape:
    each phase the shorter of its own and the bound (a phase it leaves unbounded, the bound)."""
    shapes = []
    for value in given:
        seconds = _seconds(value)
        if seconds is not None:
            bound = min(bound, seconds)
        elif value is not None and all(hasattr(value, phase) for phase in _PHASES):
            shapes.append(value)
    if not shapes:
        return bound
    phases = {phase: min([bound] + [s for shape in shapes if (s := _seconds(getattr(shape, phase)))])
              for phase in _PHASES}
    return type(shapes[0])(**phases)


def _litellm_timeout() -> float | None:
    """`litellm.request_timeout` where the user set it (litellm's own default bounds nothing
    the deadline does not)."""
    import litellm

    try:
        from litellm.litellm_core_utils.request_timeout_resolver import get_configured_request_timeout
    except ImportError:  # an older litellm: its default is 6000 s, far past any deadline
        return _seconds(getattr(litellm, "request_timeout", None))
    return get_configured_request_timeout()


def _body(result: Any) -> Any:
    """The answer in `result`: an openai SDK raw response (`with_raw_response`,
    `with_streaming_response`) is judged by its parsed body, which the SDK keeps for the
    caller's own `parse()`; anything else is the answer itself."""
    parse = getattr(result, "parse", None)
    if callable(parse) and hasattr(result, "http_response"):
        return parse()
    return result


def _skipped(tier_: Tier, failure: str) -> dict[str, Any]:
    """A tier passed over without a call, with the fields of an attempt (`attempt` 0)."""
    return {"tier": tier_.label, "model": tier_.model, "failure": failure, "latency_ms": 0.0,
            "error": None, "attempt": 0}


def _circuit_open(tier_: Tier, keys: Sequence[str]) -> Failure:
    which = keys[0] if len(keys) == 1 else f"every deployment of {tier_.label}"
    return Failure("circuit_open", f"the breaker of {which} is open")


def _conceal(text: str, secrets: Sequence[str]) -> str:
    """`text` with the secrets it may quote masked: those of a known format, and `secrets`."""
    text = mask(text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


_SECRET_MIN = 8


def _mark(result: Any, degraded: bool) -> None:
    """`degraded` on the answer; on a raw response, also on its parsed body, which the caller's
    own `parse()` returns (the SDK keeps it)."""
    targets = [result]
    if hasattr(result, "http_response"):
        with contextlib.suppress(Exception):  # judged by its body already: parsed, and kept
            targets.append(_body(result))
    for target in targets:
        with contextlib.suppress(AttributeError, TypeError, ValueError):  # takes no new attributes
            target.degraded = degraded


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
