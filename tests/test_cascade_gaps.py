"""Cascade gaps left by earlier reviews: a half-open breaker closed by a call that was no probe,
client-level timeouts the cascade's deadline overrode, a budget that stopped a cascade a cheaper
tier could have served. On the built-in provider, through the real litellm and openai clients
(and a real redis-server for the shared breakers)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path
from typing import Any

import cascadeflow
import httpx
import litellm
import openai
import pytest
from cascadeflow import BudgetExceeded, StepLimitReached
from cascadeflow.breakers import deployment_key
from cascadeflow.cascade import (
    BreakerRegistry,
    BreakerSettings,
    Cascade,
    ClientPool,
    Tier,
    breakers,
)
from cascadeflow.ledger.breakerstore import open_redis_breakers
from cascadeflow.testing import Fault, serve

from tests.conftest import KEY, MESSAGES, ONCE, Clock, half_open, tier


async def on_the_wire(provider: Any, model: str, count: int, task: asyncio.Task[Any]) -> None:
    """Until `count` requests for `model` reached the provider (however long that takes)."""
    while sum(r.model == model for r in provider.requests) < count and not task.done():
        await asyncio.sleep(0.01)
    assert not task.done(), "the held call ended before it was held"


# -- 1. only a probe decides a half-open breaker ------------------------------------------------

def _registry(kind: str, redis_url: str | None, clock: Clock) -> BreakerRegistry:
    if kind == "memory":
        return BreakerRegistry()
    assert redis_url is not None
    store = open_redis_breakers(redis_url, "test")
    store.clock = clock
    return BreakerRegistry(store)


@pytest.fixture(params=["memory", "redis"])
def registry(request: pytest.FixtureRequest) -> Any:
    """(the registry, its clock): breakers in this process, or shared in a real redis-server."""
    clock = Clock()
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return _registry(request.param, url, clock), clock


async def _opened_behind_a_held_call(provider: Any, reg: Any, clock: Clock
                                     ) -> tuple[Cascade, str, asyncio.Task[Any]]:
    """gpt-4o, then gpt-4o-mini: a call to gpt-4o admitted while its breaker was closed is held
    by the provider, and the next call's failure opens the breaker (threshold 1). The cascade,
    gpt-4o's breaker key and the held call."""
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE,
                      registry=reg, clock=clock,
                      breaker=BreakerSettings(failure_threshold=1, recovery_timeout=1000))
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))
    held = asyncio.create_task(cascade.acomplete(messages=MESSAGES))  # admitted while closed
    await on_the_wire(provider, "gpt-4o", 1, held)
    provider.inject(Fault.parse("status=503,times=1,model=gpt-4o"))
    await cascade.acomplete(messages=MESSAGES)  # the primary fails: its breaker opens
    return cascade, deployment_key("openai/gpt-4o", provider.url), held


async def test_a_late_success_of_a_call_admitted_closed_does_not_close_a_half_open_breaker(
        provider: Any, registry: Any) -> None:
    """A call sent while the breaker was closed answers after it opened and went half-open: that
    says nothing about whether the deployment recovered, so it must not close the breaker (no
    probe was sent, none succeeded); the probe slot stays for a real probe."""
    reg, clock = registry
    cascade, key, slow = await _opened_behind_a_held_call(provider, reg, clock)
    assert reg.get(key, cascade.breaker, clock).state == "open"
    clock.now = 1000.0  # half-open: one probe slot, none taken
    assert reg.get(key, cascade.breaker, clock).state == "half_open"
    provider.release()
    late = await slow
    assert late.choices[0].message.content.startswith("Reply from gpt-4o:")
    breaker = reg.get(key, cascade.breaker, clock)
    assert breaker.state == "half_open"  # not closed by a call that was no probe
    provider.inject(Fault.parse("status=503,times=1,model=gpt-4o"))
    await cascade.acomplete(messages=MESSAGES)  # the real probe: it fails, the breaker opens again
    assert breaker.state == "open"


