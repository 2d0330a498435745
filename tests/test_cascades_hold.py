"""Cascades that hold up in production: released probes, pooled connections, failures classified
from types, every skip visible, truncated streams caught. On the built-in provider, over HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.cascade import (
    BreakerRegistry,
    BreakerSettings,
    Cascade,
    RetryPolicy,
    StreamInterrupted,
    Tier,
    classify,
    clients,
    stop_after_attempt,
    wait_fixed,
)
from cascadeflow.telemetry import Alert
from cascadeflow.testing import Fault

from tests.conftest import KEY, MESSAGES, ONCE, Clock, half_open, tier

# -- 1. probes that never come back --------------------------------------------------------

async def test_a_cancelled_half_open_probe_gives_its_slot_back(provider: Any) -> None:
    """A client disconnect cancels the task running the probe: the slot must not be lost with it."""
    clock = Clock()
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE,
                      registry=BreakerRegistry(), clock=clock,
                      breaker=BreakerSettings(failure_threshold=1, recovery_timeout=10))
    provider.inject(Fault.parse("status=503,times=1,model=gpt-4o"))
    await cascade.acomplete(messages=MESSAGES)  # the primary fails once: its breaker opens
    clock.now = 10.0  # half-open: one probe slot
    provider.inject(Fault.parse("hold,times=1,model=gpt-4o"))  # unanswered until released
    probe = asyncio.create_task(cascade.acomplete(messages=MESSAGES))
    while sum(r.model == "gpt-4o" for r in provider.requests) < 2 and not probe.done():
        await asyncio.sleep(0.01)  # until the probe is on the wire, however long that takes
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    provider.release()
    response = await cascade.acomplete(messages=MESSAGES)  # the slot is free again: probed, closed
    assert response.choices[0].message.content.startswith("Reply from gpt-4o:")
    assert sum(r.model == "gpt-4o" for r in provider.requests) == 3


def test_a_probe_that_never_answers_counts_as_failed_after_the_probe_timeout() -> None:
    clock = Clock()
    breaker = half_open("m@x", BreakerSettings(failure_threshold=1, recovery_timeout=10, probe_timeout=60),
                        clock)
    assert breaker.acquire()  # the probe; its caller then vanishes without a word
    clock.now = 69.0
    assert breaker.state == "half_open" and not breaker.acquire()
    clock.now = 70.0  # the probe timed out: as if it failed, so the breaker is open again ...
    assert breaker.state == "open" and not breaker.acquire()
    clock.now = 80.0  # ... and recovers as usual: a new probe slot
    assert breaker.state == "half_open" and breaker.acquire()
    breaker.success()
    assert breaker.state == "closed"


def test_an_answered_probe_does_not_time_out() -> None:
    clock = Clock()
    settings = BreakerSettings(failure_threshold=1, recovery_timeout=10, half_open_max_calls=2,
                               probe_timeout=5)
    breaker = half_open("m@y", settings, clock)
    assert breaker.acquire() and breaker.acquire()
    breaker.success()
    breaker.release()  # the second probe ended without a verdict (a policy stop)
    clock.now = 100.0
    assert breaker.state == "half_open" and breaker.acquire()


# -- 2. one connection per deployment ------------------------------------------------------

def connections(provider: Any, model: str) -> int:
    return len({r.peer for r in provider.requests if r.model == model})


def test_attempts_reuse_one_connection_per_deployment(provider: Any) -> None:
    """The timeout of each attempt is what is left of the deadline, a different number each time:
    it goes with the request, not into the choice of client. Four failures in a row (below the
    breaker's threshold, so the primary stays in use; a random rate could open it) make retries."""
    cascadeflow.init(mode="observe")
    provider.inject(Fault.parse("status=500,times=4,model=gpt-4o"))
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")],
                      retry=RetryPolicy(stop=stop_after_attempt(2), wait=wait_fixed(0.001)))
    with cascadeflow.run():
        for _ in range(20):
            cascade.complete(messages=MESSAGES)
    assert sum(r.model == "gpt-4o" for r in provider.requests) == 22  # 2 calls x 2 attempts + 18
    assert connections(provider, "gpt-4o") == 1
    assert connections(provider, "gpt-4o-mini") <= 1
    pooled = clients.client("openai/gpt-4o", {"api_base": provider.url, "api_key": KEY}, is_async=False)
    cascadeflow.shutdown()  # closes what the cascades opened
    assert pooled is not None and pooled.is_closed()


async def test_async_attempts_reuse_one_connection_per_deployment(provider: Any) -> None:
    cascade = Cascade([tier(provider, "gpt-4o")], retry=ONCE)
    for _ in range(20):
        await cascade.acomplete(messages=MESSAGES)
    assert connections(provider, "gpt-4o") == 1
    await clients.aclose()


def test_calls_by_logical_name_reuse_connections(provider: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_KEY", KEY)
    (tmp_path / "cascadeflow.toml").write_text(
        f'[cascades.classify]\ndeadline_s = 30\ntiers = [{{ model = "openai/gpt-4o", api_base = '
        f'"{provider.url}", api_key_env = "TRIAGE_KEY" }}]\n')
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0) as session:
        for _ in range(10):
            litellm.completion(model="classify", messages=MESSAGES, max_tokens=50)
    assert len(provider.requests) == 10 and connections(provider, "gpt-4o") == 1
    assert session.summary()["steps"] == 10
    assert KEY not in repr(session.trace())  # the pooled client carries the key: never traced
    cascadeflow.shutdown()


