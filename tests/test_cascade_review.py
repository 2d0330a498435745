"""Cascades at the edges a second review found: what an attempt that failed leaves in the
session (reservations, trace entries, secrets), and many calls at once. On the built-in
provider, through the real litellm client."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator
from typing import Any

import cascadeflow
import openai
import pytest
from cascadeflow.cascade import (
    BreakerSettings,
    Cascade,
    Expectations,
    RetryPolicy,
    StreamInterrupted,
    Tier,
    breakers,
    stop_after_attempt,
    wait_fixed,
)

KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "Classify: charged twice"}]
FAST = RetryPolicy(stop=stop_after_attempt(2), wait=wait_fixed(0.001))


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    breakers.reset()


def _two_tiers(tmp_path: Any, section: str, settings: str) -> None:
    """A config file with one cascade of gpt-4o then gpt-4o-mini under `section`."""
    (tmp_path / "cascadeflow.toml").write_text(
        f"[{section}]\n{settings}\n"
        'tiers = [{ model = "openai/gpt-4o" }, { model = "openai/gpt-4o-mini" }]\n')


def _create(provider: Any, model: str, is_async: bool) -> tuple[Any, Any]:
    """A chat call through the openai SDK (sync or async) naming `model`: (response, client)."""
    if is_async:
        sdk_async = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY)
        return asyncio.run(sdk_async.chat.completions.create(model=model, messages=MESSAGES)), sdk_async  # type: ignore[arg-type]
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY)
    return sdk.chat.completions.create(model=model, messages=MESSAGES), sdk  # type: ignore[arg-type]


@pytest.fixture
def no_gc() -> Iterator[None]:
    """What a failed attempt leaves behind must be settled by the cascade, not by a collection
    that may come much later (or, in a long-lived worker, hold money until it does)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def endpoint(provider: Any, key: str = KEY) -> dict[str, str]:
    return {"api_base": provider.url, "api_key": key}


def two_tiers(provider: Any) -> Cascade:
    return Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                    Tier("openai/gpt-4o-mini", params=endpoint(provider))], retry=FAST)


# a stream that ends cleanly before its first event, and one whose connection drops after the
# headers, before it (the read raises, and the cascade goes on to the next tier)
BEFORE_THE_FIRST_CHUNK = [{"end_stream_after": 0}, {"cut_stream_after": 0}]


@pytest.mark.parametrize("fault", BEFORE_THE_FIRST_CHUNK)
def test_a_stream_that_ends_before_its_first_chunk_is_settled_at_once(provider: Any, no_gc: None,
                                                                      fault: dict[str, int]) -> None:
    """The empty stream's step was left open: its worst-case reservation (0.16 USD for gpt-4o)
    held the budget until the garbage collector dropped the stream, and its trace entry said
    `pending`, then `abandoned`. (The cut one was settled by the read's error already.)"""
    provider.inject(model="gpt-4o", **fault)
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0) as session:
        text = "".join(c.choices[0].delta.content or "" for c in two_tiers(provider).complete(
            messages=MESSAGES, stream=True))
        assert "gpt-4o-mini" in text
        cascadeflow.flush()
        assert session.reserved == pytest.approx(0.0, abs=1e-12)
    first = session.trace()[0]
    assert first["model"] == "openai/gpt-4o"
    assert first["status"] not in ("pending", "abandoned")


@pytest.mark.parametrize("fault", BEFORE_THE_FIRST_CHUNK)
async def test_an_async_stream_that_ends_before_its_first_chunk_is_settled_at_once(
        provider: Any, no_gc: None, fault: dict[str, int]) -> None:
    provider.inject(model="gpt-4o", **fault)
    cascadeflow.init(mode="enforce")
    async with cascadeflow.run(budget=1.0) as session:
        stream = await two_tiers(provider).acomplete(messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream])
        assert "gpt-4o-mini" in text
        cascadeflow.flush()
        assert session.reserved == pytest.approx(0.0, abs=1e-12)
    assert session.trace()[0]["status"] not in ("pending", "abandoned")


# An Azure-style key: 32 hex digits, a format no pattern can tell from a hash or an id.
PLAIN_KEY = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"


