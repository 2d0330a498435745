"""What LiteLLM Router users expect of a cascade: several deployments behind a tier, balanced, with
retries that move to another deployment; retries per failure class; fallbacks of their own for
context-window and content-policy failures; embeddings. On two built-in providers, over HTTP."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.cascade import (
    Cascade,
    Deployment,
    Load,
    RetryPolicy,
    Tier,
    breakers,
    stop_after_attempt,
    wait_fixed,
)
from cascadeflow.testing import Fault, ProviderServer, serve

KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "Classify: charged twice"}]
TWICE = RetryPolicy(stop=stop_after_attempt(2), wait=wait_fixed(0.001))


@pytest.fixture(autouse=True)
def _fresh() -> None:
    breakers.reset()


@pytest.fixture
def west() -> Iterator[ProviderServer]:
    """A second provider: the other region's endpoint of the same model."""
    with serve(seed=1) as server:
        yield server


def deployment(server: Any, model: str = "gpt-4o", weight: float = 1.0) -> Deployment:
    return Deployment(f"openai/{model}", params={"api_base": server.url, "api_key": KEY}, weight=weight)


def endpoint(server: Any, model: str) -> Tier:
    return Tier(f"openai/{model}", params={"api_base": server.url, "api_key": KEY})


# -- deployments and load balancing ---------------------------------------------------------

def test_weighted_deployments_share_the_load_by_weight(provider: Any, west: Any) -> None:
    cascade = Cascade([Tier(deployments=[deployment(provider, weight=3), deployment(west, weight=1)])],
                      rng=random.Random(7), balance=Load())
    for _ in range(200):
        cascade.complete(messages=MESSAGES)
    east_share = len(provider.requests) / 200
    assert len(provider.requests) + len(west.requests) == 200
    assert 0.65 <= east_share <= 0.85, east_share


def test_a_retry_lands_on_another_deployment(provider: Any, west: Any) -> None:
    cascadeflow.init(mode="observe")
    provider.inject(status=503)  # the east deployment is down
    both = Tier(deployments=[deployment(provider), deployment(west)])
    cascade = Cascade([both, endpoint(west, "gpt-4o-mini")], retry=TWICE, rng=random.Random(3),
                      balance=Load())
    with cascadeflow.run() as session:
        for _ in range(10):
            reply = cascade.complete(messages=MESSAGES)
            assert reply.choices[0].message.content.startswith("Reply from gpt-4o:")  # never the next tier
    assert {r.model for r in west.requests} == {"gpt-4o"} and len(west.requests) == 10
    summary = session.summary()
    assert summary["fallbacks"] == 0 and summary["retries"] == len(provider.requests) > 0


def test_an_open_breaker_takes_its_deployment_out_of_the_rotation(provider: Any, west: Any) -> None:
    provider.inject(status=503)
    cascade = Cascade([Tier(deployments=[deployment(provider), deployment(west)])], retry=TWICE,
                      rng=random.Random(5), balance=Load())
    for _ in range(30):
        cascade.complete(messages=MESSAGES)
    assert len(provider.requests) == 5  # the breaker's failure_threshold; then never again
    assert len(west.requests) == 30


def test_least_busy_and_lowest_latency_orders() -> None:
    load, rng = Load(), random.Random(0)
    keys, weights = ["a", "b", "c"], [1.0, 1.0, 1.0]
    load.started("a")
    load.started("a")
    load.started("c")
    assert load.order("least_busy", keys, weights, set(), rng)[0] == 1
    assert load.order("least_busy", keys, weights, {"b"}, rng) == [2, 0, 1]  # untried first
    load.ended("a", 0.5)
    load.ended("a", 0.5)
    load.ended("c", 0.1)
    assert load.in_flight("a") == 0 and load.latency("c") == pytest.approx(0.1)
    assert load.order("lowest_latency", keys, weights, set(), rng) == [1, 2, 0]  # b was never measured
    load.ended("b", 0.3)
    assert load.order("lowest_latency", keys, weights, set(), rng) == [2, 1, 0]


