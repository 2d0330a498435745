"""Cascade gaps left by earlier reviews: a half-open breaker closed by a call that was no probe,
client-level timeouts the cascade's deadline overrode, a budget that stopped a cascade a cheaper
tier could have served. On the built-in provider, through the real litellm and openai clients
(and a real redis-server for the shared breakers)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from cascadeflow.breakers import deployment_key
from cascadeflow.cascade import (
    BreakerRegistry,
    BreakerSettings,
    Cascade,
    RetryPolicy,
    Tier,
    breakers,
    stop_after_attempt,
)
from cascadeflow.ledger.breakerstore import open_redis_breakers
from cascadeflow.testing import Fault

from tests.conftest import Clock, half_open

KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "Classify: charged twice"}]
ONCE = RetryPolicy(stop=stop_after_attempt(1))


@pytest.fixture(autouse=True)
def _fresh() -> None:
    breakers.reset()


def tier(provider: Any, model: str, **kwargs: Any) -> Tier:
    return Tier(f"openai/{model}", params={"api_base": provider.url, "api_key": KEY}, **kwargs)


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


async def test_a_late_success_of_a_call_admitted_closed_does_not_close_a_half_open_breaker(
        provider: Any, registry: Any) -> None:
    """A call sent while the breaker was closed answers after it opened and went half-open: that
    says nothing about whether the deployment recovered, so it must not close the breaker (no
    probe was sent, none succeeded); the probe slot stays for a real probe."""
    reg, clock = registry
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE,
                      registry=reg, clock=clock,
                      breaker=BreakerSettings(failure_threshold=1, recovery_timeout=1000))
    key = deployment_key("openai/gpt-4o", provider.url)
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))
    slow = asyncio.create_task(cascade.acomplete(messages=MESSAGES))  # admitted while closed
    await on_the_wire(provider, "gpt-4o", 1, slow)
    provider.inject(Fault.parse("status=503,times=1,model=gpt-4o"))
    await cascade.acomplete(messages=MESSAGES)  # the primary fails: its breaker opens
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
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE,
                      registry=reg, clock=clock,
                      breaker=BreakerSettings(failure_threshold=1, recovery_timeout=1000))
    key = deployment_key("openai/gpt-4o", provider.url)
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))
    early = asyncio.create_task(cascade.acomplete(messages=MESSAGES))  # admitted while closed
    await on_the_wire(provider, "gpt-4o", 1, early)
    provider.inject(Fault.parse("status=503,times=1,model=gpt-4o"))
    await cascade.acomplete(messages=MESSAGES)  # opens the breaker
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
