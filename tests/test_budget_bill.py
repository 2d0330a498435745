"""The pre-flight worst case bounds the whole bill: tool schemas, images, response_format, `n`.

Every call goes over HTTP to the built-in provider, which bills like OpenAI (tool schemas and
images are input, `n` multiplies output); the trace's cost comes from the usage it reports.
"""

from __future__ import annotations

import base64
import struct
import zlib
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.pricing import PriceBook

from tests.conftest import chat_kwargs

MODEL = "openai/gpt-4o"
PRICE = PriceBook().price(MODEL, "openai")


def _tools(count: int) -> list[dict[str, Any]]:
    """Tool schemas of the size real agents send (a description and a few typed parameters)."""
    return [{"type": "function", "function": {
        "name": f"lookup_record_{i}",
        "description": f"Look up record kind {i} in the back office by its identifier and return "
                       "every field the support agent may need to answer the customer, including "
                       "history, status, owner, shipping details and the audit trail.",
        "parameters": {"type": "object", "required": ["record_id"], "properties": {
            "record_id": {"type": "string", "description": "The identifier, e.g. ORD-1234."},
            "include_history": {"type": "boolean", "description": "Also return past changes."},
            "fields": {"type": "array", "items": {"type": "string"},
                       "description": "Only these fields; all when empty."},
            "region": {"type": "string", "enum": ["eu", "us", "apac"],
                       "description": "Where the record is stored."}}}}} for i in range(count)]


def _png(width: int, height: int) -> str:
    """A real PNG of the given size as a data URL (one grey row repeated)."""
    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    body = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return "data:image/png;base64," + base64.b64encode(body).decode()


def _spend_until_stopped(budget: float, call: Any, limit: int = 50) -> tuple[Any, int, bool]:
    """Call until the budget stops a call; the session, calls answered, whether it stopped."""
    answered, stopped = 0, False
    with cascadeflow.run(budget=budget) as session:
        for _ in range(limit):
            try:
                call()
            except cascadeflow.BudgetExceeded:
                stopped = True
                break
            answered += 1
    return session, answered, stopped


def _billed(session: Any) -> float:
    """What the provider billed: its reported usage at the model's prices."""
    return sum(PRICE.cost(e["tokens_in"], e["tokens_out"]) for e in session.trace()
               if e["status"] == "ok")