async def test_a_call_admitted_closed_and_cancelled_gives_back_no_probe_slot(provider: Any,
                                                                             registry: Any) -> None:
    """A call sent while the breaker was closed is cancelled while a probe is out: it took no
    probe slot, so it must give none back (a second probe would go to a deployment that may be
    down, past `half_open_max_calls`)."""
    reg, clock = registry
    cascade, key, early = await _opened_behind_a_held_call(provider, reg, clock)
    clock.now = 1000.0
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))
    probe = asyncio.create_task(cascade.acomplete(messages=MESSAGES))  # takes the one probe slot
    await on_the_wire(provider, "gpt-4o", 3, probe)
    early.cancel()
    with pytest.raises(asyncio.CancelledError):
        await early
    assert not reg.get(key, cascade.breaker, clock).acquire()  # still the one probe out
    provider.release()
    await probe
    assert reg.get(key, cascade.breaker, clock).state == "closed"  # the probe's own success


def test_a_probe_of_an_earlier_half_open_period_does_not_close_the_breaker() -> None:
    """A probe that outlived `probe_timeout` (the breaker opened again, and is half-open anew
    with a probe of its own out) answers late: the new period's probe decides, not it."""
    clock = Clock()
    breaker = half_open("m@x", BreakerSettings(failure_threshold=1, recovery_timeout=10, probe_timeout=60),
                        clock)
    old = breaker.admit()
    assert old is not None and old.probe
    clock.now += 60  # the probe timed out: open again ...
    assert breaker.state == "open"
    clock.now += 10  # ... and half-open again, with a probe of its own
    new = breaker.admit()
    assert new is not None and breaker.admit() is None
    breaker.success(old)  # the old probe answers at last
    assert breaker.state == "half_open"
    breaker.release(old)  # nor does it give back the new period's slot
    assert breaker.admit() is None
    breaker.success(new)
    assert breaker.state == "closed"


# -- 2. the caller's shorter timeout bounds each attempt ------------------------------------------

def classify_config(tmp_path: Path, deadline_s: float = 60) -> Path:
    """`[cascades.classify]`: gpt-4o, then gpt-4o-mini, one attempt each."""
    config = tmp_path / "cascadeflow.toml"
    config.write_text(f'mode = "observe"\n\n[cascades.classify]\ndeadline_s = {deadline_s}\n'
                      'max_attempts = 1\n'
                      'tiers = [{ model = "openai/gpt-4o" }, { model = "openai/gpt-4o-mini" }]\n')
    return config


def test_an_openai_clients_own_timeout_bounds_each_attempt(provider: Any, tmp_path: Path) -> None:
    """`openai.OpenAI(timeout=3)` and a cascade with a 60 s deadline: a hung primary is given up
    after the client's 3 s and the next tier answers, not after the deadline (when no time was
    left for the next tier)."""
    cascadeflow.init(config=classify_config(tmp_path))
    provider.inject(Fault.parse("hold,model=gpt-4o"))  # never answers in this test
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, timeout=3)
    reply = client.chat.completions.create(model="classify", messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("Reply from gpt-4o-mini:")


def timeouts_sent() -> tuple[list[Any], httpx.Client]:
    """An httpx client that records the timeout each request was sent with."""
    seen: list[Any] = []
    return seen, httpx.Client(event_hooks={"request": [lambda r: seen.append(r.extensions["timeout"])]})


PHASES = ("connect", "read", "write", "pool")


def test_an_openai_clients_httpx_timeout_keeps_its_shorter_phases(provider: Any, tmp_path: Path) -> None:
    """A client's `httpx.Timeout(20, connect=2)`: each phase of each attempt is bounded by the
    shorter of the client's and the deadline's (60 s), not replaced by the deadline."""
    cascadeflow.init(config=classify_config(tmp_path))
    seen, http = timeouts_sent()
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, http_client=http,
                           timeout=httpx.Timeout(20, connect=2))
    client.chat.completions.create(model="classify", messages=MESSAGES)
    assert seen == [{"connect": 2.0, "read": 20.0, "write": 20.0, "pool": 20.0}]
    seen.clear()
    client.with_options(timeout=5).chat.completions.create(model="classify", messages=MESSAGES)
    assert seen == [dict.fromkeys(PHASES, 5.0)]