def test_a_client_the_caller_passes_is_used_as_is(provider: Any) -> None:
    mine = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    cascade = Cascade([Tier("openai/gpt-4o")], retry=ONCE)
    cascade.complete(messages=MESSAGES, client=mine)
    assert provider.requests[0].model == "gpt-4o" and not mine.is_closed()
    mine.close()


# -- 3. failures classified from types, not message text ------------------------------------

@pytest.mark.parametrize(("body", "kind"), [("{not json", "malformed_response"), ("", "malformed_response"),
                                            ("[1, 2", "malformed_response")])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_200_with_a_body_that_does_not_parse_is_malformed(provider: Any, body: str, kind: str,
                                                            client: str) -> None:
    provider.inject(Fault(body=body))
    with pytest.raises(Exception) as info:
        if client == "litellm":
            litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url,
                               api_key=KEY, num_retries=0)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
            sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)  # type: ignore[arg-type]
    assert classify(info.value).kind == kind


def test_a_5xx_with_a_body_that_does_not_parse_is_a_server_error(provider: Any) -> None:
    provider.inject(status=502, message="<html>bad gateway</html>")
    with pytest.raises(Exception) as info:
        litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url,
                           api_key=KEY, num_retries=0)
    assert classify(info.value).kind == "server_error"


# -- 4. skipped tiers are fallbacks like any other --------------------------------------------

def test_skipped_tiers_alert_and_call_on_fallback(provider: Any, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRIAGE_KEY", KEY)
    (tmp_path / "cascadeflow.toml").write_text(f'''
[models."openai/gpt-4o"]
tags = ["gdpr"]

[cascades.classify]
tiers = [
  {{ model = "anthropic/claude-3-5-haiku-20241022", api_key_env = "TRIAGE_KEY" }},
  {{ model = "openai/gpt-4o", api_base = "{provider.url}", api_key_env = "TRIAGE_KEY" }},
]
''')
    alerts: list[Alert] = []
    cascadeflow.init(mode="observe", alerts=[alerts.append])
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run() as session:  # an openai client cannot reach the anthropic tier
        sdk.chat.completions.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    events: list[dict[str, Any]] = []
    excluded = Cascade([tier(provider, "gpt-4o-mini"), tier(provider, "gpt-4o")], retry=ONCE,
                       on_fallback=events.append, name="gdpr_only")
    with cascadeflow.run(compliance="gdpr") as session:
        excluded.complete(messages=MESSAGES)
    cascadeflow.shutdown()
    assert [(a.kind, a.attributes["failure"]) for a in alerts] == [
        ("fallback", "tier_unreachable"), ("fallback", "compliance_excluded")]
    assert [(e["cascade"], e["tier"], e["failure"]) for e in events] == [
        ("gdpr_only", "openai/gpt-4o-mini", "compliance_excluded")]
    assert session.summary()["fallbacks"] == 1


# -- 5. a stream that ends before the provider finished it ---------------------------------------

@pytest.mark.parametrize("mode", ["off", "observe", "enforce"])
async def test_a_truncated_stream_raises_with_what_was_received(provider: Any, mode: str) -> None:
    """litellm fills in finish_reason="stop" for a stream that simply stopped; the cascade must not
    hand that on as a complete answer."""
    cascadeflow.init(mode=mode)
    provider.inject(Fault.parse("end_stream_after=3,model=gpt-4o,times=1"))
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    async with cascadeflow.run() as session:
        stream = await cascade.acomplete(messages=MESSAGES, stream=True)
        received = []
        with pytest.raises(StreamInterrupted) as info:
            async for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert info.value.failure == "truncated" and info.value.tier == "openai/gpt-4o"
    assert info.value.received == "".join(received) and info.value.received
    if mode != "off":
        assert [(e["status"], e["error"]) for e in session.trace()] == [("truncated", "StreamTruncated")]
    async for _ in await cascade.acomplete(messages=MESSAGES, stream=True):  # a whole one ends quietly
        pass


@pytest.mark.parametrize("mode", ["off", "observe", "enforce"])
def test_a_truncated_sync_stream_raises_with_what_was_received(provider: Any, mode: str) -> None:
    """The same for `complete(stream=True)`, whose stream is iterated on the caller's thread."""
    cascadeflow.init(mode=mode)
    provider.inject(Fault.parse("end_stream_after=3,model=gpt-4o,times=1"))
    cascade = Cascade([tier(provider, "gpt-4o"), tier(provider, "gpt-4o-mini")], retry=ONCE)
    with cascadeflow.run() as session:
        stream = cascade.complete(messages=MESSAGES, stream=True)
        received = []
        with pytest.raises(StreamInterrupted) as info:
            for chunk in stream:
                received.append(chunk.choices[0].delta.content or "")
    assert info.value.failure == "truncated" and info.value.tier == "openai/gpt-4o"
    assert info.value.received == "".join(received) and info.value.received
    if mode != "off":
        assert [(e["status"], e["error"]) for e in session.trace()] == [("truncated", "StreamTruncated")]
    whole = cascade.complete(messages=MESSAGES, stream=True)  # a whole one ends quietly
    assert "".join(c.choices[0].delta.content or "" for c in whole).startswith("Reply from gpt-4o:")