async def test_least_busy_sends_concurrent_calls_to_the_idle_deployment(provider: Any, west: Any) -> None:
    """Calls in flight decide, not wall time: ten calls started together split evenly."""
    provider.inject(latency_ms=1000, model="gpt-4o")
    balance = Load()
    cascade = Cascade([Tier(deployments=[deployment(provider), deployment(west, "gpt-4o")],
                            strategy="least_busy")], rng=random.Random(1), balance=balance)
    slow = [asyncio.create_task(cascade.acomplete(messages=MESSAGES)) for _ in range(10)]
    await asyncio.gather(*slow)
    assert len(provider.requests) + len(west.requests) == 10
    assert abs(len(provider.requests) - len(west.requests)) <= 1  # started together: half each


def test_lowest_latency_sends_calls_to_the_deployment_that_answered_faster(provider: Any, west: Any) -> None:
    """Where calls went, not how long they took: each deployment is measured once (an unmeasured
    one goes first), then every call goes to the faster. The slow one answers 1 s late, far beyond
    what scheduling on a loaded machine adds to the fast one."""
    litellm.completion(model="openai/gpt-4o", messages=MESSAGES, api_base=west.url, api_key=KEY)
    west.reset()  # litellm's first call in a process is slow: not in a measurement
    provider.inject(latency_ms=1000)
    cascade = Cascade([Tier(deployments=[deployment(provider), deployment(west)], strategy="lowest_latency")],
                      rng=random.Random(2), balance=Load())
    for _ in range(8):
        cascade.complete(messages=MESSAGES)
    assert len(provider.requests) == 1 and len(west.requests) == 7


def test_deployments_from_the_config(provider: Any, west: Any, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EAST_KEY", KEY)
    monkeypatch.setenv("WEST_KEY", KEY)
    (tmp_path / "cascadeflow.toml").write_text(f'''
[cascades.classify]
max_attempts = 2
backoff_initial_s = 0.001
tiers = [
  {{ strategy = "least_busy", deployments = [
      {{ model = "openai/gpt-4o", api_base = "{provider.url}", api_key_env = "EAST_KEY", weight = 2 }},
      {{ model = "openai/gpt-4o", api_base = "{west.url}", api_key_env = "WEST_KEY" }} ] }},
]
''')
    provider.inject(status=503)
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0) as session:
        for _ in range(4):
            litellm.completion(model="classify", messages=MESSAGES, max_tokens=50)
    assert len(west.requests) == 4 and session.summary()["fallbacks"] == 0
    cascadeflow.shutdown()


@pytest.mark.parametrize(("tier", "problem"), [
    ('{ model = "openai/gpt-4o", deployments = [{ model = "openai/gpt-4o" }] }', "exactly one of"),
    ('{ deployments = [] }', "at least 1"),
    ('{ deployments = [{ model = "openai/gpt-4o", weight = 0 }] }', "greater than 0"),
    ('{ deployments = [{ model = "openai/gpt-4o" }], strategy = "fastest" }', "least_busy"),
])
def test_bad_deployments_are_config_errors(tmp_path: Path, tier: str, problem: str) -> None:
    (tmp_path / "cascadeflow.toml").write_text(f"[cascades.classify]\ntiers = [{tier}]\n")
    with pytest.raises(cascadeflow.ConfigError) as info:
        cascadeflow.init(mode="observe")
    assert info.value.setting.startswith("cascades.classify.tiers") and problem in str(info.value)
    assert "cascadeflow.toml" in info.value.source


