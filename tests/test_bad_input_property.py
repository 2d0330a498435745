"""Any value for any setting either works or raises `ConfigError`: never another exception.

Hypothesis draws values of every kind (numbers including nan and inf, strings, bytes, lists,
dicts, None, objects) for each `init()`, `run()`, `@agent` and `@tool` argument, each
environment variable and each config file key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cascadeflow
from cascadeflow.config import ENV_VARS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.binary(max_size=8), st.just(object()))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=8)
INIT_ARGS = ["mode", "budget", "max_steps", "max_tool_calls", "max_latency_ms", "compliance",
             "kpi_weights", "capture_content", "instrument", "approver", "ambient_max_entries",
             "budget_pressure", "budget_alert", "kpi_hysteresis", "otel", "alerts", "guardrails",
             "unknown_price", "budget_wait_s", "tools_exempt", "run_max_entries", "config",
             "otel_client_spans", "guardrails_file", "on_usage", "tracer_provider", "meter_provider"]
RUN_ARGS = ["budget", "max_tool_calls", "max_steps", "max_latency_ms", "compliance", "kpi_weights",
            "guardrails", "tools_allow", "tools_deny", "user", "agent", "project", "metadata"]
AGENT_ARGS = ["budget", "max_tool_calls", "max_steps", "max_latency_ms", "compliance", "kpi_weights",
              "guardrails", "tools_allow", "tools_deny"]
FILE_KEYS = ["mode", "capture_content", "otel", "instrument", "budget_pressure", "budget_alert",
             "kpi_hysteresis", "ambient_max_entries", "unknown_price", "budget_wait_s", "tools_exempt",
             "run_max_entries", "run", "models", "compliance", "agents", "cascades", "otel_client_spans",
             "guardrails_file", "version", "ledger", "budgets", "limits"]
# FUZZ_EXAMPLES=1000 for a deeper search; the suite's default keeps it to seconds
PROPERTY = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
                    suppress_health_check=list(HealthCheck))


def _only_config_errors(call: Any) -> None:
    try:
        call()
    except cascadeflow.ConfigError:
        pass
    finally:
        cascadeflow.shutdown()


@PROPERTY
@given(st.sampled_from(INIT_ARGS), VALUES)
def test_init_arguments(name: str, value: Any) -> None:
    _only_config_errors(lambda: cascadeflow.init(**{name: value}))


@PROPERTY
@given(st.sampled_from(RUN_ARGS), VALUES)
def test_run_arguments(name: str, value: Any) -> None:
    cascadeflow.init(mode="observe")

    def call() -> None:
        with cascadeflow.run(**{name: value}):
            pass

    _only_config_errors(call)


def _decorate_and_call(decorator: Any) -> None:
    """Decorate a function (bad arguments fail here), then call it under a runtime."""
    def call() -> None:
        fuzzed = decorator(lambda: 1)
        cascadeflow.init(mode="observe")
        fuzzed()

    _only_config_errors(call)


@PROPERTY
@given(st.sampled_from(AGENT_ARGS), VALUES)
def test_agent_arguments(name: str, value: Any) -> None:
    _decorate_and_call(lambda fn: cascadeflow.agent("fuzzed", **{name: value})(fn))


@PROPERTY
@given(st.sampled_from(["name", "irreversible"]), VALUES)
def test_tool_arguments(name: str, value: Any) -> None:
    _decorate_and_call(lambda fn: cascadeflow.tool(**{name: value})(fn))


@PROPERTY
@given(st.sampled_from(sorted(ENV_VARS.values())), st.text(max_size=30).filter(lambda t: "\x00" not in t))
def test_environment_variables(var: str, raw: str) -> None:
    old = os.environ.get(var)
    os.environ[var] = raw
    try:
        _only_config_errors(lambda: cascadeflow.init())
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


@PROPERTY
@given(st.sampled_from(FILE_KEYS), VALUES)
def test_config_file_keys(tmp_path_factory: Any, key: str, value: Any) -> None:
    path: Path = tmp_path_factory.mktemp("cfg") / "cascadeflow.json"
    try:
        path.write_text(json.dumps({key: value}, default=str))
    except ValueError:
        return  # not representable as JSON
    _only_config_errors(lambda: cascadeflow.init(config=path))
