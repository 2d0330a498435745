"""Every openai SDK entry point that sends a model request is a step, and stops under a budget.

The first test reads the installed SDK's source: a resource method that POSTs to a model
endpoint and is not intercepted fails it, so an SDK upgrade cannot open a silent bypass.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import pkgutil
import re
from typing import Any

import cascadeflow
import litellm
import openai
import pydantic
import pytest
from cascadeflow.interceptors.openai import TARGETS

KEY = "sk-test-not-a-real-key-0000"
MODEL_PATHS = re.compile(r'self\._post\(\s*"/(chat/completions|completions|responses|responses/compact|'
                         r'embeddings)(\?beta=true)?"')


def _model_request_methods() -> set[tuple[str, str, str]]:
    """(module, class, method) of every resource method that POSTs to a model endpoint."""
    found: set[tuple[str, str, str]] = set()
    package = importlib.import_module("openai.resources")
    for info in pkgutil.walk_packages(package.__path__, "openai.resources."):
        module = importlib.import_module(info.name)
        for cls_name, cls in vars(module).items():
            if not inspect.isclass(cls) or cls.__module__ != module.__name__:
                continue
            for name, fn in vars(cls).items():
                fn = getattr(fn, "__cascadeflow_original__", fn)
                if name.startswith("_") or not inspect.isfunction(fn):
                    continue
                if MODEL_PATHS.search(inspect.getsource(fn)):
                    found.add((module.__name__, cls_name, name))
    return found


def test_every_model_request_method_of_the_sdk_is_intercepted() -> None:
    found = _model_request_methods()
    covered = set()
    for module, cls, method, _op, _async in TARGETS:  # as the defining module names them
        owner = getattr(importlib.import_module(module), cls)
        covered.add((owner.__module__, owner.__name__, method))
    assert found, "the SDK's layout changed: no model request method found"
    missing = found - covered
    assert not missing, f"add these to cascadeflow.interceptors.openai.TARGETS: {sorted(missing)}"
    cascadeflow.init(mode="observe")
    for module, cls, method in found:
        owner = getattr(importlib.import_module(module), cls)
        assert hasattr(vars(owner)[method], "__cascadeflow_original__"), (module, cls, method)


class Ticket(pydantic.BaseModel):
    order_id: str
    urgent: bool


def _client(provider: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.url, api_key=KEY)


def _calls(provider: Any) -> dict[str, Any]:  # keys: ENTRY_POINTS
    """One call per entry point, each returning after the body has been read."""
    client = _client(provider)
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Where is order 42?"}]}

    def stream_helper() -> None:
        with client.chat.completions.stream(**chat) as stream:
            for _ in stream:
                pass

    def responses_stream_helper() -> None:
        with client.responses.stream(model="gpt-4o-mini", input="Where is order 42?") as stream:
            for _ in stream:
                pass

    def streaming_response() -> None:
        with client.chat.completions.with_streaming_response.create(**chat) as response:
            assert response.parse().choices[0].message.content

    def streaming_response_stream() -> None:
        with client.chat.completions.with_streaming_response.create(**chat, stream=True) as response:
            for _ in response.parse():
                pass

    def raw_response_stream() -> None:
        for _ in client.chat.completions.with_raw_response.create(**chat, stream=True).parse():
            pass

    return {
        "chat.completions.parse": lambda: client.chat.completions.parse(**chat, response_format=Ticket),
        "responses.parse": lambda: client.responses.parse(model="gpt-4o-mini", input="Where is order 42?",
                                                          text_format=Ticket),
        "completions.create": lambda: client.completions.create(model="gpt-4o-mini", prompt="Order 42?"),
        "beta.responses.create": lambda: client.beta.responses.create(model="gpt-4o-mini",
                                                                      input="Where is order 42?"),
        "responses.compact": lambda: client.responses.compact(model="gpt-4o-mini", input=[
            {"role": "user", "content": "Where is order 42?"}]),
        "chat.completions.stream": stream_helper,
        "responses.stream": responses_stream_helper,
        "with_streaming_response": streaming_response,
        "with_streaming_response, stream=True": streaming_response_stream,
        "with_raw_response, stream=True": raw_response_stream,
        "litellm.responses": lambda: litellm.responses(input="Where is order 42?", model="openai/gpt-4o-mini",
                                                       api_base=provider.url, api_key=KEY),
    }


ENTRY_POINTS = ["chat.completions.parse", "responses.parse", "completions.create", "responses.compact",
                "beta.responses.create",
                "chat.completions.stream", "responses.stream", "with_streaming_response",
                "with_streaming_response, stream=True", "with_raw_response, stream=True",
                "litellm.responses"]


CHAT_STREAMS = {"chat.completions.stream", "with_streaming_response, stream=True",
                "with_raw_response, stream=True"}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_entry_point_is_a_step_with_exact_usage_and_a_budget_stop(provider: Any, entry_point: str) -> None:
    cascadeflow.init(mode="enforce")
    call = _calls(provider)[entry_point]
    with cascadeflow.run(budget=1e-9), pytest.raises(cascadeflow.BudgetExceeded):
        call()
    assert provider.requests == []  # stopped before anything was sent
    with cascadeflow.run(budget=1.0) as session:
        call()
    (entry,) = session.trace()
    assert entry["status"] == "ok"
    assert entry["tokens_in"] > 0 and entry["tokens_out"] > 0
    # chat streams carry no usage unless the caller asks (stream_options): counted, and marked
    assert entry["usage_estimated"] is (entry_point in CHAT_STREAMS)
    assert entry["cost"] > 0


def test_parse_gets_structured_output_through(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0):
        result = _client(provider).chat.completions.parse(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Where is order 42?"}],
            response_format=Ticket)
    assert isinstance(result.choices[0].message.parsed, Ticket)


def test_a_streaming_response_closed_unread_is_charged_its_reservation(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    client = _client(provider)
    with cascadeflow.run(budget=1.0) as session, client.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=20):
        pass
    (entry,) = session.trace()
    assert entry["status"] == "unread"
    assert entry["cost"] > 0 and session.summary()["cost_total"] == pytest.approx(entry["cost"])


def test_async_streaming_response_and_aresponses(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    client = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY)

    async def main() -> Any:
        async with cascadeflow.run(budget=1.0) as session:
            async with client.chat.completions.with_streaming_response.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]) as response:
                await response.parse()
            await litellm.aresponses(input="hi", model="openai/gpt-4o-mini", api_base=provider.url,
                                     api_key=KEY)
        return session

    session = asyncio.run(main())
    entries = session.trace()
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert all(e["tokens_out"] > 0 for e in entries)


def test_observe_records_raw_and_streaming_responses(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    client = _client(provider)
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    with cascadeflow.run() as session:
        with client.chat.completions.with_streaming_response.create(**chat) as response:
            response.parse()
        for _ in client.chat.completions.with_raw_response.create(**chat, stream=True).parse():
            pass
        client.chat.completions.parse(**chat, response_format=Ticket)
    entries = session.trace()
    assert [e["status"] for e in entries] == ["ok", "ok", "ok"]
    assert all(e["tokens_out"] > 0 for e in entries)
