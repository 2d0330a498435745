"""Cascades: taxonomy, retries, breakers, fallbacks and visibility, on the built-in provider."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pydantic
import pytest
from cascadeflow.cascade import (
    BreakerSettings,
    Cascade,
    CircuitBreaker,
    Expectations,
    InMemoryBreakerStore,
    RetryPolicy,
    StreamInterrupted,
    Tier,
    breakers,
    classify,
    stop_after_attempt,
    stop_after_delay,
    wait_fixed,
    wait_full_jitter,
)
from cascadeflow.telemetry import Alert
from cascadeflow.testing import Fault

from tests.conftest import Clock, half_open

KEY = "sk-test-not-a-real-key-0000"
FAST = RetryPolicy(stop=stop_after_attempt(2), wait=wait_fixed(0.001))
MESSAGES = [{"role": "user", "content": "Classify: charged twice"}]


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    breakers.reset()


def tiers(provider: Any, *models: str, degraded_last: bool = False) -> list[Tier]:
    out = [Tier(f"openai/{m}", params={"api_base": provider.url, "api_key": KEY}) for m in models]
    if degraded_last:
        last = out[-1]
        out[-1] = Tier(last.model, degraded=True, params=last.params)
    return out


# -- taxonomy -----------------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "kind", "disposition"), [
    ("status=429,retry_after=2", "rate_limited", "retry"),
    ("status=500", "server_error", "retry"),
    ("status=503", "server_error", "retry"),
    ("empty_body", "malformed_response", "retry"),
    ("malformed_json", "malformed_response", "retry"),
    ("body={not json", "malformed_response", "retry"),
    ("status=401", "authentication", "fatal"),
    ("status=400", "bad_request", "fatal"),
    ("status=404", "model_not_found", "next"),
    ("latency_ms=300", "timeout", "retry"),
])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_failures_are_classified(provider: Any, fault: str, kind: str, disposition: str, client: str) -> None:
    headers = {"x-cascadeflow-fault": fault}
    timeout = 0.1 if kind == "timeout" else 10.0
    with pytest.raises(Exception) as info:
        if client == "litellm":
            litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url,
                               api_key=KEY, num_retries=0, timeout=timeout, extra_headers=headers)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0, timeout=timeout)
            sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                        extra_headers=headers)
    failure = classify(info.value)
    assert (failure.kind, failure.disposition) == (kind, disposition)
    if kind == "rate_limited":
        assert failure.retry_after == 2.0


@pytest.mark.parametrize(("form", "low", "high"), [("ms", 1.5, 1.5), ("date", 28.0, 30.0),
                                                   ("seconds", 30.0, 30.0)])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_the_wait_a_provider_asks_for_is_read_in_each_form(provider: Any, client: str, form: str,
                                                           low: float, high: float) -> None:
    """`retry-after-ms` (OpenAI's, read first by its SDK) and a `Retry-After` HTTP date were not
    read: the backoff ignored them and retried a rate-limited tier before it said to."""
    wait = 1.5 if form == "ms" else 30
    headers = {"x-cascadeflow-fault": f"status=429,retry_after={wait},retry_after_as={form}"}
    with pytest.raises(Exception) as info:
        if client == "litellm":
            litellm.completion(model="openai/gpt-4o-mini", messages=MESSAGES, api_base=provider.url,
                               api_key=KEY, num_retries=0, extra_headers=headers)
        else:
            sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
            sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,  # type: ignore[arg-type]
                                        extra_headers=headers)
    failure = classify(info.value)
    assert failure.kind == "rate_limited"
    assert failure.retry_after is not None and low <= failure.retry_after <= high


class Verdict(pydantic.BaseModel):
    category: str


def test_expectations() -> None:
    expect = Expectations(schema=Verdict)
    assert expect.check("", "stop", 0).kind == "empty_response"  # type: ignore[union-attr]
    assert expect.check('{"category": "billing"}', "length", 0).kind == "truncated"  # type: ignore[union-attr]
    assert expect.check("I'm sorry, but I can't help with that.", "stop", 0).kind == "refusal"  # type: ignore[union-attr]
    assert expect.check("billing", "stop", 0).kind == "schema_invalid"  # type: ignore[union-attr]
    assert expect.check('{"category": "billing"}', "stop", 0) is None
    assert Expectations(whole_answers=False).check("partial", "length", 0) is None
    assert Expectations(schema={"type": "object", "required": ["a"]}).check('{"b": 1}', "stop", 0) \
        .kind == "schema_invalid"  # type: ignore[union-attr]


# -- retry strategies ---------------------------------------------------------------------

def test_retry_strategies_compose() -> None:
    stop = stop_after_attempt(3) | stop_after_delay(1.0)
    assert not stop(1, 0.1) and stop(3, 0.1) and stop(1, 1.5)
    import random

    wait = wait_full_jitter(0.5, 4.0, rng=random.Random(1))
    pauses = [wait(n, None) for n in range(1, 8)]
    assert all(0 <= p <= min(4.0, 0.5 * 2 ** (n - 1)) for n, p in zip(range(1, 8), pauses, strict=True))
    assert wait(1, 3.0) >= 3.0  # Retry-After is honoured


# -- circuit breaker ----------------------------------------------------------------------

def test_breaker_opens_on_consecutive_failures_and_recovers() -> None:
    clock = Clock()
    changes: list[tuple[str, str, str]] = []
    breaker = CircuitBreaker("m@x", BreakerSettings(failure_threshold=3, recovery_timeout=10,
                                                    half_open_max_calls=2),
                             InMemoryBreakerStore(), clock, [lambda *c: changes.append(c)])
    for _ in range(3):
        assert breaker.acquire()
        breaker.failure()
    assert breaker.state == "open" and not breaker.acquire()
    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.acquire() and breaker.acquire() and not breaker.acquire()  # exactly 2 probes
    breaker.success()
    breaker.success()
    assert breaker.state == "closed"
    assert [c[1:] for c in changes] == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_breaker_opens_on_failure_rate_and_reopens_on_a_failed_probe() -> None:
    clock = Clock()
    breaker = CircuitBreaker("m@y", BreakerSettings(failure_threshold=100, failure_rate=0.5, window=10,
                                                    min_calls=10, recovery_timeout=5),
                             InMemoryBreakerStore(), clock)
    for i in range(10):
        breaker.acquire()
        breaker.failure() if i % 2 else breaker.success()
    assert breaker.state == "open"
    clock.now = 5.0
    assert breaker.acquire()
    breaker.failure()
    assert breaker.state == "open" and not breaker.acquire()


def test_half_open_hands_out_exactly_the_probe_slots_under_concurrency() -> None:
    settings = BreakerSettings(failure_threshold=1, recovery_timeout=1, half_open_max_calls=3)
    breaker = half_open("m@z", settings, Clock())
    granted: list[bool] = []
    barrier = threading.Barrier(32)

    def probe() -> None:
        barrier.wait()
        granted.append(breaker.acquire())

    threads = [threading.Thread(target=probe) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted.count(True) == 3


# -- cascades over HTTP -------------------------------------------------------------------

def test_fallback_is_visible_everywhere(provider: Any) -> None:
    alerts: list[Alert] = []
    events: list[dict[str, Any]] = []
    cascadeflow.init(mode="observe", alerts=[alerts.append])
    provider.inject(model="gpt-4o", status=503)
    classify_step = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini", degraded_last=True), name="classify",
                            retry=FAST, on_fallback=events.append)
    with cascadeflow.run() as session:
        response = classify_step.complete(messages=MESSAGES)
    assert response.degraded is True
    assert response.choices[0].message.content.startswith("Reply from gpt-4o-mini")
    actions = [(e["action"], e["reason"], e["model"]) for e in session.trace()]
    assert actions == [
        ("allow", "ok", "openai/gpt-4o"), ("retry", "server_error", "openai/gpt-4o"),
        ("allow", "ok", "openai/gpt-4o"), ("fallback", "server_error", "openai/gpt-4o"),
        ("allow", "ok", "openai/gpt-4o-mini"), ("fallback", "degraded_answer", "openai/gpt-4o-mini")]
    summary = session.summary()
    assert (summary["retries"], summary["fallbacks"], summary["degraded"]) == (1, 1, True)
    assert summary["errors"] == 2 and summary["steps"] == 3
    assert [e["failure"] for e in events] == ["server_error"]
    cascadeflow.shutdown()
    assert [a.kind for a in alerts] == ["fallback"]


async def test_all_providers_failed_carries_every_attempt(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(status=500)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=FAST)
    with pytest.raises(cascadeflow.AllProvidersFailed) as info:
        await cascade.acomplete(messages=MESSAGES)
    attempts = info.value.attempts
    assert [(a["tier"], a["failure"]) for a in attempts] == [
        ("openai/gpt-4o", "server_error")] * 2 + [("openai/gpt-4o-mini", "server_error")] * 2
    assert all(a["latency_ms"] > 0 for a in attempts)
    assert isinstance(info.value, cascadeflow.CascadeflowError)


def test_fatal_failures_stop_at_once(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(model="gpt-4o", status=401)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=FAST)
    with pytest.raises(litellm.AuthenticationError):
        cascade.complete(messages=MESSAGES)
    assert [r.model for r in provider.requests] == ["gpt-4o"]


def test_semantic_failure_falls_through(provider: Any) -> None:
    provider.reply("not json at all", model="gpt-4o")
    provider.reply('{"category": "billing"}', model="gpt-4o-mini")
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=FAST,
                      expect=Expectations(schema=Verdict))
    response = cascade.complete(messages=MESSAGES)  # cascades work with cascadeflow off, too
    assert Verdict.model_validate_json(response.choices[0].message.content).category == "billing"
    assert response.degraded is False


def test_static_last_tier(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(status=503)
    cascade = Cascade([*tiers(provider, "gpt-4o-mini"), Tier(static="unknown", degraded=True)], retry=FAST)
    with cascadeflow.run() as session:
        response = cascade.complete(messages=MESSAGES)
    assert response.choices[0].message.content == "unknown" and response.degraded is True
    assert session.summary()["degraded"] is True


def test_deadline_bounds_the_whole_step(provider: Any) -> None:
    """Two tiers of two attempts each would send four requests to the slow primary; the deadline
    caps the first attempt's timeout and starts nothing after it (behaviour, not wall time)."""
    provider.inject(model="gpt-4o", latency_ms=400)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o"), retry=FAST, deadline_s=0.3)
    with pytest.raises(cascadeflow.AllProvidersFailed) as info:
        cascade.complete(messages=MESSAGES)
    assert len(provider.requests) <= 1
    failures = [a["failure"] for a in info.value.attempts]
    assert failures[-1] == "deadline_exceeded" and set(failures) <= {"timeout", "deadline_exceeded"}


def test_compliance_excludes_tiers(provider: Any, tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[models."openai/gpt-4o-mini"]\ntags = ["gdpr"]\n')
    cascadeflow.init(mode="enforce")
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=FAST)
    with cascadeflow.run(compliance="gdpr") as session:
        cascade.complete(messages=MESSAGES, max_tokens=100)
    assert [r.model for r in provider.requests] == ["gpt-4o-mini"]
    assert session.trace()[0]["reason"] == "compliance_excluded"


def test_every_attempt_is_reserved_and_settled(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    provider.inject(model="gpt-4o", empty_body=True)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=FAST)
    with cascadeflow.run(budget=0.01) as session:
        cascade.complete(messages=MESSAGES, max_tokens=100)
    steps = [e for e in session.trace() if e["operation"] == "chat"]
    assert len(steps) == 3 and session.reserved == pytest.approx(0, abs=1e-12)
    assert steps[-1]["cost"] > 0 and session.summary()["cost_total"] == pytest.approx(steps[-1]["cost"])


# -- streams ------------------------------------------------------------------------------

def test_stream_failing_before_the_first_chunk_falls_through(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(model="gpt-4o", cut_stream_after=0)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=RetryPolicy(stop=stop_after_attempt(1)))
    with cascadeflow.run() as session:
        text = "".join(c.choices[0].delta.content or "" for c in cascade.complete(messages=MESSAGES,
                                                                                   stream=True))
    assert text.startswith("Reply from gpt-4o-mini")
    assert ("fallback", "stream_broken") in {(e["action"], e["reason"]) for e in session.trace()}


def test_stream_failing_midway_raises_with_what_was_received(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(model="gpt-4o", cut_stream_after=3)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=FAST)
    with cascadeflow.run() as session:
        stream = cascade.complete(messages=MESSAGES, stream=True)
        with pytest.raises(StreamInterrupted) as info:
            for _ in stream:
                pass
    assert info.value.tier == "openai/gpt-4o" and info.value.received.startswith("Reply from")
    assert [r.model for r in provider.requests] == ["gpt-4o"]  # no silent switch mid-answer
    assert session.trace()[0]["status"] == "error"


# -- logical names through the interceptors -----------------------------------------------

CONFIG = """
[models."openai/gpt-4o-mini"]
tags = ["gdpr"]

[cascades.classify]
deadline_s = 5
max_attempts = 2
backoff_initial_s = 0.001
backoff_max_s = 0.002
tiers = [
  {{ model = "openai/gpt-4o", api_base = "{url}", api_key_env = "TRIAGE_KEY" }},
  {{ model = "openai/gpt-4o-mini", api_base = "{url}", api_key_env = "TRIAGE_KEY", degraded = true }},
]
"""


@pytest.fixture
def configured(provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("TRIAGE_KEY", KEY)
    (tmp_path / "cascadeflow.toml").write_text(CONFIG.format(url=provider.url))
    cascadeflow.init(mode="observe")
    provider.inject(model="gpt-4o", status=503)
    return provider


def test_litellm_call_by_logical_name(configured: Any) -> None:
    with cascadeflow.run() as session:
        response = litellm.completion(model="classify", messages=MESSAGES)
    assert response.degraded is True
    assert [r.model for r in configured.requests] == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    assert session.summary()["fallbacks"] == 1
    assert all(r.headers["authorization"] == "***" for r in configured.requests)


async def test_openai_sdk_call_by_logical_name(configured: Any) -> None:
    sdk = openai.AsyncOpenAI(base_url=configured.url, api_key=KEY, max_retries=0)
    async with cascadeflow.run() as session:
        response = await sdk.chat.completions.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    assert response.degraded is True  # type: ignore[attr-defined]
    assert [r.model for r in configured.requests] == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    assert session.summary()["degraded"] is True


def test_config_errors_name_the_cascade(provider: Any, tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        '[cascades.classify]\ntiers = [{ model = "openai/gpt-4o", api_key_env = "NOPE_NOT_SET" }]\n')
    with pytest.raises(cascadeflow.ConfigError) as info:
        cascadeflow.init(mode="observe")
    assert info.value.setting == "cascades.classify.tiers[0].api_key_env"
    (tmp_path / "cascadeflow.toml").write_text('[cascades.classify]\ntiers = []\n')
    with pytest.raises(cascadeflow.ConfigError) as info:
        cascadeflow.init(mode="observe")
    assert info.value.setting.startswith("cascades.classify.tiers")


# -- chaos --------------------------------------------------------------------------------

CHAOS = ["status=429,retry_after=0.001", "status=500", "status=503", "latency_ms=400", "empty_body",
         "malformed_json", "cut_stream_after=0", "schema"]


@pytest.mark.parametrize("fault", CHAOS)
async def test_chaos_primary_failing_30_percent(provider: Any, fault: str) -> None:
    cascadeflow.init(mode="observe")
    if fault == "schema":
        provider.reply("no json here", model="gpt-4o", times=150)
    else:
        provider.inject(Fault.parse(f"{fault},rate=0.3,model=gpt-4o"))
    provider.reply('{"category": "billing"}', model="gpt-4o-mini")
    if fault != "schema":
        provider.reply('{"category": "billing"}', model="gpt-4o")
    # What is tested is the fallback, not the deadline (its own test pins that down): the deadline
    # is far away, so on a machine of any speed every call must be answered by one tier or the other
    # (a healthy primary that is slow under load times out, too, and falls through like a faulty one).
    cascade = Cascade([Tier("openai/gpt-4o", timeout=0.2, params={"api_base": provider.url, "api_key": KEY}),
                       *tiers(provider, "gpt-4o-mini")],
                      retry=RetryPolicy(stop=stop_after_attempt(2), wait=wait_full_jitter(0.001, 0.01)),
                      deadline_s=600, expect=Expectations(schema=Verdict),
                      breaker=BreakerSettings(failure_threshold=1000, min_calls=1000))
    stream = fault.startswith("cut_stream")
    gate = asyncio.Semaphore(20)
    outcomes: list[str] = []
    failures: list[Any] = []

    async def one() -> None:
        async with gate:
            try:
                result = await cascade.acomplete(messages=MESSAGES, stream=stream)
                if stream:
                    async for _ in result:
                        pass
                outcomes.append("answer")
            except cascadeflow.AllProvidersFailed as exc:
                outcomes.append("failed")
                failures.append(exc.attempts)

    async with cascadeflow.run() as session:
        await asyncio.gather(*(one() for _ in range(500)))
    assert outcomes == ["answer"] * 500, failures[:3]
    steps = [e for e in session.trace() if e["operation"] == "chat"]
    # every attempt is in the trace; one that timed out may not have reached the wire
    timeouts = sum(e["error"] == "Timeout" for e in steps)
    assert len(steps) - timeouts <= len(provider.requests) <= len(steps), Counter(
        (e["model"], e["error"], e["status"]) for e in steps)
    assert all(e["status"] != "pending" for e in steps)
    assert sum(e["model"] == "openai/gpt-4o" for e in steps) >= 500  # every call tried the primary
    summary = session.summary()
    answered_by_mini = sum(e["model"] == "openai/gpt-4o-mini" and e["status"] == "ok" for e in steps)
    assert summary["fallbacks"] == answered_by_mini > 0  # each fallback led to an answer from the next tier


def test_breaker_saves_requests_to_a_dead_primary(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(model="gpt-4o", status=503)
    clock = Clock()
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"),
                      retry=RetryPolicy(stop=stop_after_attempt(1)), clock=clock,
                      breaker=BreakerSettings(failure_threshold=3, recovery_timeout=30,
                                              half_open_max_calls=2))
    with cascadeflow.run() as session:
        for _ in range(20):
            cascade.complete(messages=MESSAGES)
        assert sum(r.model == "gpt-4o" for r in provider.requests) == 3  # then the breaker opened
        clock.now = 31.0  # past the recovery timeout: half-open
        for _ in range(10):
            cascade.complete(messages=MESSAGES)
    assert sum(r.model == "gpt-4o" for r in provider.requests) == 3 + 1  # one probe failed, open again
    skips = [e for e in session.trace() if e["reason"] == "circuit_open"]
    assert len(skips) == 17 + 9
    breakers.reset()
    provider.reset()
    provider.inject(model="gpt-4o", status=503, times=3)
    clock.now = 0.0
    for _ in range(5):
        cascade.complete(messages=MESSAGES)
    clock.now = 40.0
    for _ in range(5):
        cascade.complete(messages=MESSAGES)
    primary = [r for r in provider.requests if r.model == "gpt-4o"]
    assert len(primary) == 3 + 2 + 3  # three failures, exactly two probes, then closed again
    assert json.loads(provider.requests[-1].body)["model"] == "gpt-4o"


def test_breaker_opening_alerts_and_is_counted(provider: Any) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    alerts: list[Alert] = []
    cascadeflow.init(mode="observe", alerts=[alerts.append],
                     meter_provider=MeterProvider(metric_readers=[reader]))
    provider.inject(model="gpt-4o", status=503)
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=RetryPolicy(stop=stop_after_attempt(1)),
                      breaker=BreakerSettings(failure_threshold=2))
    for _ in range(3):
        cascade.complete(messages=MESSAGES)
    metrics = [m for rm in reader.get_metrics_data().resource_metrics for sm in rm.scope_metrics
               for m in sm.metrics]
    points = [p for m in metrics if m.name == "cascadeflow.breaker.state_changes" for p in m.data.data_points]
    assert [(p.attributes["cascadeflow.breaker.to"], p.value) for p in points] == [("open", 1)]
    cascadeflow.shutdown()
    assert [a.kind for a in alerts].count("breaker_open") == 1
    assert [a.kind for a in alerts].count("fallback") == 3


def test_provider_error_texts_are_scrubbed(provider: Any, tmp_path: Path) -> None:
    alerts: list[Alert] = []
    cascadeflow.init(mode="observe", alerts=[alerts.append])
    leaked = "sk-proj-LEAKEDabcdefghijklmnopqrstuvwxyz0123"
    provider.inject(model="gpt-4o", status=500, message=f"upstream rejected key {leaked}")
    cascade = Cascade(tiers(provider, "gpt-4o", "gpt-4o-mini"), retry=RetryPolicy(stop=stop_after_attempt(1)))
    with cascadeflow.run() as session:
        cascade.complete(messages=MESSAGES)
    path = session.save(tmp_path / "run.jsonl")
    cascadeflow.shutdown()
    assert alerts and all(leaked not in json.dumps(a.as_dict()) for a in alerts)
    assert leaked not in path.read_text()
