"""The policy engine alone: pure decisions from (request, session chain, config), no client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cascadeflow import config as cfg
from cascadeflow.config import RunLimits
from cascadeflow.latency import FORGET_AFTER_S, LatencyStats
from cascadeflow.policy import Engine
from cascadeflow.policy.decision import ALLOW
from cascadeflow.request import Request
from cascadeflow.session import Session

POOL = """
[models."openai/gpt-4o"]
quality = 0.92
latency_ms = 900
tags = ["gdpr"]

[models."openai/gpt-4o-mini"]
quality = 0.78
latency_ms = 450
tags = ["gdpr"]

[models."anthropic/claude-3-5-haiku-20241022"]
quality = 0.7
latency_ms = 300

[models."openai/text-embedding-3-small"]
tags = ["embedding", "gdpr"]

[compliance.openai_only]
models = ["openai/*"]
tools_deny = ["refund"]
"""


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    path = tmp_path / "pool.toml"
    path.write_text(POOL)
    return Engine(cfg.resolve({"config": str(path), "mode": "enforce"}, environ={}))


def chain(*limits: dict[str, Any]) -> tuple[Session, ...]:
    """Sessions nested outermost first; returns the innermost's chain."""
    parent: Session | None = None
    for values in limits:
        session = Session(RunLimits(**values))
        session.attach(parent)
        parent = session
    assert parent is not None
    return parent.chain


def chat(model: str = "openai/gpt-4o", content: str = "hello", client: str = "litellm",
         **kwargs: Any) -> Request:
    call = {"model": model, "messages": [{"role": "user", "content": content}], **kwargs}
    reach = ("openai",) if client == "openai" else None
    provider = "openai" if client == "openai" else None
    return Request("chat", client, model, call, provider=provider, reachable=reach)


def actions(decisions: list[Any]) -> list[tuple[str, str]]:
    return [(d.action, d.reason) for d in decisions]


def test_allow_without_limits(engine: Engine) -> None:
    assert actions(engine.decide(chat(), chain({}))) == [("allow", "ok")]


def test_max_steps(engine: Engine) -> None:
    c = chain({"max_steps": 2})
    c[0].steps = 2
    [d] = engine.decide(chat(), c)
    assert (d.action, d.reason) == ("stop", "max_steps_reached")


def test_budget_reserves_worst_case_without_tokenizing(engine: Engine) -> None:
    [d] = engine.decide(chat(max_tokens=100), chain({"budget": 1.0}))
    assert (d.action, d.reason) == ("allow", "ok")
    # upper bound: UTF-8 bytes + chat overhead at the input price, plus max_tokens at the output price
    assert d.reservation == pytest.approx((5 + 6) * 2.5e-6 + 100 * 1e-5)


def test_budget_clamps_max_tokens(engine: Engine) -> None:
    [d] = engine.decide(chat(max_tokens=100_000), chain({"budget": 0.01}))
    assert (d.action, d.reason) == ("allow", "max_tokens_clamped")
    assert d.max_tokens is not None and 16 <= d.max_tokens < 1000
    assert d.reservation <= 0.01


def test_budget_clamps_when_max_tokens_missing_and_answer_unbounded(engine: Engine) -> None:
    [d] = engine.decide(chat(), chain({"budget": 0.05}))
    assert d.reason == "max_tokens_clamped"  # gpt-4o may answer 16384 tokens: $0.16 > $0.05


def test_budget_stops_when_no_answer_fits(engine: Engine) -> None:
    [d] = engine.decide(chat(max_tokens=10), chain({"budget": 0.00001}))
    assert (d.action, d.reason) == ("stop", "budget_exceeded")


def test_tightest_budget_in_the_chain_decides(engine: Engine) -> None:
    c = chain({"budget": 0.00001}, {"budget": 100.0})
    [d] = engine.decide(chat(max_tokens=10), c)
    assert d.reason == "budget_exceeded"


def test_budget_pressure_switches_to_a_cheaper_model(engine: Engine) -> None:
    c = chain({"budget": 1.0})
    c[0].spent = 0.85
    [d] = engine.decide(chat(max_tokens=50), c)
    assert (d.action, d.reason) == ("switch_model", "budget_pressure")
    assert d.target_model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022")


def test_price_unknown_stops_under_a_budget_by_default(engine: Engine) -> None:
    [d] = engine.decide(chat("openai/private-model"), chain({"budget": 1.0}))
    assert (d.action, d.reason, d.price_known) == ("stop", "price_unknown", False)
    assert "unknown_price" in d.message