@pytest.mark.parametrize("status", [503, 401])
def test_a_tier_key_the_provider_echoes_reaches_no_event_trace_or_file(provider: Any, tmp_path: Any,
                                                                       status: int) -> None:
    """The cascade knows each tier's key: a provider's error text that quotes it (a gateway's
    "invalid key ..." message) reached `on_fallback` (503), the `stop` trace entry and the saved
    session (401), whenever the key has no recognisable format."""
    events: list[dict[str, Any]] = []
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider, PLAIN_KEY)),
                       Tier("openai/gpt-4o-mini", params=endpoint(provider, PLAIN_KEY))],
                      retry=RetryPolicy(stop=stop_after_attempt(1)), on_fallback=events.append)
    provider.inject(status=status, message=f"invalid key {PLAIN_KEY} for this deployment")
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0) as session, pytest.raises(Exception):  # noqa: B017
        cascade.complete(messages=MESSAGES)
    assert events or status == 401
    assert all(PLAIN_KEY not in json.dumps(e) for e in events)
    assert any("[SECRET]" in e["message"] for e in events) or status == 401
    recorded = json.dumps(session.trace(), default=str)
    assert PLAIN_KEY not in recorded
    session.save(tmp_path / "session.jsonl")
    assert PLAIN_KEY not in (tmp_path / "session.jsonl").read_text()


async def test_many_calls_at_once_all_reach_the_built_in_provider(provider: Any) -> None:
    """A cascade's pooled client opens a connection per call in flight; the built-in provider
    listened with a backlog of 5, so 50 calls at once lost connections (`stream_broken` after
    seconds of SYN retries), failed with AllProvidersFailed and opened a healthy deployment's
    breaker: a test of breakers under concurrency tested the test server."""
    # the deadline is only a safety net: on a loaded 2-core machine 200 calls took over a minute
    cascade = Cascade([Tier("openai/gpt-4o-mini", params=endpoint(provider))], retry=FAST,
                      deadline_s=900.0)
    results = await asyncio.gather(*[cascade.acomplete(messages=MESSAGES) for _ in range(100)],
                                   return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert not failed, failed[0]
    assert len(provider.requests) == 100


def test_no_retry_waits_for_a_breaker_that_is_open(provider: Any) -> None:
    """The failure that opened the tier's breaker was still retried: the cascade slept the
    provider's Retry-After (20 s) and only then found the breaker open and moved on. An open
    breaker means no request is sent: the cascade moves on at once."""
    sleeps: list[float] = []
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                       Tier("openai/gpt-4o-mini", params=endpoint(provider))],
                      retry=RetryPolicy(stop=stop_after_attempt(3)), sleep=sleeps.append,
                      breaker=BreakerSettings(failure_threshold=1))
    provider.inject(model="gpt-4o", status=429, retry_after=20)
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        response = cascade.complete(messages=MESSAGES)
    assert response.model == "gpt-4o-mini"
    assert sleeps == []
    decisions = [(e["action"], e["reason"]) for e in session.trace() if e["action"] != "allow"]
    assert decisions == [("breaker", "closed_to_open"), ("fallback", "circuit_open")]
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o-mini"]


def test_a_stream_broken_by_an_error_quoting_a_key_does_not_pass_it_on(provider: Any) -> None:
    """StreamInterrupted quoted the provider's error whole: a key of a known format (`sk-...`)
    and the tier's own key, unmasked, in cascadeflow's own exception."""
    chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello"},
                          "finish_reason": None}]}
    error = {"error": {"message": f"upstream rejected {KEY} and {PLAIN_KEY}", "type": "server_error"}}
    provider.inject(model="gpt-4o", body=f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\n")
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider, PLAIN_KEY))])
    stream = cascade.complete(messages=MESSAGES, stream=True)
    with pytest.raises(StreamInterrupted) as info:
        list(stream)
    assert info.value.received == "Hello"
    assert "upstream rejected [SECRET] and [SECRET]" in str(info.value)


@pytest.mark.parametrize(("field", "value"), [
    ("half_open_max_calls", 0),  # half-open with no probe slot: the breaker never closes again
    ("recovery_timeout", float("nan")),  # never half-open: open for good
    ("probe_timeout", float("nan")),
    ("recovery_timeout", -1),
    ("failure_threshold", 0),
    ("failure_threshold", True),
    ("window", 0),
    ("min_calls", 2.5),
    ("failure_rate", 0),
    ("failure_rate", 1.5),
])
def test_breaker_settings_are_checked_where_the_cascade_is_built(field: str, value: Any) -> None:
    """The config file's breaker settings were checked, `Cascade(breaker=BreakerSettings(...))`
    took anything: half_open_max_calls=0 or a NaN recovery_timeout left the first breaker that
    opened open for good, with no error anywhere."""
    with pytest.raises(cascadeflow.ConfigError) as info:
        Cascade(["openai/gpt-4o"], name="c", breaker=BreakerSettings(**{field: value}))
    assert info.value.setting == f"cascades.c.breaker.{field}" and "Cascade()" in str(info.value)


