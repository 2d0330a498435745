"""Costs come from litellm's price map or config overrides; unknown prices are None, never guessed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.config import resolve
from cascadeflow.pricing import Price, PriceBook
from cascadeflow.usage import read_usage
from litellm.types.utils import ModelResponse
from litellm.types.utils import Usage as LiteUsage

from tests.conftest import chat_kwargs


def test_cached_tokens_use_the_cache_read_price(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    system = {"role": "system", "content": "You are a support triage assistant. " * 40}
    messages = [system, {"role": "user", "content": "first"}]
    with cascadeflow.run() as session:
        litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url,
                           api_key="sk-test")
        messages[1] = {"role": "user", "content": "second"}
        litellm.completion(model="openai/gpt-4o-mini", messages=messages, api_base=provider.url,
                           api_key="sk-test")
    first, second = session.trace()
    assert first["cached_tokens"] == 0
    assert second["cached_tokens"] > 200
    price = Price(1.5e-7, 6e-7, 7.5e-8)
    assert second["cost"] == pytest.approx(price.cost(second["tokens_in"], second["tokens_out"],
                                                      second["cached_tokens"]))
    assert second["cost"] < price.cost(second["tokens_in"], second["tokens_out"])
    assert session.summary()["cached_tokens"] == second["cached_tokens"]


def test_unknown_model_has_no_cost(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider, model="openai/our-private-model"))
    [entry] = session.trace()
    assert entry["cost"] is None and entry["price_known"] is False
    summary = session.summary()
    assert summary["cost_unknown_steps"] == 1 and summary["cost_total"] == 0.0
    assert summary["models"]["openai/our-private-model"]["cost_unknown"] == 1


def test_price_override_from_config(provider: Any, tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        '[models."openai/our-private-model"]\ninput_cost_per_token = 0.001\noutput_cost_per_token = 0.002\n')
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider, model="openai/our-private-model"))
    [entry] = session.trace()
    assert entry["cost"] == pytest.approx(entry["tokens_in"] * 0.001 + entry["tokens_out"] * 0.002)


def test_prompt_cache_writes_are_charged_at_their_price() -> None:
    """Anthropic bills tokens written to the prompt cache at 1.25x the input price; litellm
    counts them in `prompt_tokens`. They were charged at the input price: 24% too little."""
    response = ModelResponse(model="claude-sonnet-4-5", choices=[{
        "index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
        usage=LiteUsage(prompt_tokens=10_010, completion_tokens=100, total_tokens=10_110,
                        cache_creation_input_tokens=10_000))
    usage = read_usage("chat", response)
    price = PriceBook().price("claude-sonnet-4-5", "anthropic")
    assert price is not None and price.cache_write is not None and price.cache_write > price.input
    cost = price.cost(usage.tokens_in, usage.tokens_out, usage.cached_tokens, usage.cache_write_tokens)
    billed = litellm.completion_cost(completion_response=response, model="claude-sonnet-4-5")
    assert cost == pytest.approx(billed)
    assert price.input_bound == price.cache_write  # what a budget reserves per input token


CACHED_USAGE = {"prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010,
                "cache_creation_input_tokens": 800, "cache_read_input_tokens": 0,
                "prompt_tokens_details": {"cached_tokens": 0, "cache_creation_tokens": 800}}


def _cache_write_stream(model: str) -> str:
    base = {"id": "chatcmpl-cw", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"},
                                    "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {**base, "choices": [], "usage": CACHED_USAGE}]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_streams_prompt_cache_writes_are_charged_at_their_price(provider: Any, client: str) -> None:
    """A stream's final usage chunk reports the tokens written to the prompt cache (litellm's
    Anthropic streams, as `cache_creation_input_tokens`) as the unstreamed answer does. Streams
    charged them at the input price: the step, the summary and the budget got 16% too little."""
    model = "claude-haiku-4-5"
    provider.inject(body=_cache_write_stream(model))
    cascadeflow.init(mode="observe")
    messages = [{"role": "user", "content": "hello"}]
    with cascadeflow.run() as session:
        if client == "litellm":
            stream = litellm.completion(model=f"openai/{model}", messages=messages, stream=True,
                                        stream_options={"include_usage": True},
                                        api_base=provider.url, api_key="sk-test")
        else:
            stream = openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
                model=model, messages=messages, stream=True, stream_options={"include_usage": True})
        for _ in stream:
            pass
    [entry] = session.trace()
    price = PriceBook().price(model)
    assert price is not None and price.cache_write is not None and price.cache_write > price.input
    expected = 200 * price.input + 800 * price.cache_write + 10 * price.output
    assert entry["cost"] == pytest.approx(expected)
    assert session.summary()["cost_total"] == pytest.approx(expected)


def _long_prompt_body(model: str, prompt_tokens: int) -> str:
    return json.dumps({"id": "chatcmpl-long", "object": "chat.completion", "created": 1, "model": model,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "ok"}}],
                       "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1000,
                                 "total_tokens": prompt_tokens + 1000}})


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_long_prompt_is_charged_at_its_long_context_tier(provider: Any, client: str) -> None:
    """gpt-5.4 bills a prompt of more than 272k tokens at twice the input price (and more for
    the answer); Gemini 2.5 Pro above 200k. Such calls were charged at the base prices: half
    the bill in the trace, summary and budget, and the budget's worst case was half too."""
    model = "gpt-5.4"
    cascadeflow.init(mode="observe")
    messages = [{"role": "user", "content": "hello"}]
    with cascadeflow.run() as session:
        for prompt_tokens in (300_000, 100_000):
            provider.inject(body=_long_prompt_body(model, prompt_tokens), times=1)
            if client == "litellm":
                litellm.completion(model=f"openai/{model}", messages=messages,
                                   api_base=provider.url, api_key="sk-test")
            else:
                openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
                    model=model, messages=messages)
    long, short = session.trace()
    price = PriceBook().price(model, "openai")
    assert price is not None and price.tiers
    [tier] = price.tiers
    assert tier.threshold == 272_000 and tier.input > price.input and tier.output > price.output
    assert long["cost"] == pytest.approx(300_000 * tier.input + 1000 * tier.output)
    assert short["cost"] == pytest.approx(100_000 * price.input + 1000 * price.output)
    assert long["cost"] == pytest.approx(sum(litellm.cost_per_token(
        model=model, prompt_tokens=300_000, completion_tokens=1000)))
    assert session.summary()["cost_total"] == pytest.approx(long["cost"] + short["cost"])
    # the most one call can cost: a full context window, billed at the tier's prices
    assert price.max_input_tokens is not None and price.max_output_tokens is not None
    assert price.most(None) == pytest.approx(price.max_input_tokens * tier.input
                                             + price.max_output_tokens * tier.output)