def test_price_unknown_is_flagged_when_allowed(tmp_path: Path) -> None:
    allowing = Engine(cfg.resolve({"mode": "enforce", "unknown_price": "allow"}, environ={}, cwd=tmp_path))
    [d] = allowing.decide(chat("openai/private-model"), chain({"budget": 1.0}))
    assert (d.action, d.reason, d.price_known) == ("allow", "price_unknown", False)


TOOLS = [{"type": "function", "function": {"name": "lookup"}},
         {"type": "function", "function": {"name": "refund"}}]


def test_tool_cap_denies_every_tool(engine: Engine) -> None:
    c = chain({"max_tool_calls": 2})
    c[0].tool_calls = 2
    [d] = engine.decide(chat(tools=TOOLS), c)
    assert (d.action, d.reason, d.tools_denied) == ("deny_tool", "max_tool_calls_reached",
                                                    ("lookup", "refund"))


def test_tool_lists_deny_named_tools(engine: Engine) -> None:
    [d] = engine.decide(chat(tools=TOOLS), chain({"tools_deny": ("refund",)}))
    assert (d.reason, d.tools_denied) == ("tool_not_allowed", ("refund",))
    [d] = engine.decide(chat(tools=TOOLS), chain({"tools_allow": ("look*",)}))
    assert d.tools_denied == ("refund",)
    [d] = engine.decide(chat(tools=TOOLS), chain({"compliance": "openai_only"}))
    assert d.tools_denied == ("refund",)


def test_tool_execution_rules(engine: Engine) -> None:
    def run_tool(name: str, irreversible: bool = False, approved: bool | None = None) -> Request:
        kwargs: dict[str, Any] = {"args": (), "kwargs": {}}
        if approved is not None:
            kwargs["approved"] = approved
        return Request("tool", "tool", name, kwargs, tool=name, irreversible=irreversible)

    c = chain({"max_tool_calls": 1})
    assert engine.decide(run_tool("lookup"), c)[0].action == "allow"
    c[0].tool_executions = 1
    assert engine.decide(run_tool("lookup"), c)[0].reason == "max_tool_calls_reached"
    assert engine.decide(run_tool("refund", irreversible=True), chain({}))[0].reason == \
        "tool_requires_approval"
    assert engine.decide(run_tool("refund", True, approved=True), chain({}))[0].action == "allow"


def test_compliance_switches_to_the_best_allowed_model(engine: Engine) -> None:
    [d] = engine.decide(chat("anthropic/claude-3-5-haiku-20241022", max_tokens=10),
                        chain({"compliance": "gdpr"}))
    assert (d.action, d.reason) == ("switch_model", "compliance_model_not_allowed")
    assert d.target_model == "openai/gpt-4o"  # highest quality among models tagged gdpr


def test_compliance_allows_tagged_and_globbed_models(engine: Engine) -> None:
    assert engine.decide(chat("openai/gpt-4o-mini", max_tokens=5), chain({"compliance": "gdpr"}))[0] \
        .action == "allow"
    assert engine.decide(chat("ollama/llama3", max_tokens=5), chain({"compliance": "hipaa"}))[0] \
        .action == "allow"


def test_compliance_stops_when_nothing_is_allowed(engine: Engine) -> None:
    [d] = engine.decide(chat("openai/gpt-4o", max_tokens=5), chain({"compliance": "hipaa"}))
    assert (d.action, d.reason) == ("stop", "compliance_no_allowed_model")


def test_every_profile_in_the_chain_applies(engine: Engine) -> None:
    [d] = engine.decide(chat("anthropic/claude-3-5-haiku-20241022", max_tokens=5),
                        chain({"compliance": "openai_only"}, {"compliance": "gdpr"}))
    assert d.action == "switch_model" and d.target_model is not None
    assert d.target_model.startswith("openai/")


def test_switch_never_leaves_the_sdk_clients_provider(engine: Engine) -> None:
    request = chat("claude-3-5-haiku-20241022", client="openai", max_tokens=5)
    request.provider = "anthropic"
    request.reachable = ("anthropic",)
    [d] = engine.decide(request, chain({"compliance": "gdpr"}))
    assert (d.action, d.reason) == ("stop", "compliance_no_allowed_model")


def test_kpi_weights_switch_past_the_hysteresis(engine: Engine) -> None:
    [d] = engine.decide(chat("openai/gpt-4o", max_tokens=5), chain({"kpi_weights": {"cost": 1.0}}))
    assert (d.action, d.reason) == ("switch_model", "kpi_better_model")
    assert d.target_model == "anthropic/claude-3-5-haiku-20241022" or d.target_model == \
        "openai/gpt-4o-mini"
    # quality-first weights keep the best model
    assert engine.decide(chat("openai/gpt-4o", max_tokens=5),
                         chain({"kpi_weights": {"quality": 1.0}}))[0].action == "allow"


