"""The edges of interception through the openai SDK and litellm: errors raised after a billed
response, legacy parameters, raw responses whose body fails to parse, token limits the caller
left unset, stops that litellm would rewrap, and bodies read line by line."""

from __future__ import annotations

import asyncio
import enum
import json
from typing import Any

import cascadeflow
import litellm
import openai
import pydantic
import pytest

from tests.conftest import chat_kwargs

KEY = "sk-test-not-a-real-key-0000"
MESSAGES = [{"role": "user", "content": "hello there"}]


class Label(pydantic.BaseModel):
    label: str
    reason: str


def client(provider: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_parse_rejecting_a_cut_answer_still_charges_it(provider: Any, mode: str) -> None:
    """`parse` raises after the provider billed a 200; what it billed is charged."""
    cascadeflow.init(mode=mode)
    with cascadeflow.run(budget=1.0) as session, pytest.raises(openai.LengthFinishReasonError) as err:
        client(provider).chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES,
                                                response_format=Label, max_tokens=3)
    billed = err.value.completion.usage
    assert billed is not None
    [entry] = session.trace()
    assert entry["error"] == "LengthFinishReasonError"
    assert (entry["tokens_in"], entry["tokens_out"]) == (billed.prompt_tokens, billed.completion_tokens)
    assert entry["cost"] > 0 and session.summary()["cost_total"] == pytest.approx(entry["cost"])


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_parse_rejecting_a_filtered_answer_still_charges_it(provider: Any, mode: str) -> None:
    """`ContentFilterFinishReasonError` carries no completion: its usage is found all the same."""
    provider.reply("partial", finish_reason="content_filter")
    cascadeflow.init(mode=mode)
    with cascadeflow.run(budget=1.0) as session, pytest.raises(openai.ContentFilterFinishReasonError):
        client(provider).chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES,
                                                response_format=Label)
    [entry] = session.trace()
    assert entry["error"] == "ContentFilterFinishReasonError"
    assert entry["tokens_in"] > 0 and entry["tokens_out"] > 0 and entry["cost"] > 0


SCHEMA = {"type": "object", "properties": {"id": {"type": "string"}}}
def test_an_answer_that_does_not_fit_the_schema_is_still_charged(provider: Any) -> None:
    """`parse` raises pydantic's ValidationError for chat and the Responses API alike."""
    provider.reply("not json at all")
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0) as session:
        with pytest.raises(pydantic.ValidationError):
            client(provider).chat.completions.parse(model="gpt-4o-mini", messages=MESSAGES,
                                                    response_format=Label)
        with pytest.raises(pydantic.ValidationError):
            client(provider).responses.parse(model="gpt-4o-mini", input="hi", text_format=Label)
    entries = session.trace()
    assert [e["error"] for e in entries] == ["ValidationError"] * 2
    assert all(e["tokens_in"] > 0 and e["tokens_out"] > 0 and e["cost"] > 0 for e in entries)


DELETE = {"name": "delete_account", "parameters": SCHEMA}
LOOKUP = {"name": "lookup", "parameters": SCHEMA}


def test_tools_deny_reaches_the_legacy_functions_parameter(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(tools_deny=["delete_account"]) as session:
        client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                 functions=[DELETE])
        client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES,
                                                 functions=[DELETE, LOOKUP],
                                                 function_call={"name": "delete_account"})
    alone, beside = (r.json for r in provider.requests)
    assert "functions" not in alone and "function_call" not in alone
    assert beside["functions"] == [LOOKUP] and "function_call" not in beside
    assert [(e["action"], e["tools_denied"]) for e in session.trace()] == [
        ("deny_tool", ["delete_account"])] * 2


def _legacy_call(provider: Any, via: str, stream: bool) -> str | None:
    """One chat call offering `functions=[LOOKUP]`: the name of the function the answer calls
    (legacy `function_call`, streamed or not)."""
    kwargs: dict[str, Any] = {"messages": MESSAGES, "functions": [LOOKUP], "stream": stream}
    if via == "litellm":
        answer = litellm.completion(**{**chat_kwargs(provider), **kwargs})
    else:
        answer = client(provider).chat.completions.create(model="gpt-4o-mini", **kwargs)
    if not stream:
        call = answer.choices[0].message.function_call
        return call.name if call else None
    names = [c.choices[0].delta.function_call.name for c in answer
             if c.choices and c.choices[0].delta.function_call]
    return next((n for n in names if n), None)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("via", ["openai", "litellm"])
