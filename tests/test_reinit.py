"""A later `init()` replaces the runtime, not what the process measured: the ambient session (its
totals, trace and run id), the latencies observed and the Responses ids settled survive it, and
the new settings apply from then on. Sessions tell which mode each entry ran in and which mode
is in force now."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from tests.conftest import KEY, chat_kwargs

POOL = """
[models."openai/gpt-4o"]
quality = 0.92
[models."openai/gpt-4o-mini"]
quality = 0.78
latency_ms = 40
"""


def test_a_second_identical_init_keeps_the_ambient_session(provider: Any) -> None:
    """A library and its host both calling `init()`: the second call forgot every call the
    process had made outside a run."""
    cascadeflow.init(mode="observe")
    litellm.completion(**chat_kwargs(provider))
    litellm.completion(**chat_kwargs(provider))
    ambient = cascadeflow.current_session()
    before = ambient.summary()
    assert before["steps"] == 2 and before["cost_total"] > 0

    cascadeflow.init(mode="observe")
    assert cascadeflow.current_session() is ambient
    after = ambient.summary()
    for key in ("run_id", "steps", "cost_total", "tokens_in", "tokens_out", "latency_total_ms",
                "models", "actions"):
        assert after[key] == before[key], key
    litellm.completion(**chat_kwargs(provider))
    assert ambient.summary()["steps"] == 3
    assert [e["step"] for e in ambient.trace()] == [1, 2, 3]


def test_the_ambient_session_takes_the_new_settings(provider: Any) -> None:
    """The totals stay; the mode and the trace window of the latest `init()` apply from then on."""
    cascadeflow.init(mode="observe", ambient_max_entries=10)
    for _ in range(3):
        litellm.completion(**chat_kwargs(provider))
    cascadeflow.init(mode="enforce", ambient_max_entries=2)
    litellm.completion(**chat_kwargs(provider))
    ambient = cascadeflow.current_session()
    summary = ambient.summary()
    assert summary["steps"] == 4
    assert summary["mode"] == "enforce"
    assert summary["modes"] == {"observe": 3, "enforce": 1}
    assert summary["trace_entries_dropped"] == 2
    assert [(e["step"], e["mode"]) for e in ambient.trace()] == [(3, "observe"), (4, "enforce")]


def test_latency_observed_before_a_reinit_still_decides(provider: Any, tmp_path: Path) -> None:
    """A config reload forgot the latencies the process had observed: a model known to miss the
    latency target was called again until it had been observed anew."""
    (tmp_path / "cascadeflow.toml").write_text(POOL)
    cascadeflow.init(mode="enforce")
    provider.inject(model="gpt-4o", latency_ms=150, times=1)
    litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o"), max_tokens=10)
    cascadeflow.init(mode="enforce")  # the reload
    with cascadeflow.run(max_latency_ms=100) as session:
        litellm.completion(**chat_kwargs(provider, model="openai/gpt-4o"), max_tokens=10)
    [entry] = session.trace()
    assert (entry["action"], entry["reason"]) == ("switch_model", "latency_target_exceeded")
    assert entry["model"] == "openai/gpt-4o-mini"


def test_a_response_settled_before_a_reinit_is_billed_again_after_it(provider: Any) -> None:
    """The ids of the Responses calls settled before a reload were forgotten: a continuation of
    one was admitted on its own text, under a budget its whole chain does not fit."""
    cascadeflow.init(mode="enforce")
    sdk = openai.OpenAI(base_url=provider.url, api_key=KEY, max_retries=0)
    first = sdk.responses.create(model="gpt-4o", input="word " * 3000, max_output_tokens=50)
    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=0.005) as session:
        sdk.responses.create(model="gpt-4o", input="and now?", max_output_tokens=50)  # fits alone
        with pytest.raises(cascadeflow.BudgetExceeded):
            sdk.responses.create(model="gpt-4o", input="and now?", previous_response_id=first.id,
                                 max_output_tokens=50)
    assert [e["reason"] for e in session.trace()] == ["ok", "budget_exceeded"]


def test_a_run_continued_after_a_reinit_says_its_modes(provider: Any) -> None:
    """A run opened in observe and continued after `init(mode="enforce")` had its later calls
    enforced while its summary still said `observe`."""
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider))
        assert session.summary()["mode"] == "observe"
        cascadeflow.init(mode="enforce")
        assert session.summary()["mode"] == "enforce"  # what its next call gets
        litellm.completion(**chat_kwargs(provider))
    assert [e["mode"] for e in session.trace()] == ["observe", "enforce"]
    summary = session.summary()
    assert (summary["mode"], summary["modes"]) == ("enforce", {"observe": 1, "enforce": 1})
    cascadeflow.init(mode="observe")
    assert session.summary()["mode"] == "enforce"  # a closed run keeps the mode it ended in


def test_a_call_in_flight_through_a_reinit_counts_in_the_ambient_session(provider: Any) -> None:
    """A call started before the reload and answered after it was settled into the ambient
    session the reload had thrown away."""
    cascadeflow.init(mode="observe")
    provider.inject(hold=True, times=1)
    in_flight = threading.Thread(target=lambda: litellm.completion(**chat_kwargs(provider)))
    in_flight.start()
    deadline = time.monotonic() + 20
    while not provider.requests:  # it waits for its answer
        assert time.monotonic() < deadline, "the call never reached the provider"
        time.sleep(0.01)
    cascadeflow.init(mode="enforce")
    provider.release()
    in_flight.join(20)
    assert not in_flight.is_alive()
    litellm.completion(**chat_kwargs(provider))
    trace = cascadeflow.current_session().trace()
    assert [(e["step"], e["mode"]) for e in trace] == [(1, "observe"), (2, "enforce")]
    assert all(e["cost"] > 0 for e in trace)


def test_shutdown_starts_the_ambient_session_afresh(provider: Any) -> None:
    """`shutdown()` ends cascadeflow in the process: a later `init()` starts from nothing."""
    cascadeflow.init(mode="observe")
    litellm.completion(**chat_kwargs(provider))
    before = cascadeflow.current_session()
    cascadeflow.shutdown()
    cascadeflow.init(mode="observe")
    after = cascadeflow.current_session()
    assert after is not before and after.summary()["steps"] == 0


class _Exploding(SpanProcessor):
    """A user's span processor with a bug."""

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        raise RuntimeError("processor bug")