# -- retries per failure class -------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "retries", "sent"), [
    ("status=429", {"rate_limited": 3}, 4),       # more patience with rate limits
    ("status=500", {"server_error": 0}, 1),       # none for a server error
    ("status=500", {"rate_limited": 3}, 2),       # others follow the retry policy (2 attempts)
    ("empty_body", {"malformed_response": 2}, 3),
])
def test_retries_per_failure_class(provider: Any, fault: str, retries: dict[str, int], sent: int) -> None:
    provider.inject(Fault.parse(f"{fault},model=gpt-4o"))
    cascade = Cascade([endpoint(provider, "gpt-4o"), endpoint(provider, "gpt-4o-mini")], retry=TWICE,
                      retries=retries)
    cascade.complete(messages=MESSAGES)
    assert Counter(r.model for r in provider.requests) == {"gpt-4o": sent, "gpt-4o-mini": 1}


def test_retries_from_the_config_file(provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`[cascades.X.retries]` gives rate limits three retries where the policy allows none."""
    monkeypatch.setenv("KEY", KEY)
    (tmp_path / "cascadeflow.toml").write_text(f'''
[cascades.classify]
max_attempts = 1
backoff_initial_s = 0.001
tiers = [
  {{ model = "openai/gpt-4o", api_base = "{provider.url}", api_key_env = "KEY" }},
  {{ model = "openai/gpt-4o-mini", api_base = "{provider.url}", api_key_env = "KEY" }},
]
[cascades.classify.retries]
rate_limited = 3
''')
    provider.inject(Fault.parse("status=429,model=gpt-4o,times=4"))
    provider.inject(Fault.parse("status=500,model=gpt-4o,times=1"))  # not in the table: max_attempts
    cascadeflow.init(mode="observe")
    litellm.completion(model="classify", messages=MESSAGES)
    litellm.completion(model="classify", messages=MESSAGES)
    cascadeflow.shutdown()
    first, second = ["gpt-4o"] * 4 + ["gpt-4o-mini"], ["gpt-4o", "gpt-4o-mini"]
    assert [r.model for r in provider.requests] == first + second


def test_a_next_tier_failure_can_be_retried(provider: Any) -> None:
    provider.reply("", model="gpt-4o", times=1)  # one empty answer, then a real one
    cascade = Cascade([endpoint(provider, "gpt-4o"), endpoint(provider, "gpt-4o-mini")], retry=TWICE,
                      retries={"empty_response": 1})
    reply = cascade.complete(messages=MESSAGES)
    assert reply.choices[0].message.content.startswith("Reply from gpt-4o:")


@pytest.mark.parametrize(("retries", "problem"), [
    ({"authentication": 2}, "fatal"), ({"flaky": 1}, "not a failure class"), ({"timeout": -1}, "0 or more")])
def test_bad_retries_are_config_errors(retries: dict[str, int], problem: str) -> None:
    with pytest.raises(cascadeflow.ConfigError) as info:
        Cascade(["openai/gpt-4o"], retries=retries)
    assert info.value.setting.startswith("cascades.cascade.retries.") and problem in str(info.value)


# -- fallbacks of their own for context-window and content-policy failures -------------------------

@pytest.mark.parametrize("client", ["litellm", "openai"])
@pytest.mark.parametrize(("code", "kind"), [("context_length_exceeded", "context_window_exceeded"),
                                            ("content_filter", "content_policy")])
def test_failure_class_fallbacks(provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 client: str, code: str, kind: str) -> None:
    monkeypatch.setenv("KEY", KEY)
    url = provider.url
    (tmp_path / "cascadeflow.toml").write_text(f'''
[cascades.classify]
tiers = [
  {{ model = "openai/gpt-4o", api_base = "{url}", api_key_env = "KEY" }},
  {{ model = "openai/gpt-4o-mini", api_base = "{url}", api_key_env = "KEY" }},
]
[cascades.classify.fallbacks]
context_window_exceeded = [{{ model = "openai/gpt-4.1", api_base = "{url}", api_key_env = "KEY" }}]
content_policy = [{{ model = "openai/gpt-4.1-mini", api_base = "{url}", api_key_env = "KEY" }}]
''')
    provider.inject(Fault.parse(f"status=400,code={code},model=gpt-4o"))
    events: list[str] = []
    cascadeflow.init(mode="observe", alerts=[lambda a: events.append(a.attributes["failure"])])
    with cascadeflow.run() as session:
        if client == "litellm":
            reply = litellm.completion(model="classify", messages=MESSAGES)
        else:
            sdk = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
            reply = sdk.chat.completions.create(model="classify", messages=MESSAGES)  # type: ignore[arg-type]
    special = "gpt-4.1" if kind == "context_window_exceeded" else "gpt-4.1-mini"
    assert [r.model for r in provider.requests] == ["gpt-4o", special]  # not the next tier of the chain
    assert reply.choices[0].message.content.startswith(f"Reply from {special}:")
    fallback = [e for e in session.trace() if e["action"] == "fallback"]
    assert [e["reason"] for e in fallback] == [kind]
    assert f"trying the {kind} fallbacks" in fallback[0]["message"]
    cascadeflow.shutdown()
    assert events == [kind]


def test_a_failure_in_the_special_chain_does_not_switch_again(provider: Any) -> None:
    provider.inject(Fault.parse("status=400,code=context_length_exceeded"))
    cascade = Cascade([endpoint(provider, "gpt-4o"), endpoint(provider, "gpt-4o-mini")],
                      fallbacks={"context_window_exceeded": [endpoint(provider, "gpt-4.1")]})
    with pytest.raises(cascadeflow.AllProvidersFailed) as info:
        cascade.complete(messages=MESSAGES)
    assert [a["model"] for a in info.value.attempts] == ["openai/gpt-4o", "openai/gpt-4.1"]


# -- embeddings ---------------------------------------------------------------------------------

async def test_embeddings_through_a_cascade(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    provider.inject(Fault.parse("status=503,model=text-embedding-3-large"))
    large, small = endpoint(provider, "text-embedding-3-large"), endpoint(provider, "text-embedding-3-small")
    cascade = Cascade([large, small, Tier(static="unused")], retry=TWICE)
    async with cascadeflow.run(budget=1.0) as session:
        vectors = cascade.embed(input=["charged twice", "refund"])
        again = await cascade.aembed(input="refund")
    assert len(vectors.data) == 2 and len(again.data) == 1
    assert [r.model for r in provider.requests] == ["text-embedding-3-large"] * 2 + \
        ["text-embedding-3-small"] + ["text-embedding-3-large"] * 2 + ["text-embedding-3-small"]
    steps = [e for e in session.trace() if e["operation"] == "embeddings"]
    assert len(steps) == 6 and session.summary()["fallbacks"] == 2


def test_embeddings_by_logical_name(provider: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY", KEY)
    (tmp_path / "cascadeflow.toml").write_text(f'''
[cascades.embed]
tiers = [
  {{ model = "openai/text-embedding-3-large", api_base = "{provider.url}", api_key_env = "KEY" }},
  {{ model = "openai/text-embedding-3-small", api_base = "{provider.url}", api_key_env = "KEY" }},
]
''')
    provider.inject(Fault.parse("status=503,model=text-embedding-3-large"))
    cascadeflow.init(mode="observe")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run() as session:
        one = litellm.embedding(model="embed", input=["refund"])
        two = sdk.embeddings.create(model="embed", input="refund")
    assert len(one.data) == 1 and len(two.data) == 1
    assert session.summary()["fallbacks"] == 2
    cascadeflow.shutdown()


def test_static_last_tier_answers_chats_only(provider: Any) -> None:
    provider.inject(status=503)
    cascade = Cascade([endpoint(provider, "text-embedding-3-small"), Tier(static="n/a")], retry=TWICE)
    with pytest.raises(cascadeflow.AllProvidersFailed):
        cascade.embed(input="refund")