def test_a_legacy_function_call_counts_against_max_tool_calls(provider: Any, via: str, stream: bool) -> None:
    """The chat API's legacy `functions=` answers with `function_call`, not `tool_calls`: it is
    a tool call all the same, counted in the trace and against `max_tool_calls`."""
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(max_tool_calls=1) as session:
        assert _legacy_call(provider, via, stream) == "lookup"
        _legacy_call(provider, via, stream)
    first, second = session.trace()
    assert first["tool_calls"] == 1 and session.summary()["tool_calls_requested"] >= 1
    assert (second["action"], second["reason"]) == ("deny_tool", "max_tool_calls_reached")
    assert "functions" not in provider.requests[1].json  # the second call was sent without them


def _raw_parse_error(provider: Any, mode: str, call: Any) -> tuple[type[BaseException], Any]:
    """What `call(client)` returned and the error its `parse()` raised, in `mode`."""
    cascadeflow.init(mode=mode)
    raw = call(client(provider))
    assert raw.status_code == 200
    with pytest.raises(Exception) as err:
        raw.parse()
    return err.type, raw


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_raw_body_that_does_not_parse_is_returned_as_with_cascadeflow_off(provider: Any,
                                                                             mode: str) -> None:
    """`create` hands the raw response back and only `parse()` raises; the step settles as an
    error and its reservation is released, so the next call is not clamped."""
    def call(sdk: openai.OpenAI) -> Any:
        return sdk.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES, extra_headers={"x-cascadeflow-fault": "malformed_json"})

    off, _ = _raw_parse_error(provider, "off", call)
    with cascadeflow.run(budget=0.01) as session:
        error, _ = _raw_parse_error(provider, mode, call)
        client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert error is off
    first, second = session.trace()
    assert (first["status"], first["error"]) == ("error", off.__name__)
    assert (second["status"], second["reason"]) == ("ok", "ok")


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_raw_parse_of_a_cut_answer_is_charged_when_parsed(provider: Any, mode: str) -> None:
    def call(sdk: openai.OpenAI) -> Any:
        return sdk.chat.completions.with_raw_response.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Label, max_tokens=3)

    with cascadeflow.run(budget=1.0) as session:
        error, _ = _raw_parse_error(provider, mode, call)
    assert error is openai.LengthFinishReasonError
    [entry] = session.trace()
    assert entry["status"] == "error" and entry["tokens_out"] == 3 and entry["cost"] > 0


def _limits(provider: Any) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.json.items() if k.startswith("max_")} for r in provider.requests]


def test_the_stream_helper_keeps_the_callers_max_completion_tokens(provider: Any) -> None:
    """`.stream()` passes `max_tokens=omit`: the limit set is `max_completion_tokens`, reserved
    as asked and not clamped under another key."""
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.002) as session, client(provider).chat.completions.stream(
            model="gpt-4o-mini", messages=MESSAGES, max_completion_tokens=50) as stream:
        for _ in stream:
            pass
    assert _limits(provider) == [{"max_completion_tokens": 50}]
    assert session.trace()[0]["reason"] == "ok"


def test_a_clamp_through_the_sdk_uses_max_completion_tokens(provider: Any) -> None:
    """OpenAI rejects `max_tokens` for reasoning models; `max_completion_tokens` fits all."""
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.01) as session:
        client(provider).chat.completions.create(model="o4-mini", messages=MESSAGES)
        client(provider).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=90000)
    [unset], [asked] = ([*limits] for limits in _limits(provider))
    assert unset == "max_completion_tokens" and asked == "max_tokens"  # the caller's own key kept
    assert [e["reason"] for e in session.trace()] == ["max_tokens_clamped"] * 2


def test_the_router_does_not_retry_a_stop(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    router = litellm.Router(model_list=[{"model_name": "m", "litellm_params": {
        "model": "openai/gpt-4o-mini", "api_base": provider.url, "api_key": KEY}}])
    with cascadeflow.run(budget=0.0) as session, pytest.raises(cascadeflow.BudgetExceeded):
        router.completion(model="m", messages=MESSAGES)
    assert len(session.trace()) == 1 and not provider.requests


def test_a_stop_beneath_a_litellm_call_not_intercepted_reaches_the_caller(provider: Any) -> None:
    """`from litellm import completion` before `init()`: the openai SDK's interceptor stops the
    call, and the caller gets that stop, not litellm's 500 made of it."""
    completion = litellm.completion  # as a module that imported it before init() holds it
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.0) as session, pytest.raises(cascadeflow.BudgetExceeded) as stop:
        completion(**chat_kwargs(provider))
    assert stop.value.run_id == session.run_id
    assert [e["status"] for e in session.trace()] == ["stopped"] and not provider.requests