def test_stats_count_telemetry_errors_across_a_reinit(provider: Any) -> None:
    """`stats()` counts for the whole process, but `telemetry_errors` went back to 0 at every
    `init()` (the other counts did not)."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(_Exploding())
    cascadeflow.init(mode="observe", tracer_provider=tracer_provider)
    litellm.completion(**chat_kwargs(provider))
    assert cascadeflow.flush(20)
    errors = cascadeflow.stats()["telemetry_errors"]
    assert errors >= 1
    cascadeflow.init(mode="observe", tracer_provider=tracer_provider)
    assert cascadeflow.stats()["telemetry_errors"] == errors
    cascadeflow.shutdown()
    assert cascadeflow.stats()["telemetry_errors"] == errors


@pytest.mark.parametrize("mode", ["observe", "enforce"])
def test_a_call_in_flight_through_a_reload_that_adds_a_profile(provider: Any, tmp_path: Path,
                                                              mode: str) -> None:
    """The reload makes a profile of its file the default: the call started before it is
    settled under the runtime it started with, whose configuration has no such profile."""
    reloaded = tmp_path / "reloaded.toml"
    reloaded.write_text('[compliance.internal]\nmodels = ["openai/*"]\n')
    cascadeflow.init(mode=mode)
    failed = cascadeflow.stats()["tasks_failed"]  # counted for the whole process
    provider.inject(hold=True, times=1)
    answers: list[Any] = []
    in_flight = threading.Thread(
        target=lambda: answers.append(litellm.completion(**chat_kwargs(provider))))
    in_flight.start()
    deadline = time.monotonic() + 20
    while not provider.requests:
        assert time.monotonic() < deadline, "the call never reached the provider"
        time.sleep(0.01)
    cascadeflow.init(mode=mode, config=reloaded, compliance="internal")
    provider.release()
    in_flight.join(20)
    assert not in_flight.is_alive() and len(answers) == 1
    litellm.completion(**chat_kwargs(provider))
    assert cascadeflow.flush(20)
    assert [e["mode"] for e in cascadeflow.current_session().trace()] == [mode, mode]
    assert cascadeflow.stats()["tasks_failed"] == failed


def test_a_run_whose_profile_a_reload_removed_is_refused_clearly(provider: Any,
                                                                 tmp_path: Path) -> None:
    """A run opened with a profile of the config file, continued after an `init()` whose config
    has no such profile: its next call raised a bare `KeyError` from deep in the policy engine."""
    first = tmp_path / "first.toml"
    first.write_text('[compliance.internal]\nmodels = ["openai/*"]\n')
    cascadeflow.init(mode="enforce", config=first)
    with cascadeflow.run(compliance="internal"):
        litellm.completion(**chat_kwargs(provider))
        cascadeflow.init(mode="enforce")  # a reload without the profile
        with pytest.raises(cascadeflow.ConfigError) as caught:
            litellm.completion(**chat_kwargs(provider))
    assert (caught.value.setting, caught.value.value) == ("compliance", "internal")
    assert "init()" in str(caught.value)
    assert len(provider.requests) == 1  # nothing was sent unchecked