@pytest.mark.parametrize("is_async", [False, True])
def test_the_openai_sdk_does_not_retry_under_a_cascade(provider: Any, tmp_path: Any, is_async: bool) -> None:
    """Through the openai SDK, each attempt of a cascade called by its logical name went out with
    the client's own retries (2 by default, with the SDK's backoff): 2 attempts on a failing tier
    were 6 requests and seconds of waiting, and the breaker heard of one failure in three. The
    cascade retries; the SDK underneath must not, as with litellm."""
    _two_tiers(tmp_path, "cascades.classify", "max_attempts = 2\nbackoff_initial_s = 0.001")
    provider.inject(model="gpt-4o", status=503)
    cascadeflow.init(mode="observe")
    response, sdk = _create(provider, "classify", is_async)
    assert sdk.max_retries == 2  # the caller's client is left as it was
    assert response.model == "gpt-4o-mini"
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]


def test_the_callers_timeout_caps_each_attempt(provider: Any) -> None:
    """`complete(timeout=2)` was overwritten by what was left of the deadline: a hung tier held
    the first attempt for the whole deadline, so no retry and no other tier was tried. The
    caller's timeout caps each attempt, as a tier's does."""
    provider.inject(model="gpt-4o", hold=True)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)), Tier(static="busy")],
                      retry=FAST, deadline_s=20)
    try:
        response = cascade.complete(messages=MESSAGES, timeout=2)
    finally:
        provider.release()
    assert response.choices[0].message.content == "busy"
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o"]


def test_an_invalid_json_schema_is_refused_where_the_cascade_is_built(provider: Any) -> None:
    """An expectation schema that is no JSON schema was taken, and raised jsonschema's own
    SchemaError from inside a call, after a paid answer, and only once an answer parsed."""
    with pytest.raises(cascadeflow.ConfigError) as info:
        Cascade([Tier("openai/gpt-4o", params=endpoint(provider))], name="c",
                expect=Expectations(schema={"type": "nonsense"}))
    assert info.value.setting == "cascades.c.schema" and "Cascade()" in str(info.value)
    assert provider.requests == []


def test_every_attempt_of_all_providers_failed_has_the_documented_fields(provider: Any) -> None:
    """A tier skipped (here: its breaker open) was recorded without `error` (and `model`):
    `attempt["error"]`, which the docs promise on each, raised KeyError."""
    provider.inject(model="gpt-4o", status=503)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider))],
                      retry=RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.001)),
                      breaker=BreakerSettings(failure_threshold=1))
    with pytest.raises(cascadeflow.AllProvidersFailed) as info:
        cascade.complete(messages=MESSAGES)
    attempts = info.value.attempts
    assert [a["failure"] for a in attempts] == ["server_error", "circuit_open"]
    assert [a["error"] for a in attempts] == ["ServiceUnavailableError", None]
    assert [a["model"] for a in attempts] == ["openai/gpt-4o", "openai/gpt-4o"]
    assert all({"tier", "failure", "latency_ms", "error"} <= a.keys() for a in attempts)


def test_streams_that_break_midway_open_the_breaker(provider: Any) -> None:
    """A stream that broke after its first chunk raised StreamInterrupted (right: no switch
    mid-answer) but told the breaker nothing, and the first chunk had counted as a success: a
    deployment that broke every stream was never skipped, every call failed midway. A broken
    stream counts as a failure as well, so later calls go to the next tier (here by the failure
    rate: each broken stream is a success, then a failure)."""
    provider.inject(model="gpt-4o", cut_stream_after=3)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                       Tier("openai/gpt-4o-mini", params=endpoint(provider))],
                      retry=FAST, breaker=BreakerSettings(failure_threshold=100, window=4, min_calls=4))
    for _ in range(2):
        with pytest.raises(StreamInterrupted):
            list(cascade.complete(messages=MESSAGES, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in cascade.complete(messages=MESSAGES, stream=True))
    assert "gpt-4o-mini" in text
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]