def test_twenty_tool_schemas_are_counted_before_the_call(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    kwargs = chat_kwargs(provider, "Where is my order?", model=MODEL, tools=_tools(20), max_tokens=50)
    session, answered, stopped = _spend_until_stopped(0.002, lambda: litellm.completion(**kwargs))
    assert stopped and answered == 0  # the schemas alone cost more than the budget
    assert provider.bodies("/chat/completions") == []  # nothing was sent
    # and with room for a few, the bill never passes the budget
    provider.reset()
    session, answered, stopped = _spend_until_stopped(0.05, lambda: litellm.completion(**kwargs))
    assert stopped and answered >= 2
    billed = _billed(session)
    assert billed <= 0.05
    assert session.summary()["cost_total"] == pytest.approx(billed)
    first = session.trace()[0]
    assert first["tokens_in"] > 2000  # the provider billed the schemas: the text alone is ~15 tokens


def test_a_legacy_function_call_sent_back_is_counted(provider: Any) -> None:
    """An assistant turn in the legacy form (`function_call`, the answer to `functions=`) sent
    back in the history: the provider bills its arguments as input, and so does the bound."""
    cascadeflow.init(mode="enforce")
    arguments = '{"notes": "' + "order history line; " * 2000 + '"}'  # ~8,000 tokens
    messages = [{"role": "user", "content": "Summarise the order notes."},
                {"role": "assistant", "content": None,
                 "function_call": {"name": "lookup", "arguments": arguments}},
                {"role": "function", "name": "lookup", "content": "done"}]
    kwargs = {**chat_kwargs(provider, model=MODEL, max_tokens=50), "messages": messages}
    session, answered, stopped = _spend_until_stopped(0.01, lambda: litellm.completion(**kwargs))
    assert stopped and answered == 0  # the arguments alone cost about 0.02
    assert provider.bodies("/chat/completions") == []
    session, answered, stopped = _spend_until_stopped(0.1, lambda: litellm.completion(**kwargs))
    assert stopped and answered >= 1 and _billed(session) <= 0.1
    assert session.trace()[0]["tokens_in"] > 6000  # the provider billed the arguments


def test_images_are_counted_by_the_tile_rule(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    content = [{"type": "text", "text": "What is in these pictures?"},
               *({"type": "image_url", "image_url": {"url": _png(1400, 900)}} for _ in range(8))]
    kwargs = {**chat_kwargs(provider, model=MODEL, max_tokens=50),
              "messages": [{"role": "user", "content": content}]}
    session, answered, stopped = _spend_until_stopped(0.002, lambda: litellm.completion(**kwargs))
    assert stopped and answered == 0
    session, answered, stopped = _spend_until_stopped(0.08, lambda: litellm.completion(**kwargs))
    assert stopped and answered >= 1
    assert _billed(session) <= 0.08
    assert session.trace()[0]["tokens_in"] >= 8 * 765  # 1400x900 is 4 tiles of 170 plus 85 at high detail


def test_n_choices_multiply_the_output(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    provider.reply("word " * 90, when="Tell me")
    kwargs = chat_kwargs(provider, "Tell me a story", model=MODEL, max_tokens=100, n=8)
    session, _answered, stopped = _spend_until_stopped(0.02, lambda: litellm.completion(**kwargs))
    assert stopped
    assert _billed(session) <= 0.02
    entry = session.trace()[0]
    assert entry["tokens_out"] >= 8 * 80  # the provider billed every choice


def test_best_of_multiplies_the_output_reserved(provider: Any) -> None:
    """A text completion's `best_of` answers are all billed: the worst case counts them (a call
    that fits once does not fit five times, so its max_tokens is clamped)."""
    cascadeflow.init(mode="enforce")
    kwargs = {"model": "openai/gpt-3.5-turbo-instruct", "prompt": "Tell me", "api_base": provider.url,
              "api_key": "sk-test-not-a-real-key-0000", "max_tokens": 1000}
    with cascadeflow.run(budget=0.004):
        litellm.text_completion(**kwargs)
        litellm.text_completion(**kwargs, best_of=5)
    once, five = (r.json["max_tokens"] for r in provider.requests)
    assert once == 1000 and five < 1000 / 2


@pytest.mark.parametrize("mode", ["enforce", "observe"])
def test_a_responses_chain_is_billed_again_and_counted(provider: Any, mode: str) -> None:
    """`previous_response_id` brings the earlier response's input and output back as input: a
    continuation that would fit on its own text is stopped where the chain does not fit (an id
    this process did not settle stays uncounted, as before)."""
    cascadeflow.init(mode=mode)
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000", max_retries=0)
    with cascadeflow.run(budget=0.011) as session:
        first = sdk.responses.create(model="gpt-4o", input="word " * 3000, max_output_tokens=50)
        sdk.responses.create(model="gpt-4o", input="and now?", max_output_tokens=50)
        sdk.responses.create(model="gpt-4o", input="and now?", previous_response_id="resp_elsewhere",
                             max_output_tokens=50)
        if mode == "enforce":
            with pytest.raises(cascadeflow.BudgetExceeded):
                sdk.responses.create(model="gpt-4o", input="and now?", previous_response_id=first.id,
                                     max_output_tokens=50)
        else:
            sdk.responses.create(model="gpt-4o", input="and now?", previous_response_id=first.id,
                                 max_output_tokens=50)
    reasons = [e["reason"] for e in session.trace()]
    assert reasons == ["ok", "ok", "ok", "budget_exceeded"]


def test_response_format_schema_is_counted(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    properties = {f"field_{i}": {"type": "string", "description": "A field the answer must fill in "
                                 "with a short, exact value taken from the conversation."}
                  for i in range(60)}
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": {
        "type": "object", "properties": properties, "required": list(properties)}}}
    kwargs = chat_kwargs(provider, "File this ticket", model=MODEL, max_tokens=50, response_format=fmt)
    session, _answered, stopped = _spend_until_stopped(0.003, lambda: litellm.completion(**kwargs))
    assert stopped
    assert _billed(session) <= 0.003
    assert provider.bodies("/chat/completions") == []  # the schema alone does not fit


def test_unknown_price_stops_by_default_and_can_be_allowed(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    kwargs = chat_kwargs(provider, model="openai/a-model-nobody-priced", max_tokens=20)
    with cascadeflow.run(budget=1.0) as session, pytest.raises(cascadeflow.BudgetExceeded) as caught:
        litellm.completion(**kwargs)
    assert caught.value.reason == "price_unknown"
    assert "unknown_price" in str(caught.value)
    assert session.trace()[0]["price_known"] is False
    cascadeflow.init(mode="enforce", unknown_price="allow")
    with cascadeflow.run(budget=1.0) as session:
        litellm.completion(**kwargs)
    entry = session.trace()[0]
    assert entry["reason"] == "price_unknown" and entry["status"] == "ok"
    assert entry["price_known"] is False


def test_unknown_price_setting_is_validated() -> None:
    with pytest.raises(cascadeflow.ConfigError) as caught:
        cascadeflow.init(mode="enforce", unknown_price="sometimes")
    assert caught.value.setting == "unknown_price" and caught.value.source == "init()"


def test_a_clamped_answer_with_a_response_format_schema_stays_in_the_budget(provider: Any) -> None:
    """Under a tight budget the answer is clamped to what the schema's worst case leaves; the
    provider bills the schema as it renders it (spaced JSON), which has more tokens than the
    compact JSON the bound used to tokenize: a long answer passed the budget."""
    cascadeflow.init(mode="enforce")
    provider.reply(" ".join(f"word{i}" for i in range(3000)))  # runs up to whatever max_tokens allows
    fmt = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": {
        "type": "object", "properties": {f"f{i}": {"type": "string"} for i in range(40)}}}}
    for budget in (0.002, 0.01):
        with cascadeflow.run(budget=budget) as session:
            litellm.completion(**chat_kwargs(provider, "Fill it in " * 30, model=MODEL,
                                             response_format=fmt))
        assert session.trace()[0]["reason"] == "max_tokens_clamped"
        assert _billed(session) <= budget