def test_a_litellm_calls_httpx_timeout_bounds_each_attempt(provider: Any, tmp_path: Path) -> None:
    """`litellm.completion(model="classify", timeout=httpx.Timeout(...))` was replaced by the
    deadline's seconds; now each phase keeps the shorter of the two."""
    cascadeflow.init(config=classify_config(tmp_path))
    seen, http = timeouts_sent()
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, http_client=http)
    litellm.completion(model="classify", messages=MESSAGES, client=client,
                       timeout=httpx.Timeout(30, connect=1))
    assert seen == [{"connect": 1.0, "read": 30.0, "write": 30.0, "pool": 30.0}]


@pytest.mark.parametrize("how", ["seconds_as_text", "tier_params", "litellm_request_timeout"])
def test_every_timeout_the_caller_gave_bounds_each_attempt(provider: Any, how: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The call's `timeout="4"` (litellm takes text), a tier's `params={"timeout": 4}`, and
    `litellm.request_timeout = 4` each bound the attempt below the 60 s deadline."""
    seen, http = timeouts_sent()
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, http_client=http)
    params = {"client": client, **({"timeout": 4} if how == "tier_params" else {})}
    cascade = Cascade([Tier("openai/gpt-4o", params=params)], deadline_s=60)
    extra = {"timeout": "4"} if how == "seconds_as_text" else {}
    if how == "litellm_request_timeout":
        monkeypatch.setattr(litellm, "request_timeout", 4)
    cascade.complete(messages=MESSAGES, **extra)
    assert seen == [dict.fromkeys(PHASES, 4.0)]


# -- 3. a tier the budget cannot pay for is passed over for a cheaper one ----------------------

LONG = [{"role": "user", "content": "word " * 600}]  # ~600 tokens: 0.0015 USD in for gpt-4o


def test_a_tier_the_budget_cannot_pay_for_is_skipped_for_a_cheaper_one(provider: Any) -> None:
    """0.001 USD left: gpt-4o needs 0.00168 even for a 16-token answer, gpt-4o-mini 0.0001. The
    cascade passes gpt-4o over (a `budget_exceeded` fallback, like any skipped tier) and
    gpt-4o-mini answers, instead of the cascade stopping with money left for it."""
    cascadeflow.init(mode="enforce")
    told: list[dict[str, Any]] = []
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE,
                      name="classify", on_fallback=told.append)
    with cascadeflow.run(budget=0.001) as session:
        reply = cascade.complete(messages=LONG, max_tokens=50)
    assert reply.choices[0].message.content.startswith("Reply from gpt-4o-mini:")
    assert [r.model for r in provider.requests] == ["gpt-4o-mini"]  # nothing was sent to gpt-4o
    skips = [e for e in session.trace() if e["action"] == "fallback"]
    assert [(e["reason"], e["model"]) for e in skips] == [("budget_exceeded", "openai/gpt-4o")]
    assert [(t["tier"], t["failure"]) for t in told] == [("openai/gpt-4o", "budget_exceeded")]
    assert session.summary()["fallbacks"] == 1 and session.summary()["budget_remaining"] > 0


async def test_a_cascade_no_tier_of_which_fits_raises_budget_exceeded(provider: Any) -> None:
    """When the budget pays for no tier, the caller learns it from the budget's own error (the
    one a plain call raises), not from an AllProvidersFailed no provider had a part in."""
    cascadeflow.init(mode="enforce")
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    async with cascadeflow.run(budget=0.00001):
        with pytest.raises(BudgetExceeded) as stopped:
            await cascade.acomplete(messages=LONG, max_tokens=50)
    assert "gpt-4o-mini" in str(stopped.value) and provider.requests == []


def test_a_stop_other_than_the_budget_still_ends_the_cascade(provider: Any) -> None:
    """`max_steps` stops whatever model is asked for: the next tier is not tried."""
    cascadeflow.init(mode="enforce")
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    with cascadeflow.run(max_steps=1):
        cascade.complete(messages=MESSAGES)
        with pytest.raises(StepLimitReached):
            cascade.complete(messages=MESSAGES)
    assert [r.model for r in provider.requests] == ["gpt-4o"]


# -- 4. a policy's cut of a stream is no failure of the deployment ------------------------------

@pytest.mark.parametrize("is_async", [False, True])
async def test_a_budget_cut_of_a_cascaded_stream_is_budget_exceeded_not_a_broken_stream(
        provider: Any, is_async: bool) -> None:
    """Enforce mode cuts a stream whose output passes what its reservation pays for (a provider
    that ignores `max_tokens`) and raises `BudgetExceeded`. Through a cascade it came out as
    `StreamInterrupted(failure="stream_broken")` and counted against the deployment's breaker:
    two cut streams (a success and a failure each) opened a healthy deployment's breaker."""
    cascadeflow.init(mode="enforce")
    provider.inject(Fault.parse("ignore_max_tokens"))
    cascade = Cascade([tier(provider, "gpt-4o")], retry=ONCE,
                      breaker=BreakerSettings(min_calls=4, window=4, failure_rate=0.5))
    for _ in range(3):
        async with cascadeflow.run(budget=1.0):
            with pytest.raises(BudgetExceeded) as cut:
                if is_async:
                    async for _chunk in await cascade.acomplete(messages=MESSAGES, max_tokens=3, stream=True):
                        pass
                else:
                    for _chunk in cascade.complete(messages=MESSAGES, max_tokens=3, stream=True):
                        pass
        assert cut.value.text
    assert breakers.get(deployment_key("openai/gpt-4o", provider.url), cascade.breaker).state == "closed"
    assert len(provider.requests) == 3  # the third went out: no breaker opened