def test_kpi_hysteresis_prevents_small_switches(tmp_path: Path) -> None:
    path = tmp_path / "pool.toml"
    path.write_text('[models."openai/gpt-4o-mini"]\nquality = 0.78\n[models."openai/gpt-4o"]\n'
                    'quality = 0.80\n')
    engine = Engine(cfg.resolve({"config": str(path), "kpi_hysteresis": 0.5}, environ={}))
    assert engine.decide(chat("openai/gpt-4o-mini", max_tokens=5),
                         chain({"kpi_weights": {"quality": 1.0}}))[0].action == "allow"


def test_innermost_kpi_weights_win(engine: Engine) -> None:
    c = chain({"kpi_weights": {"cost": 1.0}}, {"kpi_weights": {"quality": 1.0}})
    assert engine.decide(chat("openai/gpt-4o", max_tokens=5), c)[0].action == "allow"


def test_latency_target_switches_to_a_faster_model(engine: Engine) -> None:
    for _ in range(5):
        engine.latency.observe("openai/gpt-4o", 2500.0)
    [d] = engine.decide(chat("openai/gpt-4o", max_tokens=5), chain({"max_latency_ms": 1000}))
    assert (d.action, d.reason) == ("switch_model", "latency_target_exceeded")
    assert d.target_model in ("openai/gpt-4o-mini", "anthropic/claude-3-5-haiku-20241022")


def test_embeddings_switch_only_between_embedding_models(engine: Engine) -> None:
    request = Request("embeddings", "litellm", "cohere/embed-english-v3.0", {"input": "x"})
    [d] = engine.decide(request, chain({"compliance": "gdpr"}))
    assert d.target_model == "openai/text-embedding-3-small"


def test_several_decisions_on_one_step(engine: Engine) -> None:
    c = chain({"max_tool_calls": 0, "budget": 0.01})
    decisions = engine.decide(chat("openai/gpt-4o", tools=TOOLS), c)
    assert actions(decisions) == [("deny_tool", "max_tool_calls_reached"), ("allow", "max_tokens_clamped")]
    assert decisions[0].reservation > 0 and decisions[0].max_tokens == decisions[1].max_tokens


def test_a_slow_sample_is_forgotten_so_a_model_avoided_for_it_is_tried_again(tmp_path: Path) -> None:
    # A model that decisions route away from is never called, so never measured again: one
    # cold call kept it out of latency switches (as a candidate) or switched away from it (as
    # the model asked for) for the life of the process. Samples not refreshed for
    # FORGET_AFTER_S are forgotten, and the prior counts again.
    now = [0.0]
    path = tmp_path / "pool.toml"
    path.write_text(POOL)
    stats = LatencyStats(clock=lambda: now[0])
    engine = Engine(cfg.resolve({"config": str(path), "mode": "enforce"}, environ={}), latency=stats)
    limits = chain({"max_latency_ms": 600})
    stats.observe("openai/gpt-4o-mini", 5000.0)  # the candidate's cold first call
    stats.observe("anthropic/claude-3-5-haiku-20241022", 5000.0)
    stats.observe("openai/gpt-4o", 2500.0)  # the model asked for: over the target
    assert engine.decide(chat(max_tokens=5), limits) == [ALLOW]  # nothing known to be faster
    now[0] = FORGET_AFTER_S / 2
    stats.observe("openai/gpt-4o", 2500.0)  # still called, still slow: kept
    assert engine.decide(chat(max_tokens=5), limits) == [ALLOW]
    now[0] = FORGET_AFTER_S + 1
    stats.observe("openai/gpt-4o", 2500.0)  # the candidates' cold samples are forgotten
    [d] = engine.decide(chat(max_tokens=5), limits)
    assert (d.action, d.reason) == ("switch_model", "latency_target_exceeded")
    assert d.target_model == "openai/gpt-4o-mini"  # its prior (450 ms) counts again
    for step in range(1, 4):  # every call now goes to gpt-4o-mini, and it is fast
        now[0] = FORGET_AFTER_S + 1 + step * FORGET_AFTER_S / 2
        stats.observe("openai/gpt-4o-mini", 100.0)
    # gpt-4o was not called for FORGET_AFTER_S: its slow sample is forgotten and it is asked
    # for again (its prior, 900 ms, is over the target: a switch, as at startup)
    assert stats.expected("openai/gpt-4o") is None
    assert stats.expected("openai/gpt-4o-mini") == 100.0