def test_an_embeddings_batch_is_bounded_by_a_window_per_input(provider: Any) -> None:
    """Each input of an embeddings batch may fill the model's context window and is billed on
    its own: the worst case was one window for the whole batch (0.000164 USD for
    text-embedding-3-small), so a batch of 60 long inputs was sent under a 0.001 budget and
    billed 0.0043, and a second one after it."""
    cascadeflow.init(mode="enforce")
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    batch = [f"customer order line item {i} " * 600 for i in range(60)]
    price = PriceBook().price("text-embedding-3-small", "openai")
    with cascadeflow.run(budget=0.001) as session:
        with pytest.raises(cascadeflow.BudgetExceeded):
            client.embeddings.create(model="text-embedding-3-small", input=batch)
        answer = client.embeddings.create(model="text-embedding-3-small", input=batch[:2])
    assert len(answer.data) == 2
    assert [e["status"] for e in session.trace()] == ["stopped", "ok"]
    billed = sum(price.cost(e["tokens_in"], 0) for e in session.trace() if e["status"] == "ok")
    assert billed <= 0.001


@pytest.mark.parametrize("extra_body", [{"max_completion_tokens": 4000}, {"n": 3}])
def test_limits_and_choices_in_extra_body_are_bounded(provider: Any, extra_body: dict[str, Any]) -> None:
    """The openai SDK merges `extra_body` into the request body over the arguments: an output
    limit there overrode the clamp (billed 0.04 USD on a 0.005 budget), and `n` there tripled
    the output that one choice was reserved for."""
    cascadeflow.init(mode="enforce")
    provider.reply(" ".join(f"word{i}" for i in range(3000)))  # runs up to whatever max_tokens allows
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    with cascadeflow.run(budget=0.005) as session:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Write"}],
                                       extra_body=extra_body)
    assert session.trace()[0]["reason"] == "max_tokens_clamped"
    assert _billed(session) <= 0.005
    assert extra_body in ({"max_completion_tokens": 4000}, {"n": 3})  # the caller's dict is untouched