# -- 5. the HTTP client litellm is configured with ----------------------------------------------

async def test_a_cascade_sends_through_litellms_client_session(provider: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """`litellm.client_session` / `aclient_session` (an application's proxy, certificates, hooks)
    carry every plain litellm call; a cascade's attempts bypassed them with clients of its own."""
    sync_seen: list[str] = []
    async_seen: list[str] = []
    monkeypatch.setattr(litellm, "client_session",
                        httpx.Client(event_hooks={"request": [lambda r: sync_seen.append(r.url.path)]}))

    async def note(request: httpx.Request) -> None:
        async_seen.append(request.url.path)

    monkeypatch.setattr(litellm, "aclient_session", httpx.AsyncClient(event_hooks={"request": [note]}))
    cascade = Cascade([tier(provider, "gpt-4o")], retry=ONCE)
    cascade.complete(messages=MESSAGES)
    await cascade.acomplete(messages=MESSAGES)
    assert sync_seen == ["/v1/chat/completions"] and async_seen == ["/v1/chat/completions"]


@pytest.mark.parametrize("is_async", [False, True])
async def test_a_cascades_pooled_client_verifies_tls_as_litellm_is_told(
        provider: Any, monkeypatch: pytest.MonkeyPatch, is_async: bool) -> None:
    """`litellm.ssl_verify = False` (or a CA bundle) is how litellm is pointed at a proxy or a
    private CA; the cascade's own clients used the SDK's defaults, so with a cascade every TLS
    call failed as a `connection_error`. (Read off the client: the built-in provider has no TLS.)"""
    monkeypatch.setattr(litellm, "ssl_verify", False)
    pool = ClientPool()
    pooled = pool.client("openai/gpt-4o", {"api_base": provider.url, "api_key": KEY}, is_async)
    assert pooled._client._transport._pool._ssl_context.verify_mode == ssl.CERT_NONE
    await pool.aclose() if is_async else pool.close()


# -- 6. an openai SDK client's cascade guards the client's own endpoint ----------------------------

def test_two_openai_clients_of_two_endpoints_share_no_breaker(provider: Any) -> None:
    """Through the openai SDK a cascade calls the client's own base URL, but its breakers were
    keyed with no endpoint: gpt-4o failing at one endpoint opened the breaker of gpt-4o at every
    other, and a healthy endpoint's calls skipped it (`circuit_open`)."""
    cascade = Cascade(["openai/gpt-4o", "openai/gpt-4o-mini"], retry=ONCE,
                      breaker=BreakerSettings(failure_threshold=1))
    provider.inject(Fault.parse("status=503,model=gpt-4o"))

    def through(client: openai.OpenAI) -> Any:
        return cascade.run(lambda **kw: client.chat.completions.create(**kw), {"messages": MESSAGES},
                           client="openai", reachable=("openai",), endpoint=str(client.base_url))

    with serve() as healthy:
        down = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
        up = openai.OpenAI(base_url=healthy.url, api_key=KEY, max_retries=0)
        assert through(down).choices[0].message.content.startswith("Reply from gpt-4o-mini:")
        assert through(up).choices[0].message.content.startswith("Reply from gpt-4o:")
        assert [r.model for r in healthy.requests] == ["gpt-4o"]
    assert breakers.get(deployment_key("openai/gpt-4o", provider.url), cascade.breaker).state == "open"


def test_a_cascade_called_by_name_through_two_clients_keeps_their_breakers_apart(
        provider: Any, tmp_path: Path) -> None:
    """The same through the intercepted client (`model="classify"` from the config file): client
    A's endpoint fails gpt-4o once (threshold 1), client B's endpoint is healthy and still gets
    gpt-4o, not a `circuit_open` skip to gpt-4o-mini."""
    config = classify_config(tmp_path)
    config.write_text(config.read_text() + "\n[cascades.classify.breaker]\nfailure_threshold = 1\n")
    cascadeflow.init(config=config)
    provider.inject(Fault.parse("status=503,model=gpt-4o"))
    with serve() as healthy:
        down = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
        up = openai.OpenAI(base_url=healthy.url, api_key=KEY, max_retries=0)
        first = down.chat.completions.create(model="classify", messages=MESSAGES)
        second = up.chat.completions.create(model="classify", messages=MESSAGES)
        assert [r.model for r in healthy.requests] == ["gpt-4o"]
    assert first.choices[0].message.content.startswith("Reply from gpt-4o-mini:")
    assert second.choices[0].message.content.startswith("Reply from gpt-4o:")


# -- on_fallback is the application's code: its failure is logged, never the call's -----------


def test_an_on_fallback_that_raises_does_not_fail_the_call_the_next_tier_answers(
        provider: Any, caplog: pytest.LogCaptureFixture) -> None:
    """gpt-4o answers 503, gpt-4o-mini answers: a callback that raises on the fallback (a
    dashboard client whose server is down) is logged with its traceback, and the caller gets
    gpt-4o-mini's answer, as it would with no callback."""
    def broken(event: dict[str, Any]) -> None:
        raise RuntimeError("dashboard unreachable")

    provider.inject(model="gpt-4o", status=503)
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE,
                      name="classify", on_fallback=broken)
    with caplog.at_level("ERROR", logger="cascadeflow.cascade"):
        reply = cascade.complete(messages=MESSAGES)
        cascade.complete(messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("Reply from gpt-4o-mini:")
    assert cascade.fallback_errors == 2
    logged = [r for r in caplog.records if r.name == "cascadeflow.cascade"]
    assert len(logged) == 1 and "on_fallback of cascade classify raised" in logged[0].getMessage()
    assert logged[0].exc_info is not None and "dashboard unreachable" in str(logged[0].exc_info[1])