def test_a_configured_price_drops_the_maps_long_context_tiers(tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text(
        '[models."openai/gpt-5.4"]\ninput_cost_per_token = 0.001\noutput_cost_per_token = 0.002\n')
    price = PriceBook(resolve({"mode": "observe"}, environ={}).models).price("gpt-5.4", "openai")
    assert price is not None and price.tiers == ()
    assert price.cost(300_000, 10) == pytest.approx(300_000 * 0.001 + 10 * 0.002)


AUDIO_USAGE = {"prompt_tokens": 1200, "completion_tokens": 500, "total_tokens": 1700,
               "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 1000},
               "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 400}}


def _audio_body(model: str, stream: bool) -> str:
    if not stream:
        return json.dumps({"id": "chatcmpl-au", "object": "chat.completion", "created": 1, "model": model,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "ok"}}],
                           "usage": AUDIO_USAGE})
    base = {"id": "chatcmpl-au", "object": "chat.completion.chunk", "created": 1, "model": model}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"},
                                    "finish_reason": None}]},
              {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
              {**base, "choices": [], "usage": AUDIO_USAGE}]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_audio_tokens_are_charged_at_the_audio_prices(provider: Any, client: str, stream: bool) -> None:
    """gpt-audio bills audio tokens (`prompt_tokens_details.audio_tokens`, and of the answer
    `completion_tokens_details.audio_tokens`) at 12.8x and 6.4x the text prices. They were
    charged as text: an audio call was recorded (and settled against its budget) at a
    fraction of its bill."""
    model = "gpt-audio"
    provider.inject(body=_audio_body(model, stream))
    cascadeflow.init(mode="observe")
    messages = [{"role": "user", "content": "hello"}]
    extra: dict[str, Any] = {"stream": True, "stream_options": {"include_usage": True}} if stream else {}
    with cascadeflow.run() as session:
        if client == "litellm":
            answer = litellm.completion(model=f"openai/{model}", messages=messages,
                                        api_base=provider.url, api_key="sk-test", **extra)
        else:
            answer = openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
                model=model, messages=messages, **extra)
        if stream:
            for _ in answer:
                pass
    [entry] = session.trace()
    price = PriceBook().price(model, "openai")
    assert price is not None and price.audio_input is not None and price.audio_output is not None
    assert price.audio_input > price.input and price.audio_output > price.output
    expected = (200 * price.input + 1000 * price.audio_input
                + 100 * price.output + 400 * price.audio_output)
    assert entry["cost"] == pytest.approx(expected)
    assert session.summary()["cost_total"] == pytest.approx(expected)
    # a budget's worst case prices every token as the dearer kind
    assert price.max_input_tokens is not None and price.max_output_tokens is not None
    assert price.most(None) == pytest.approx(price.max_input_tokens * price.audio_input
                                             + price.max_output_tokens * price.audio_output)