def test_a_limit_in_extra_body_wins_over_the_argument_as_on_the_wire(provider: Any) -> None:
    """`max_completion_tokens=50` with `extra_body={"max_completion_tokens": 4000}`: the
    provider receives 4000 (extra_body is merged over the arguments), but the bound read the
    argument's 50, fitted the budget with it, and sent the call unclamped."""
    cascadeflow.init(mode="enforce")
    provider.reply(" ".join(f"word{i}" for i in range(3000)))
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    with cascadeflow.run(budget=0.005) as session:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Write"}],
                                       max_completion_tokens=50,
                                       extra_body={"max_completion_tokens": 4000})
    assert session.trace()[0]["reason"] == "max_tokens_clamped"
    assert _billed(session) <= 0.005


def test_a_text_completion_of_several_prompts_is_bounded_for_each(provider: Any) -> None:
    """The Completions API answers each prompt of a list on its own (n choices each) and bills
    them all; the worst case was one prompt's, so three prompts under a budget that one fits
    went out unclamped and were billed three answers."""
    cascadeflow.init(mode="enforce")
    provider.reply(" ".join(f"word{i}" for i in range(600)))  # past the clamp (about 650 tokens each)
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    price = PriceBook().price("gpt-3.5-turbo-instruct", "openai")
    assert price is not None
    with cascadeflow.run(budget=0.004) as session:
        answer = client.completions.create(model="gpt-3.5-turbo-instruct", max_tokens=1000,
                                           prompt=["Say hi", "Say ho", "Say hu"])
    assert [c.index for c in answer.choices] == [0, 1, 2]
    [entry] = session.trace()
    assert entry["reason"] == "max_tokens_clamped"
    assert entry["tokens_out"] == 3 * provider.answers[0][1].completion_tokens  # each ran to the clamp
    assert price.cost(entry["tokens_in"], entry["tokens_out"]) <= 0.004


def test_the_built_in_provider_bills_a_cut_answer_and_a_text_prompt_as_openai_does(
        provider: Any) -> None:
    """The tests above rely on the bill being OpenAI's: an answer cut at `max_tokens` is billed
    the whole limit (the text ends at a word, and its own count billed less, so a clamp that
    let the bill pass the budget went unseen), and a legacy text completion's prompt is billed
    its own tokens, with no chat framing around it."""
    provider.reply(" ".join(f"word{i}" for i in range(200)))
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    chat = client.chat.completions.create(model="gpt-4o", max_tokens=37,
                                          messages=[{"role": "user", "content": "talk"}])
    assert chat.choices[0].finish_reason == "length" and chat.usage is not None
    assert chat.usage.completion_tokens == 37
    text = client.completions.create(model="gpt-3.5-turbo-instruct", max_tokens=11, n=2,
                                     prompt=["Say hi", "Say ho"])
    assert [c.finish_reason for c in text.choices] == ["length"] * 4 and text.usage is not None
    assert text.usage.completion_tokens == 2 * 2 * 11
    assert text.usage.prompt_tokens == 2 * 2  # "Say" "hi", "Say" "ho"
