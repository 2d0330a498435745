"""Cascades at the edges a first review found: retries beside an open breaker, streams that end
before their first chunk, a static last tier asked for a stream, 4xx statuses, streams used as
context managers, bare model names through the openai SDK, deadlines and timeouts that are no
durations. All on the built-in provider, through the real litellm and openai clients."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow import AllProvidersFailed
from cascadeflow.breakers import deployment_key
from cascadeflow.cascade import (
    BreakerSettings,
    Cascade,
    Deployment,
    RetryPolicy,
    Tier,
    breakers,
    classify,
    stop_after_attempt,
    wait_fixed,
)

KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "Classify: charged twice"}]
ONCE = RetryPolicy(stop=stop_after_attempt(1))


@pytest.fixture(autouse=True)
def _fresh_breakers() -> None:
    breakers.reset()


def endpoint(provider: Any) -> dict[str, str]:
    return {"api_base": provider.url, "api_key": KEY}


def text_of(chunks: Any) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks)


def test_a_retry_waits_when_the_other_deployment_is_open(provider: Any) -> None:
    """An open breaker's deployment cannot take the retry, so the retry goes back to the
    rate-limited one: after the wait the provider asked for, not at once."""
    sleeps: list[float] = []
    tier = Tier(deployments=[Deployment("openai/gpt-4o", params=endpoint(provider)),
                             Deployment("openai/gpt-4o-mini", params=endpoint(provider))])
    cascade = Cascade([tier], retry=RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.5)),
                      sleep=sleeps.append)
    breaker = breakers.get(deployment_key("openai/gpt-4o", provider.url), cascade.breaker)
    for _ in range(cascade.breaker.failure_threshold):
        breaker.failure()
    assert breaker.state == "open"
    provider.inject(model="gpt-4o-mini", status=429, retry_after=2)
    with pytest.raises(AllProvidersFailed):
        cascade.complete(messages=MESSAGES)
    assert [r.model for r in provider.requests] == ["gpt-4o-mini"] * 3
    assert sleeps == [2.0, 2.0]


def test_a_litellm_stream_that_ends_before_its_first_chunk_falls_through(provider: Any) -> None:
    """litellm makes up a finishing chunk for a stream with nothing in it: that is no answer."""
    provider.inject(model="gpt-4o", empty_body=True)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                       Tier("openai/gpt-4o-mini", params=endpoint(provider))], retry=ONCE)
    assert text_of(cascade.complete(messages=MESSAGES, stream=True)).startswith("Reply from gpt-4o-mini")
    assert [r.model for r in provider.requests] == ["gpt-4o", "gpt-4o-mini"]


CONFIG = """
[cascades.classify]
tiers = [{{ model = "{first}", api_base = "{url}" }}, {{ model = "gpt-4o-mini", api_base = "{url}" }}]
"""


@pytest.fixture
def configured(provider: Any, tmp_path: Path) -> Any:
    """A cascade by logical name whose tiers name bare models, as litellm accepts them."""
    (tmp_path / "cascadeflow.toml").write_text(CONFIG.format(first="gpt-4o", url=provider.url))
    cascadeflow.init(mode="observe")
    return provider


def test_bare_model_names_are_reachable_through_the_openai_sdk(configured: Any) -> None:
    sdk = openai.OpenAI(base_url=configured.url, api_key=KEY, max_retries=0)
    response = sdk.chat.completions.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    assert response.choices[0].message.content.startswith("Reply from gpt-4o")  # type: ignore[union-attr]
    assert [r.model for r in configured.requests] == ["gpt-4o"]


def test_an_sdk_stream_that_ends_before_its_first_chunk_falls_through(configured: Any) -> None:
    configured.inject(model="gpt-4o", body="data: [DONE]\n\n")
    sdk = openai.OpenAI(base_url=configured.url, api_key=KEY, max_retries=0)
    with cascadeflow.run() as session:
        stream = sdk.chat.completions.create(model="classify", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
        assert text_of(stream).startswith("Reply from gpt-4o-mini")
    assert [r.model for r in configured.requests] == ["gpt-4o", "gpt-4o-mini"]
    assert ("fallback", "empty_response") in {(e["action"], e["reason"]) for e in session.trace()}


async def test_async_sdk_streams_fall_through_and_work_as_context_managers(configured: Any) -> None:
    configured.inject(model="gpt-4o", body="data: [DONE]\n\n")
    sdk = openai.AsyncOpenAI(base_url=configured.url, api_key=KEY, max_retries=0)
    stream = await sdk.chat.completions.create(model="classify", messages=MESSAGES, stream=True)  # type: ignore[arg-type]
    async with stream as chunks:
        text = "".join([c.choices[0].delta.content or "" async for c in chunks])
    assert text.startswith("Reply from gpt-4o-mini")


def test_a_cascaded_stream_works_as_a_context_manager(provider: Any) -> None:
    cascade = Cascade([Tier("openai/gpt-4o-mini", params=endpoint(provider))], retry=ONCE)
    with cascade.complete(messages=MESSAGES, stream=True) as stream:
        assert text_of(stream).startswith("Reply from gpt-4o-mini")


def test_a_static_last_tier_answers_a_stream_with_a_stream(provider: Any) -> None:
    provider.inject(status=503)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                       Tier(static="unclassified", degraded=True)], retry=ONCE)
    stream = cascade.complete(messages=MESSAGES, stream=True)
    chunks = list(stream)
    assert text_of(chunks) == "unclassified" and chunks[-1].choices[0].finish_reason == "stop"
    assert stream.degraded is True


async def test_a_static_last_tier_answers_an_async_stream(provider: Any) -> None:
    provider.inject(status=503)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider)),
                       Tier(static="unclassified", degraded=True)], retry=ONCE)
    stream = await cascade.acomplete(messages=MESSAGES, stream=True)
    assert "".join([c.choices[0].delta.content async for c in stream]) == "unclassified"


@pytest.mark.parametrize(("status", "kind"), [(413, "bad_request"), (409, "bad_request"),
                                              (405, "bad_request"), (408, "timeout")])
def test_every_4xx_has_its_class(provider: Any, status: int, kind: str) -> None:
    """A 4xx the provider sends is about this request, not the deployment's health: it is no
    `server_error` (retried and counted against the breaker), except 408, a timeout."""
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES,  # type: ignore[arg-type]
                                    extra_headers={"x-cascadeflow-fault": f"status={status}"})
    assert classify(info.value).kind == kind


def test_an_oversized_request_does_not_open_the_breaker(provider: Any) -> None:
    provider.inject(model="gpt-4o", status=413)
    cascade = Cascade([Tier("openai/gpt-4o", params=endpoint(provider))],
                      retry=RetryPolicy(stop=stop_after_attempt(3), wait=wait_fixed(0.001)))
    for _ in range(3):
        with pytest.raises(Exception) as info:  # the fatal failure is raised as litellm raised it
            cascade.complete(messages=MESSAGES)
        assert classify(info.value).kind == "bad_request"
    assert len(provider.requests) == 3  # one attempt each: not retried
    assert breakers.get(deployment_key("openai/gpt-4o", provider.url), cascade.breaker).state == "closed"


@pytest.mark.parametrize(("settings", "setting"), [
    ({"deadline_s": float("inf")}, "cascades.c.deadline_s"),
    ({"deadline_s": float("nan")}, "cascades.c.deadline_s"),
    ({"deadline_s": -1}, "cascades.c.deadline_s"),
    ({"deadline_s": "30"}, "cascades.c.deadline_s"),
    ({"timeout": 0}, "cascades.c.tiers[0].timeout"),
    ({"timeout": "5"}, "cascades.c.tiers[0].timeout"),
])
def test_durations_are_checked_where_the_cascade_is_built(settings: dict[str, Any], setting: str) -> None:
    timeout = settings.pop("timeout", None)
    with pytest.raises(cascadeflow.ConfigError) as info:
        Cascade([Tier("openai/gpt-4o", timeout=timeout)], name="c", **settings)
    assert info.value.setting == setting and "Cascade()" in str(info.value)


@pytest.mark.parametrize("weight", [True, 0, float("nan"), "2"])
def test_a_deployment_weight_is_a_positive_number(weight: Any) -> None:
    with pytest.raises(cascadeflow.ConfigError) as info:
        Cascade([Tier(deployments=[Deployment("openai/gpt-4o", weight=weight)])], name="c")
    assert info.value.setting == "cascades.c.tiers[0].deployments[0].weight"


def test_an_infinite_deadline_in_the_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        '[cascades.c]\ndeadline_s = inf\ntiers = [{ model = "openai/gpt-4o" }]\n')
    with pytest.raises(cascadeflow.ConfigError) as info:
        cascadeflow.init(mode="observe")
    assert info.value.setting == "cascades.c.deadline_s" and "cascadeflow.toml" in str(info.value)


def test_a_second_cascade_asking_for_other_breaker_settings_is_told(provider: Any,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """One breaker per deployment: the first cascade's settings stand, and a cascade that asks
    for others hears it in the log, with the model and never the endpoint's address."""
    first = Cascade([Tier("openai/gpt-4o", params=endpoint(provider))], name="a", retry=ONCE,
                    breaker=BreakerSettings(failure_threshold=100))
    second = Cascade([Tier("openai/gpt-4o", params=endpoint(provider))], name="b", retry=ONCE,
                     breaker=BreakerSettings(failure_threshold=1))
    first.complete(messages=MESSAGES)
    with caplog.at_level("WARNING", logger="cascadeflow"):
        second.complete(messages=MESSAGES)
        second.complete(messages=MESSAGES)
    warnings = [r.getMessage() for r in caplog.records if "keeps the settings" in r.getMessage()]
    assert len(warnings) == 1 and "openai/gpt-4o" in warnings[0] and provider.url not in warnings[0]
    shared = breakers.get(deployment_key("openai/gpt-4o", provider.url), second.breaker)
    assert shared.settings.failure_threshold == 100


async def test_an_async_cascade_call_leaves_the_tasks_later_calls_unpinned(provider: Any,
                                                                         tmp_path: Path) -> None:
    """A cascade's attempts are pinned (no policy switch); from Python 3.12 `wait_for` runs the
    attempt in the caller's task, so the flag must be reset there, or every later call of the
    task escapes compliance switching."""
    (tmp_path / "cascadeflow.toml").write_text(
        '[models."openai/gpt-4o-mini"]\ntags = ["gdpr"]\n'
        f'[cascades.draft]\ntiers = [{{ model = "openai/gpt-4o-mini", api_base = "{provider.url}" }}]\n')
    cascadeflow.init(mode="enforce")
    async with cascadeflow.run(compliance="gdpr") as session:
        await litellm.acompletion(model="draft", messages=MESSAGES, api_key=KEY)
        await litellm.acompletion(model="openai/gpt-4o", messages=MESSAGES, api_base=provider.url,
                                  api_key=KEY)
    assert session.trace()[-1]["reason"] == "compliance_model_not_allowed"
    assert [r.model for r in provider.requests] == ["gpt-4o-mini", "gpt-4o-mini"]