def _tier_body(model: str, tier: str) -> str:
    return json.dumps({"id": "chatcmpl-st", "object": "chat.completion", "created": 1, "model": model,
                       "service_tier": tier,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": "ok"}}],
                       "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "total_tokens": 1100}})


@pytest.mark.parametrize("client", ["litellm", "openai"])
def test_a_priority_call_is_charged_and_reserved_at_the_priority_prices(provider: Any, client: str) -> None:
    """OpenAI bills `service_tier="priority"` at twice gpt-5's prices, and the response says
    it was served so. Such calls were charged at the standard prices (half the bill), and
    a budget reserved for them at the standard prices too."""
    model = "gpt-5"
    price = PriceBook().price(model, "openai")
    assert price is not None
    priority = price.for_tier("priority")
    assert priority.input > price.input and priority.output > price.output
    cascadeflow.init(mode="enforce")
    messages = [{"role": "user", "content": "hello"}]
    with cascadeflow.run(budget=100.0) as session:
        for tier in ("priority", "default"):
            provider.inject(body=_tier_body(model, tier), times=1)
            if client == "litellm":
                litellm.completion(model=f"openai/{model}", messages=messages, service_tier=tier,
                                   max_tokens=200, api_base=provider.url, api_key="sk-test")
            else:
                openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
                    model=model, messages=messages, service_tier=tier, max_tokens=200)
    fast, standard = session.trace()
    assert fast["cost"] == pytest.approx(1000 * priority.input + 100 * priority.output)
    assert standard["cost"] == pytest.approx(1000 * price.input + 100 * price.output)
    assert fast["cost"] == pytest.approx(sum(litellm.cost_per_token(
        model=model, prompt_tokens=1000, completion_tokens=100, service_tier="priority")))
    # a budget that pays for the shortest useful answer (16 tokens) at the standard prices
    # but not at the priority ones: the priority call is stopped before it is sent
    budget = 20 * price.input + 16 * price.output + 0.4 * 16 * (priority.output - price.output)
    with cascadeflow.run(budget=budget) as session:
        with pytest.raises(cascadeflow.BudgetExceeded) as info:
            if client == "litellm":
                litellm.completion(model=f"openai/{model}", messages=messages, service_tier="priority",
                                   max_tokens=200, api_base=provider.url, api_key="sk-test")
            else:
                openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
                    model=model, messages=messages, service_tier="priority", max_tokens=200)
        assert info.value.reason == "budget_exceeded"
        provider.inject(body=_tier_body(model, "default"), times=1)
        if client == "litellm":
            litellm.completion(model=f"openai/{model}", messages=messages, max_tokens=200,
                               api_base=provider.url, api_key="sk-test")
        else:
            openai.OpenAI(base_url=provider.url, api_key="sk-test").chat.completions.create(
                model=model, messages=messages, max_tokens=200)
    assert [(e["action"], e["reason"]) for e in session.trace()] == [
        ("stop", "budget_exceeded"), ("allow", "max_tokens_clamped")]
