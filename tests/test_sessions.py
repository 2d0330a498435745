"""Sessions: nesting, isolation under concurrency, thread attribution, the bounded ambient session."""

from __future__ import annotations

import asyncio
import contextvars
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cascadeflow
import litellm
import openai
import pytest

from tests.conftest import chat_kwargs

SUMMARY_KEYS = {"run_id", "mode", "steps", "cost_total", "latency_total_ms", "tokens_in", "tokens_out",
                "tool_calls", "budget", "budget_remaining", "actions", "models", "fallbacks",
                "degraded", "stopped", "duration_ms"}
TRACE_KEYS = {"step", "action", "reason", "applied", "mode", "model", "requested_model",
              "target_model", "provider", "agent", "cost", "latency_ms", "tokens_in", "tokens_out",
              "cached_tokens", "tool_calls", "tools_denied", "budget_remaining", "error", "ts"}


def test_summary_and_trace_hold_the_contract_keys(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run(budget=1.0, user="u1", project="p1", metadata={"ticket": 7}) as session:
        litellm.completion(**chat_kwargs(provider))
    summary = session.summary()
    assert set(summary) >= SUMMARY_KEYS
    assert summary["steps"] == 1 and summary["budget"] == 1.0
    assert summary["budget_remaining"] == 1.0 - summary["cost_total"]
    assert summary["models"]["openai/gpt-4o-mini"]["calls"] == 1
    assert summary["actions"] == {"allow": 1}
    assert summary["user"] == "u1" and summary["project"] == "p1"
    assert summary["metadata"] == {"ticket": 7}
    assert set(session.trace()[0]) >= TRACE_KEYS


def test_nested_sessions_roll_up(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as outer:
        litellm.completion(**chat_kwargs(provider))
        with cascadeflow.run() as inner:
            litellm.completion(**chat_kwargs(provider))
            assert cascadeflow.current_session() is inner
        assert cascadeflow.current_session() is outer
    assert inner.summary()["steps"] == 1
    assert outer.summary()["steps"] == 2
    assert [e["step"] for e in outer.trace()] == [1, 2]
    assert outer.summary()["cost_total"] > inner.summary()["cost_total"] > 0
    # the ambient session saw nothing
    assert cascadeflow.current_session().summary()["steps"] == 0


async def test_concurrent_tasks_see_only_their_own_steps(provider: Any) -> None:
    cascadeflow.init(mode="observe")

    async def work(i: int) -> Any:
        async with cascadeflow.run(metadata={"i": i}) as session:
            for _ in range(i % 3 + 1):
                await litellm.acompletion(**chat_kwargs(provider, f"task {i}"))
        return session

    sessions = await asyncio.gather(*(work(i) for i in range(100)))
    for i, session in enumerate(sessions):
        assert session.summary()["steps"] == i % 3 + 1
        assert {e["run_id"] for e in session.trace()} == {session.run_id}
    assert len(provider.requests) == sum(i % 3 + 1 for i in range(100))


async def test_to_thread_is_attributed(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    async with cascadeflow.run() as session:
        await asyncio.to_thread(litellm.completion, **chat_kwargs(provider))
    assert session.summary()["steps"] == 1


def test_thread_pool_with_copied_context(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run() as session, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(contextvars.copy_context().run, litellm.completion,
                               **chat_kwargs(provider)) for _ in range(8)]
        for f in futures:
            f.result()
        # a bare thread without the context goes to the ambient session, not this one
        bare = threading.Thread(target=litellm.completion, kwargs=chat_kwargs(provider))
        bare.start()
        bare.join()
    assert session.summary()["steps"] == 8
    assert cascadeflow.current_session().summary()["steps"] == 1


def test_calls_outside_a_run_go_to_the_ambient_session(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    litellm.completion(**chat_kwargs(provider))
    ambient = cascadeflow.current_session()
    assert ambient.ambient and ambient.summary()["steps"] == 1


def test_ambient_session_stays_bounded_over_100k_calls() -> None:
    cascadeflow.init(mode="observe", ambient_max_entries=1000)

    @cascadeflow.tool
    def ping() -> int:
        return 1

    for _ in range(100_000):
        ping()
    ambient = cascadeflow.current_session()
    trace = ambient.trace()
    assert len(trace) == 1000
    assert trace[-1]["step"] == 100_000 and trace[0]["step"] == 99_001
    assert ambient.summary()["steps"] == 100_000
    assert ambient.summary()["tool_executions"] == 100_000


def test_save_and_load_round_trip_without_secrets_or_content(provider: Any, tmp_path: Path) -> None:
    cascadeflow.init(mode="observe")
    with cascadeflow.run(budget=1.0) as session:
        litellm.completion(**chat_kwargs(provider, "my secret prompt text"))
    path = session.save(tmp_path / "run.jsonl")
    text = path.read_text()
    assert "sk-test-not-a-real-key" not in text
    assert "my secret prompt text" not in text
    loaded = cascadeflow.load_session(path)
    assert loaded.summary()["run_id"] == session.run_id
    assert loaded.trace() == json.loads(json.dumps(session.trace()))


def test_capture_content_is_opt_in_and_scrubs_secrets(provider: Any, tmp_path: Path) -> None:
    cascadeflow.init(mode="observe", capture_content=True)
    with cascadeflow.run() as session:
        litellm.completion(**chat_kwargs(provider, "use key sk-proj-abcdefghijklmnopqrstuvwxyz123 now"))
    content = session.trace()[0]["content"]
    assert "use key [SECRET] now" in json.dumps(content)
    assert "Reply from" in content["completion"]
    text = session.save(tmp_path / "c.jsonl").read_text()
    assert "abcdefghijklmnopqrstuvwxyz123" not in text
    # a compliance profile that forbids capture wins over the opt-in
    with cascadeflow.run(compliance="gdpr") as strict:
        litellm.completion(**chat_kwargs(provider, "private"))
    assert "content" not in strict.trace()[0]


def test_load_rejects_other_files(tmp_path: Path) -> None:
    bad = tmp_path / "x.jsonl"
    bad.write_text("not json\n")
    try:
        cascadeflow.load_session(bad)
    except cascadeflow.CascadeflowError as exc:
        assert "line 1" in str(exc)
    else:
        raise AssertionError("expected an error")


def test_a_session_cannot_be_entered_twice() -> None:
    session = cascadeflow.run()
    with session:
        pass
    try:
        with session:
            pass
    except cascadeflow.CascadeflowError:
        pass
    else:
        raise AssertionError("expected an error")


def test_openai_calls_count_in_sessions(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    sdk = openai.OpenAI(base_url=provider.url, api_key="sk-test", max_retries=0)
    with cascadeflow.run() as session:
        sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert session.summary()["models"]["gpt-4o-mini"]["calls"] == 1


def test_a_stopped_steps_budget_remaining_counts_the_steps_before_it(provider: Any) -> None:
    """A step enforce stops had its entry's `budget_remaining` read on the caller's thread while
    the step before it could still be settling on the worker: 1.0 or 0.99998755 by the worker's
    timing. It now counts every step before it, as an admitted step's does. (The worker is held
    while the second call is stopped: the timing that made it 1.0.)"""
    from cascadeflow.worker import shared

    cascadeflow.init(mode="enforce")
    with cascadeflow.run(budget=1.0, max_steps=1) as session:
        litellm.completion(**chat_kwargs(provider))
        gate = threading.Event()
        shared().submit(gate.wait)
        try:
            with pytest.raises(cascadeflow.StepLimitReached):
                litellm.completion(**chat_kwargs(provider))
        finally:
            gate.set()
    first, stopped = session.trace()
    assert stopped["status"] == "stopped" and first["cost"] > 0
    assert stopped["budget_remaining"] == pytest.approx(1.0 - first["cost"], abs=1e-12)