READERS = {
    "text": lambda response: response.text(),
    "read": lambda response: response.read(),
    "iter_lines": lambda response: list(response.iter_lines()),
    "iter_text": lambda response: list(response.iter_text(7)),
    "iter_bytes": lambda response: list(response.iter_bytes(5)),
}


@pytest.mark.parametrize("mode", ["observe", "enforce"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_a_streaming_response_read_by_hand_is_charged_what_it_used(provider: Any, mode: str,
                                                                   reader: str) -> None:
    """A body (or a stream's events) read as text, bytes or lines settles from what it holds,
    not at the worst case of a body never read."""
    cascadeflow.init(mode=mode)
    sdk = client(provider)
    with cascadeflow.run(budget=1.0) as session:
        plain = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        for stream in (False, True):
            with sdk.chat.completions.with_streaming_response.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=stream) as response:
                READERS[reader](response)
    expected, whole, events = session.trace()
    assert [whole["status"], events["status"]] == ["ok", "ok"]
    assert whole["usage_estimated"] is False and events["usage_estimated"] is True
    for entry in (whole, events):
        assert (entry["tokens_in"], entry["tokens_out"]) == (plain.usage.prompt_tokens,
                                                             plain.usage.completion_tokens)
        assert entry["cost"] == pytest.approx(expected["cost"])


async def test_an_async_streaming_response_read_by_lines_is_charged_what_it_used(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    sdk = openai.AsyncOpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    async with cascadeflow.run(budget=1.0) as session:
        async with sdk.responses.with_streaming_response.create(
                model="gpt-4o-mini", input="hi", stream=True) as response:
            lines = [line async for line in response.iter_lines()]
        async with sdk.chat.completions.with_streaming_response.create(
                model="gpt-4o-mini", messages=MESSAGES) as response:
            await response.text()
    assert any(line.startswith("data:") for line in lines)
    entries = session.trace()
    assert [e["status"] for e in entries] == ["ok", "ok"]
    assert all(e["tokens_out"] > 0 and e["cost"] < 0.001 for e in entries)


def test_a_streaming_response_read_in_part_is_still_unread(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    respond = client(provider).chat.completions.with_streaming_response
    with cascadeflow.run(budget=1.0) as session, respond.create(model="gpt-4o-mini", messages=MESSAGES,
                                                                stream=True) as response:
        next(iter(response.iter_lines()))
    assert session.trace()[0]["status"] == "unread"


def test_raw_responses_touched_before_init_are_intercepted(provider: Any) -> None:
    """The SDK caches `with_raw_response` / `with_streaming_response` with the method bound when
    first touched (LangChain's ChatOpenAI touches it at its first call, often before init)."""
    sync, later = client(provider).chat.completions, openai.AsyncOpenAI(
        base_url=provider.url, api_key=KEY, max_retries=0).chat.completions
    for completions in (sync, later):
        assert completions.with_raw_response.create and completions.with_streaming_response.create
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.0):
        with pytest.raises(cascadeflow.BudgetExceeded):
            sync.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
        with pytest.raises(cascadeflow.BudgetExceeded):
            sync.with_streaming_response.create(model="gpt-4o-mini", messages=MESSAGES).__enter__()
        with pytest.raises(cascadeflow.BudgetExceeded):
            asyncio.run(later.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES))
    assert not provider.requests
    cascadeflow.shutdown()  # what was bound while active passes straight through afterwards
    assert sync.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES).parse().usage


BLOCK_CARDS = """
version = "v1"
[profiles.strict_out]
[[profiles.strict_out.output]]
name = "no_cards"
detector = "pii"
types = ["credit_card"]
action = "block"
"""


