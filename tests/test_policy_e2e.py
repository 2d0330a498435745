"""Policies end to end: through litellm and the openai SDK on the built-in provider, both modes.

Each test checks the trace and what the provider actually received.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest

from tests.conftest import chat_kwargs

KEY = "sk-test-not-a-real-key-0000"
POOL = """
[models."openai/gpt-4o"]
quality = 0.92
tags = ["gdpr"]
[models."openai/gpt-4o-mini"]
quality = 0.78
tags = ["gdpr"]
[models."anthropic/claude-3-5-haiku-20241022"]
quality = 0.7
"""
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {
    "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}]


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    path = tmp_path / "cascadeflow.toml"
    path.write_text(POOL)
    return path


def sent(provider: Any) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in provider.requests]


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_budget_stop(provider: Any, mode: str) -> None:
    cascadeflow.init(mode=mode)
    with cascadeflow.run(budget=0.000001) as session:
        if mode == "enforce":
            with pytest.raises(cascadeflow.BudgetExceeded) as info:
                litellm.completion(**chat_kwargs(provider), max_tokens=20)
            assert info.value.reason == "budget_exceeded"
            assert info.value.entry["applied"] is True
        else:
            litellm.completion(**chat_kwargs(provider), max_tokens=20)
    [entry] = session.trace()
    assert (entry["action"], entry["reason"], entry["applied"]) == ("stop", "budget_exceeded",
                                                                    mode == "enforce")
    assert len(provider.requests) == (0 if mode == "enforce" else 1)
    assert session.summary()["stopped"] is (mode == "enforce")


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_clamp_max_tokens(provider: Any, mode: str) -> None:
    cascadeflow.init(mode=mode)
    with cascadeflow.run(budget=0.0005) as session:
        litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o"))
    [entry] = session.trace()
    assert entry["reason"] == "max_tokens_clamped" and entry["applied"] is (mode == "enforce")
    body = sent(provider)[0]
    if mode == "enforce":
        assert body["max_tokens"] == entry["max_tokens"] <= 50
    else:
        assert "max_tokens" not in body


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_compliance_switch_litellm(provider: Any, pool: Path, mode: str) -> None:
    cascadeflow.init(mode=mode)
    with cascadeflow.run(compliance="gdpr") as session:
        litellm.completion(**chat_kwargs(provider, model="openai/gpt-3.5-turbo"), max_tokens=10)
    [entry] = session.trace()
    assert (entry["action"], entry["reason"]) == ("switch_model", "compliance_model_not_allowed")
    assert entry["requested_model"] == "openai/gpt-3.5-turbo"
    assert entry["target_model"] == "openai/gpt-4o"
    assert entry["applied"] is (mode == "enforce")
    expected = "gpt-4o" if mode == "enforce" else "gpt-3.5-turbo"
    assert sent(provider)[0]["model"] == expected
    assert entry["model"] == ("openai/gpt-4o" if mode == "enforce" else "openai/gpt-3.5-turbo")


def test_compliance_switch_openai_sdk_sends_a_bare_model_name(provider: Any, pool: Path) -> None:
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(compliance="gdpr") as session:
        sdk.chat.completions.create(model="gpt-3.5-turbo", max_tokens=10,
                                    messages=[{"role": "user", "content": "x"}])
    assert sent(provider)[0]["model"] == "gpt-4o"
    assert session.trace()[0]["target_model"] == "openai/gpt-4o"


def test_a_switch_through_the_openai_sdk_records_the_model_it_sent(provider: Any, pool: Path) -> None:
    """The openai SDK is sent a switch's target without litellm's `openai/` prefix, but the
    trace recorded the prefixed name as the model called: the same model, called through one
    client, was two models in `summary()["models"]`, the ledger's spend by model and its spans
    (`gen_ai.request.model="openai/gpt-4o"`), and `cascadeflow ledger steps --model gpt-4o`
    missed the switched calls. The model called is now the name sent."""
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run() as session:
        sdk.chat.completions.create(model="gpt-4o", max_tokens=10,
                                    messages=[{"role": "user", "content": "x"}])
        with cascadeflow.run(compliance="gdpr"):
            sdk.chat.completions.create(model="gpt-3.5-turbo", max_tokens=10,
                                        messages=[{"role": "user", "content": "x"}])
    assert [body["model"] for body in sent(provider)] == ["gpt-4o", "gpt-4o"]
    direct, switched = session.trace()
    assert (switched["requested_model"], switched["target_model"]) == ("gpt-3.5-turbo", "openai/gpt-4o")
    assert switched["model"] == direct["model"] == "gpt-4o"
    assert switched["provider"] == "openai" and switched["cost"] == direct["cost"] > 0
    assert list(session.summary()["models"]) == ["gpt-4o"]
    assert session.summary()["models"]["gpt-4o"]["calls"] == 2


def test_compliance_stop_openai_sdk(provider: Any, pool: Path) -> None:
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(compliance="hipaa"), pytest.raises(cascadeflow.ComplianceViolation) as info:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.reason == "compliance_no_allowed_model"
    assert provider.requests == []


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_deny_tool_strips_tools_and_tool_choice(provider: Any, mode: str) -> None:
    cascadeflow.init(mode=mode)
    with cascadeflow.run(max_tool_calls=1) as session:
        first = litellm.completion(**chat_kwargs(provider), tools=TOOLS)
        assert first.choices[0].message.tool_calls
        litellm.completion(**chat_kwargs(provider), tools=TOOLS,
                           tool_choice={"type": "function", "function": {"name": "lookup"}})
    _, second = session.trace()
    assert (second["action"], second["reason"]) == ("deny_tool", "max_tool_calls_reached")
    assert second["tools_denied"] == ["lookup"] and second["applied"] is (mode == "enforce")
    body = sent(provider)[1]
    if mode == "enforce":
        assert "tools" not in body and "tool_choice" not in body
    else:
        assert body["tools"] and body["tool_choice"]


def test_deny_listed_tool_keeps_the_others(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    tools = [*TOOLS, {"type": "function", "function": {"name": "refund", "parameters": {}}}]
    with cascadeflow.run(tools_deny=["refund"]):
        litellm.completion(**chat_kwargs(provider), tools=tools)
    assert [t["function"]["name"] for t in sent(provider)[0]["tools"]] == ["lookup"]


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_max_steps(provider: Any, mode: str) -> None:
    cascadeflow.init(mode=mode)
    with cascadeflow.run(max_steps=2) as session:
        for _ in range(4):
            try:
                litellm.completion(**chat_kwargs(provider))
            except cascadeflow.StepLimitReached:
                break
    reasons = [e["reason"] for e in session.trace()]
    if mode == "enforce":
        assert reasons == ["ok", "ok", "max_steps_reached"] and len(provider.requests) == 2
    else:
        assert reasons == ["ok", "ok", "max_steps_reached", "max_steps_reached"]
        assert len(provider.requests) == 4


def test_kpi_switch_through_the_sdk(provider: Any, pool: Path) -> None:
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    with cascadeflow.run(kpi_weights={"cost": 0.9, "quality": 0.1}) as session:
        sdk.chat.completions.create(model="gpt-4o", max_tokens=10,
                                    messages=[{"role": "user", "content": "x"}])
    [entry] = session.trace()
    assert entry["reason"] == "kpi_better_model"
    assert entry["target_model"] == "openai/gpt-4o-mini"  # the anthropic model is unreachable here
    assert sent(provider)[0]["model"] == "gpt-4o-mini"


WIDE = """
[models."openai/o1"]
quality = 0.99
[models."openai/gpt-4o"]
quality = 0.92
[models."openai/gpt-4o-mini"]
quality = 0.78
[models."openai/gpt-4.1-nano"]
quality = 0.6
"""


def test_a_better_model_the_budget_cannot_pay_for_is_no_stop(provider: Any, tmp_path: Path) -> None:
    """KPI weights prefer o1; its worst case does not fit the budget, the model asked for does:
    the call goes to the model asked for (it was stopped with a message about o1)."""
    (tmp_path / "cascadeflow.toml").write_text(WIDE)
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.005, kpi_weights={"quality": 1.0}) as session:
        litellm.completion(**chat_kwargs(provider, "word " * 4000), max_tokens=500)
    [entry] = session.trace()
    assert (entry["action"], entry["model"]) == ("allow", "openai/gpt-4o-mini")
    assert sent(provider)[0]["model"] == "gpt-4o-mini"


def test_a_switch_under_budget_pressure_never_costs_more_than_the_request(provider: Any,
                                                                          tmp_path: Path) -> None:
    (tmp_path / "cascadeflow.toml").write_text(WIDE)
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.01) as outer:
        litellm.completion(**chat_kwargs(provider, "word " * 3300, model="openai/gpt-4o"), max_tokens=10)
        assert outer.summary()["cost_total"] > 0.008  # settled: under pressure from here
        with cascadeflow.run(kpi_weights={"quality": 1.0}):
            litellm.completion(**chat_kwargs(provider), max_tokens=50)
    last = outer.trace()[-1]
    assert (last["reason"], last["target_model"]) == ("budget_pressure", "openai/gpt-4.1-nano")
    assert sent(provider)[-1]["model"] == "gpt-4.1-nano"


def test_config_defaults_apply_to_top_level_runs_only(provider: Any) -> None:
    """A nested run inherits its parents' limits: the defaults of `init()` again would override
    what the outer run set (here a step cap of 1 under an outer cap of 100)."""
    cascadeflow.init(mode="enforce", budget=0.00002, max_steps=1)
    with cascadeflow.run(budget=5.0, max_steps=100) as outer:
        assert (outer.limits.budget, outer.limits.max_steps) == (5.0, 100)
        with cascadeflow.run(user="u") as inner:
            litellm.completion(**chat_kwargs(provider), max_tokens=20)
            litellm.completion(**chat_kwargs(provider), max_tokens=20)
    assert (inner.limits.budget, inner.limits.max_steps) == (None, None)
    assert len(provider.requests) == 2
    with cascadeflow.run() as top:  # a top-level run still gets them
        assert (top.limits.budget, top.limits.max_steps) == (0.00002, 1)


def test_latency_target(provider: Any, pool: Path) -> None:
    # a switch needs a candidate known to be fast enough: observed, or a prior from the config
    pool.write_text(POOL.replace('quality = 0.78', 'quality = 0.78\nlatency_ms = 40'))
    cascadeflow.init(mode="enforce")
    provider.inject(model="gpt-4o", latency_ms=150)
    with cascadeflow.run(max_latency_ms=100) as session:
        litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o"), max_tokens=10)
        litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o"), max_tokens=10)
    first, second = session.trace()
    assert first["action"] == "allow" and first["latency_ms"] >= 150
    assert (second["action"], second["reason"]) == ("switch_model", "latency_target_exceeded")
    assert second["target_model"] == "openai/gpt-4o-mini"
    assert sent(provider)[1]["model"] == "gpt-4o-mini"


def test_agent_policy_nests_inside_run_policy(provider: Any) -> None:
    cascadeflow.init(mode="enforce")

    @cascadeflow.agent(name="triage", budget=0.5)
    def triage() -> None:
        litellm.completion(**chat_kwargs(provider), max_tokens=20)

    with cascadeflow.run(budget=0.000001) as outer, pytest.raises(cascadeflow.BudgetExceeded):
        triage()  # the agent's own budget is generous; the run's is not
    assert outer.trace()[0]["agent"] == "triage"
    assert provider.requests == []



@pytest.mark.parametrize("repeat", range(20))
def test_concurrent_calls_never_overrun_the_budget(provider: Any, repeat: int) -> None:
    """100 concurrent calls (threads on even repeats, asyncio tasks on odd) in one session."""
    cascadeflow.init(mode="enforce")
    budget = 0.0006
    outcomes: list[str] = []
    session = cascadeflow.run(budget=budget)

    def call() -> None:
        try:
            litellm.completion(**chat_kwargs(provider, "count me"), max_tokens=40)
            outcomes.append("ok")
        except cascadeflow.BudgetExceeded:
            outcomes.append("stopped")

    async def acall() -> None:
        try:
            await litellm.acompletion(**chat_kwargs(provider, "count me"), max_tokens=40)
            outcomes.append("ok")
        except cascadeflow.BudgetExceeded:
            outcomes.append("stopped")

    with session:
        if repeat % 2 == 0:
            import contextvars
            threads = [threading.Thread(target=contextvars.copy_context().run, args=(call,))
                       for _ in range(100)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            async def main() -> None:
                await asyncio.gather(*(acall() for _ in range(100)))
            asyncio.run(main())
    summary = session.summary()
    assert len(outcomes) == 100
    # one request per call that was let through; on a loaded machine a connection can drop and
    # the openai SDK under litellm sends the same call again, marked x-stainless-retry-count > 0
    calls = [r for r in provider.requests if r.headers.get("x-stainless-retry-count", "0") == "0"]
    assert outcomes.count("ok") == len(calls) > 0
    assert "stopped" in outcomes
    assert summary["cost_total"] <= budget
    assert session.reserved == pytest.approx(0.0, abs=1e-12)
    # the provider's own accounting agrees: what it was asked to serve fits the budget
    served = [e for e in session.trace() if e["status"] == "ok"]
    assert sum(e["cost"] for e in served) == pytest.approx(summary["cost_total"])


def test_observe_shows_exactly_where_enforce_stops(provider: Any) -> None:
    def sequence() -> list[dict[str, Any]]:
        with cascadeflow.run(budget=0.0002) as session:
            for i in range(30):
                try:
                    litellm.completion(**chat_kwargs(provider, f"step {i}"), max_tokens=40)
                except cascadeflow.BudgetExceeded:
                    break
        return session.trace()

    cascadeflow.init(mode="observe")
    observed = sequence()
    would_stop = next(e["step"] for e in observed if e["action"] == "stop")
    cascadeflow.init(mode="enforce")
    enforced = sequence()
    assert enforced[-1]["action"] == "stop" and enforced[-1]["applied"] is True
    assert enforced[-1]["step"] == would_stop


def _tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}}


def test_tool_cap_keeps_the_frameworks_output_tools_and_handoffs(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    tools = [_tool("lookup_order"), _tool("final_result"), _tool("transfer_to_billing")]
    with cascadeflow.run(max_tool_calls=1) as session:
        litellm.completion(**chat_kwargs(provider, "find order 42"), tools=tools)  # calls lookup_order
        litellm.completion(**chat_kwargs(provider, "find order 43"), tools=tools)
    first, second = provider.bodies("/chat/completions")
    assert [t["function"]["name"] for t in first["tools"]] == ["lookup_order", "final_result",
                                                              "transfer_to_billing"]
    assert [t["function"]["name"] for t in second["tools"]] == ["final_result", "transfer_to_billing"]
    denied = [e for e in session.trace() if e["action"] == "deny_tool"]
    assert denied and denied[0]["reason"] == "max_tool_calls_reached"
    # the second call's tool call went to final_result: exempt, so it is not counted
    assert session.summary()["tool_calls_requested"] == 1


def test_tools_exempt_is_configurable(provider: Any) -> None:
    cascadeflow.init(mode="enforce", tools_exempt=[])
    tools = [_tool("lookup_order"), _tool("final_result")]
    with cascadeflow.run(max_tool_calls=1):
        litellm.completion(**chat_kwargs(provider, "find order 42"), tools=tools)
        litellm.completion(**chat_kwargs(provider, "find order 43"), tools=tools)
    assert "tools" not in provider.bodies("/chat/completions")[1]


def test_observe_judges_the_steps_after_a_would_be_denial_on_what_ran() -> None:
    # documented in docs/concepts.md ("Modes"): the rehearsal is exact up to the first decision
    # that would have changed something; a tool enforce would have denied ran in observe, and
    # counts toward max_tool_calls there
    @cascadeflow.tool(name="other")
    def other() -> str:
        return "ran"

    @cascadeflow.tool(name="lookup")
    def lookup() -> str:
        return "ran"

    def sequence() -> list[tuple[str, str]]:
        with cascadeflow.run(max_tool_calls=1, tools_deny=["other"]) as session:
            for fn in (other, lookup):
                with contextlib.suppress(cascadeflow.ToolDenied):
                    fn()
        assert session.summary()["tool_executions"] == (2 if session.mode == "observe" else 1)
        return [(e["action"], e["reason"]) for e in session.trace()]

    cascadeflow.init(mode="observe")
    observed = sequence()
    cascadeflow.init(mode="enforce")
    enforced = sequence()
    assert observed[0] == enforced[0] == ("deny_tool", "tool_not_allowed")
    assert enforced[1] == ("allow", "ok")
    assert observed[1] == ("deny_tool", "max_tool_calls_reached")


def _stop_in_a_worker_process(url: str) -> str:
    """Run in a process pool: an agent step that enforce stops there."""
    cascadeflow.init(mode="enforce")
    client = openai.OpenAI(base_url=url, api_key=KEY, max_retries=0)
    with cascadeflow.run(max_steps=1):
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    return "not stopped"


def test_errors_survive_pickling_to_another_process(provider: Any) -> None:
    """Every cascadeflow error took its own arguments in `__init__` (a stop's keyword-only
    `reason`, `run_id`, `step`), so pickle and `copy` could not make it again: a stop raised in a
    `ProcessPoolExecutor` worker (or a Celery or multiprocessing task) reached the parent as
    `BrokenProcessPool` ("a result has failed to un-pickle"), and `copy.copy(stop)` raised
    TypeError. They now come back as the same error, with their attributes."""
    import copy
    import multiprocessing
    import pickle
    from concurrent.futures import ProcessPoolExecutor

    cascadeflow.init(mode="enforce")
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    stops: list[BaseException] = []
    for limits in ({"max_steps": 1}, {"max_tool_calls": 0}):
        with cascadeflow.run(**limits), pytest.raises(cascadeflow.PolicyStop) as info:
            cascadeflow.tool(name="fetch")(lambda: None)()
            client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        stops.append(info.value)
    with pytest.raises(cascadeflow.ConfigError) as bad:
        cascadeflow.run(budget=-1)
    failed = cascadeflow.AllProvidersFailed("every tier failed", [{"model": "openai/gpt-4o"}])
    for error in (*stops, bad.value, failed):
        for again in (pickle.loads(pickle.dumps(error)), copy.copy(error), copy.deepcopy(error)):
            assert type(again) is type(error) and str(again) == str(error)
            assert vars(again) == vars(error)
    assert isinstance(stops[0], cascadeflow.StepLimitReached)
    assert isinstance(stops[1], cascadeflow.ToolDenied)

    with (ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool,
          pytest.raises(cascadeflow.StepLimitReached) as remote):
        pool.submit(_stop_in_a_worker_process, provider.url).result(timeout=120)
    assert (remote.value.reason, remote.value.step) == ("max_steps_reached", 2)
    assert remote.value.entry["status"] == "stopped"


def test_a_stop_after_the_send_carries_its_own_entry(provider: Any, tmp_path: Path) -> None:
    """A stop carries its trace entry, but a guardrail block and a stream cut carried the step's
    `allow`/`ok` entry (an output block's still `pending`): `e.entry["reason"]` said `ok` where
    `e.reason` said `words_word`. Each now carries the entry of the decision that stopped it,
    as the trace has it."""
    policy = tmp_path / "guardrails.toml"
    policy.write_text('version = "t1"\n'
                      '[[profiles.egress.input]]\nname = "no_banana"\ndetector = "words"\n'
                      'words = ["banana"]\naction = "block"\n'
                      '[[profiles.egress.output]]\nname = "no_reply"\ndetector = "words"\n'
                      'words = ["Reply"]\naction = "block"\n')
    cascadeflow.init(mode="enforce", guardrails_file=str(policy))
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)

    def ask(content: str, **extra: Any) -> Any:
        return sdk.chat.completions.create(model="gpt-4o-mini",
                                           messages=[{"role": "user", "content": content}], **extra)

    calls = [lambda: ask("banana split"), lambda: ask("hello"), lambda: list(ask("hello", stream=True)),
             lambda: litellm.completion(**chat_kwargs(provider, "hello"))]
    for call in calls:
        with cascadeflow.run(guardrails="egress") as session, \
                pytest.raises(cascadeflow.GuardrailBlocked) as info:
            call()
        entry = info.value.entry
        assert (entry["action"], entry["reason"], entry["applied"]) == ("block", info.value.reason, True)
        assert entry["rule"] in ("no_banana", "no_reply") and entry["step"] == info.value.step
        mine = [e for e in session.trace() if e["action"] == "block"]
        assert mine == [entry], [{k: (v, mine[0].get(k)) for k, v in entry.items() if mine[0].get(k) != v}]

    provider.inject(ignore_max_tokens=True)
    with cascadeflow.run(budget=0.01) as session, pytest.raises(cascadeflow.BudgetExceeded) as cut:
        list(ask("hello", stream=True, max_tokens=3))
    entry = cut.value.entry
    assert (entry["action"], entry["reason"], entry["status"]) == ("stop", "budget_exceeded", "cut")
    assert entry in session.trace()


def test_a_cold_first_call_does_not_switch_away_from_the_model_for_good(
        provider: Any, pool: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One slow call of the model asked for switched every later call away from it: it was
    # never called again, so never measured again. Its sample is forgotten once it has not
    # been refreshed for FORGET_AFTER_S (0 here: at the next observation) and it is tried again.
    monkeypatch.setattr("cascadeflow.latency.FORGET_AFTER_S", 0.0)
    pool.write_text(POOL.replace('quality = 0.78', 'quality = 0.78\nlatency_ms = 40'))
    cascadeflow.init(mode="enforce")
    provider.inject(model="gpt-4o", latency_ms=150, times=1)  # the cold first call
    with cascadeflow.run(max_latency_ms=100) as session:
        for _ in range(3):
            litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o"), max_tokens=10)
    first, second, third = session.trace()
    assert first["action"] == "allow" and first["latency_ms"] >= 150
    assert (second["action"], second["reason"]) == ("switch_model", "latency_target_exceeded")
    assert (third["action"], third["model"]) == ("allow", "openai/gpt-4o")
    assert [body["model"] for body in sent(provider)] == ["gpt-4o", "gpt-4o-mini", "gpt-4o"]


def test_a_failing_model_is_not_taken_for_a_fast_one(provider: Any, pool: Path) -> None:
    # An error's latency was observed as the model's: a rate-limited gpt-4o-mini answering
    # 429 at once looked fastest, so the latency target switched every slow gpt-4o call to it,
    # and each of them failed (and its quick error kept it looking fast).
    cascadeflow.init(mode="enforce")
    provider.inject(model="gpt-4o-mini", status=429)
    provider.inject(model="gpt-4o", latency_ms=150)
    client = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "hello"}]
    with cascadeflow.run(max_latency_ms=100) as session:
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=5)
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=5)
    failed, slow, again = session.trace()
    assert failed["error"] == "RateLimitError" and slow["latency_ms"] >= 150
    assert (again["action"], again["model"], again["error"]) == ("allow", "gpt-4o", None)
    assert [body["model"] for body in sent(provider)] == ["gpt-4o-mini", "gpt-4o", "gpt-4o"]