async def test_async_streams_that_break_midway_open_the_breaker(provider: Any) -> None:
    provider.inject(model="gpt-4o", cut_stream_after=3)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                       Tier("openai/gpt-4o-mini", params=endpoint(provider))],
                      retry=FAST, breaker=BreakerSettings(failure_threshold=1))
    with pytest.raises(StreamInterrupted):
        async for _ in await cascade.acomplete(messages=MESSAGES, stream=True):
            pass
    stream = await cascade.acomplete(messages=MESSAGES, stream=True)
    assert "gpt-4o-mini" in "".join([c.choices[0].delta.content or "" async for c in stream])
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o-mini"]


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_raw_responses_of_a_cascade_are_judged_by_their_body(provider: Any, tmp_path: Any, mode: str) -> None:
    """`with_raw_response` / `with_streaming_response` through a cascade called by its logical
    name: the raw response was judged as an answer with no text, so every tier's answer was an
    `empty_response` and the call failed with AllProvidersFailed, whatever the tiers answered."""
    _two_tiers(tmp_path, "cascades.classify", "max_attempts = 1")
    provider.inject(model="gpt-4o", status=503)
    cascadeflow.init(mode=mode)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY)
    raw = sdk.chat.completions.with_raw_response.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.parse().model == "gpt-4o-mini"
    with sdk.chat.completions.with_streaming_response.create(model="classify",
                                                             messages=MESSAGES) as streamed:  # type: ignore[arg-type]
        assert streamed.parse().model == "gpt-4o-mini"
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o-mini"] * 2


def test_a_raw_response_of_a_degraded_tier_parses_to_a_degraded_answer(provider: Any, tmp_path: Any) -> None:
    """`degraded` was set on the raw response the SDK hands back, but the answer its `parse()`
    returns (what the application reads) did not carry it."""
    (tmp_path / "cascadeflow.toml").write_text(
        '[cascades.classify]\nmax_attempts = 1\n'
        'tiers = [{ model = "openai/gpt-4o" }, { model = "openai/gpt-4o-mini", degraded = true }]\n')
    provider.inject(model="gpt-4o", status=503)
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY)
    raw = sdk.chat.completions.with_raw_response.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    answer = raw.parse()
    assert answer.model == "gpt-4o-mini" and answer.degraded is True  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_raw_streaming_call_to_a_cascade_is_refused_before_any_request(provider: Any, tmp_path: Any,
                                                                         mode: str) -> None:
    """`with_raw_response.create(model=<cascade>, stream=True)` raised TypeError ("RawResponseProxy
    object is not iterable") from inside the cascade, after a request had gone out: refused up
    front, naming the cascade, with what to call instead."""
    _two_tiers(tmp_path, "cascades.classify", "max_attempts = 1")
    cascadeflow.init(mode=mode)
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY)
    with pytest.raises(cascadeflow.ConfigError, match="'classify' answers streams through the plain call"):
        sdk.chat.completions.with_raw_response.create(model="classify", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    with pytest.raises(cascadeflow.ConfigError, match="without with_raw_response"), \
            sdk.chat.completions.with_streaming_response.create(
                model="classify", messages=MESSAGES, stream=True):  # type: ignore[arg-type]
        pass
    assert provider.requests == []
    streamed = sdk.chat.completions.create(model="classify", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in streamed)


def test_a_raw_response_whose_body_does_not_parse_is_malformed(provider: Any, tmp_path: Any) -> None:
    """Judged by its body, a raw response whose body does not parse is a `malformed_response`
    (the next tier answers), not the SDK's error out of the middle of the cascade."""
    _two_tiers(tmp_path, "cascades.classify", "max_attempts = 1")
    provider.inject(model="gpt-4o", body="{not json")
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        sdk = openai.OpenAI(base_url=provider.url, api_key=KEY)
        raw = sdk.chat.completions.with_raw_response.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    assert raw.parse().model == "gpt-4o-mini"
    assert ("fallback", "malformed_response") in [(e["action"], e["reason"]) for e in session.trace()]


@pytest.mark.parametrize("is_async", [False, True])
def test_a_cascade_named_like_a_model_of_its_tiers_serves_the_openai_sdk(provider: Any, tmp_path: Any,
                                                                         is_async: bool) -> None:
    """`[cascades."gpt-4o"]` with a tier `openai/gpt-4o`: through the openai SDK the attempt is
    sent as `gpt-4o`, which named the cascade again, and so on: RecursionError. A cascade's own
    attempt is never routed to a cascade."""
    _two_tiers(tmp_path, 'cascades."gpt-4o"', "max_attempts = 1")
    provider.inject(model="gpt-4o", status=503)
    cascadeflow.init(mode="observe")
    response, _sdk = _create(provider, "gpt-4o", is_async)
    assert response.model == "gpt-4o-mini"
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o-mini"]