def test_an_unparsed_raw_body_output_rules_must_vet_is_not_handed_over(provider: Any,
                                                                       tmp_path: Any) -> None:
    """Enforce with output rules: a raw body they cannot read (parse raised) stays withheld, the
    error is raised by the call, and the step is settled."""
    path = tmp_path / "guardrails.toml"
    path.write_text(BLOCK_CARDS)
    cascadeflow.init(mode="enforce", guardrails_file=path)
    provider.reply("card 4242 4242 4242 4242", finish_reason="length")
    with cascadeflow.run(guardrails="strict_out") as session, pytest.raises(openai.LengthFinishReasonError):
        client(provider).chat.completions.with_raw_response.parse(
            model="gpt-4o-mini", messages=MESSAGES, response_format=Label)
    [entry] = session.trace()
    assert entry["status"] == "error" and entry["cost"] > 0


class Model(str, enum.Enum):  # noqa: UP042 (how applications often keep their model names)
    MINI = "openai/gpt-4o-mini"


class SdkModel(enum.StrEnum):
    MINI = "gpt-4o-mini"


def test_a_model_name_that_is_a_str_enum_is_intercepted(provider: Any) -> None:
    # litellm's adapter took only an exact `str`: a `(str, Enum)` model was let through
    # untouched, so in enforce no limit applied (3 requests sent under max_steps=1)
    cascadeflow.init(mode="enforce", instrument=["litellm"])
    with cascadeflow.run(max_steps=1) as session:
        litellm.completion(model=Model.MINI, messages=MESSAGES, api_base=provider.url, api_key=KEY)
        with pytest.raises(cascadeflow.StepLimitReached):
            litellm.completion(model=Model.MINI, messages=MESSAGES, api_base=provider.url, api_key=KEY)
    assert len(provider.requests) == 1
    entry = session.trace()[0]
    assert type(entry["model"]) is str and entry["model"] == "openai/gpt-4o-mini"
    assert entry["provider"] == "openai" and entry["cost"] > 0


def test_a_str_enum_model_is_recorded_as_its_name(provider: Any) -> None:
    cascadeflow.init(mode="observe", instrument=["openai"])
    with cascadeflow.run() as session:
        client(provider).chat.completions.create(model=SdkModel.MINI, messages=MESSAGES)
    entry = session.trace()[0]
    assert type(entry["model"]) is str and entry["model"] == "gpt-4o-mini"


def test_a_responses_call_that_names_no_model_is_still_a_step(provider: Any) -> None:
    # the Responses API takes its model from a stored prompt when `model` is left out; the
    # adapter read only calls naming one, so such a call was sent untraced, past max_steps and
    # the budget
    cascadeflow.init(mode="enforce", instrument=["openai"])
    sdk = client(provider)
    with cascadeflow.run(max_steps=1) as session:
        with pytest.raises(openai.BadRequestError):  # the built-in provider wants a model
            sdk.responses.create(input="hi", prompt={"id": "pmpt_abc"})
        with pytest.raises(cascadeflow.StepLimitReached):
            sdk.responses.create(input="hi", prompt={"id": "pmpt_abc"}, model=openai.omit, stream=True)
    assert len(provider.requests) == 1
    first, stop = session.trace()
    assert (first["operation"], first["status"], first["error"]) == ("responses", "error", "BadRequestError")
    assert (stop["action"], stop["reason"]) == ("stop", "max_steps_reached")
    # its price is unknown until the response names the model: a budget cannot bound it
    with cascadeflow.run(budget=1.0), pytest.raises(cascadeflow.BudgetExceeded) as caught:
        sdk.responses.create(input="hi", prompt={"id": "pmpt_abc"})
    assert caught.value.reason == "price_unknown" and "names no model" in str(caught.value)
    assert len(provider.requests) == 1


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_background_response_is_charged_its_worst_case(provider: Any, mode: str) -> None:
    # `responses.create(background=True)` answers at once, queued, with no usage: the answer is
    # billed later, through calls cascadeflow never sees. It was recorded as an exact 0 USD, so
    # background calls ran past any budget; it is charged its reservation, marked estimated
    queued = {"id": "resp_bg", "object": "response", "created_at": 1, "model": "gpt-4o-mini",
              "status": "queued", "background": True, "output": [], "usage": None, "error": None,
              "parallel_tool_calls": True, "tool_choice": "auto", "tools": []}
    provider.inject(body=json.dumps(queued), times=1)
    cascadeflow.init(mode=mode)
    with cascadeflow.run(budget=1.0) as session:
        response = client(provider).responses.create(model="gpt-4o-mini", input="an essay",
                                                     background=True)
    assert response.status == "queued"
    [entry] = session.trace()
    assert entry["usage_estimated"] is True and entry["cost"] > 0
    assert session.summary()["cost_total"] == entry["cost"]
