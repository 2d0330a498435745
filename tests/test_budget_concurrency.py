"""Concurrent calls in one budget: none overruns it, and none is stopped while waiting for the
calls in flight to settle would have left room (no false stops)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
from typing import Any

import cascadeflow
import litellm
import openai
import pytest
from cascadeflow.pricing import PriceBook

from tests.conftest import chat_kwargs

MODEL = "openai/gpt-4o"
PRICE = PriceBook().price(MODEL, "openai")
PROMPT = "Please summarise the customer's order history below.\n" + "order line item " * 500
BUDGET = 0.05  # each call costs about 0.0055: the budget pays for 9 one at a time


def _sequential(provider: Any, **extra: Any) -> int:
    """Calls the budget pays for, one at a time."""
    answered = 0
    with cascadeflow.run(budget=BUDGET):
        for _ in range(40):
            try:
                litellm.completion(**chat_kwargs(provider, PROMPT, model=MODEL, **extra))
            except cascadeflow.BudgetExceeded:
                break
            answered += 1
    return answered


def _check(session: Any, answered: int, sequential: int) -> None:
    spent = sum(e["cost"] or 0.0 for e in session.trace() if e["status"] == "ok")
    assert spent <= BUDGET
    assert answered >= 0.9 * sequential
    # nothing was stopped while room was left: after everything settled, no further call fits
    smallest = PRICE.cost(1500, 16)
    assert BUDGET - spent < smallest
    stops = [e for e in session.trace() if e["status"] == "stopped"]
    assert all(e["reason"] == "budget_exceeded" for e in stops)


@pytest.mark.parametrize("max_tokens", [None, 300])
def test_hundred_concurrent_acompletions_share_the_budget(provider: Any, max_tokens: int | None) -> None:
    cascadeflow.init(mode="enforce")
    extra = {} if max_tokens is None else {"max_tokens": max_tokens}
    sequential = _sequential(provider, **extra)
    assert sequential >= 8

    async def main() -> tuple[Any, int]:
        with cascadeflow.run(budget=BUDGET) as session:
            results = await asyncio.gather(
                *(litellm.acompletion(**chat_kwargs(provider, PROMPT, model=MODEL, **extra))
                  for _ in range(100)), return_exceptions=True)
        for result in results:
            assert not isinstance(result, Exception) or isinstance(result, cascadeflow.BudgetExceeded), \
                result
        return session, sum(1 for r in results if not isinstance(r, Exception))

    session, answered = asyncio.run(main())
    _check(session, answered, sequential)


def test_sixteen_threads_share_the_budget(provider: Any) -> None:
    cascadeflow.init(mode="enforce")
    sequential = _sequential(provider)
    client = openai.OpenAI(base_url=provider.url, api_key="sk-test-not-a-real-key-0000")
    answered: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        for _ in range(7):
            try:
                client.chat.completions.create(model="gpt-4o", messages=[
                    {"role": "user", "content": PROMPT}])
            except cascadeflow.BudgetExceeded:
                continue
            except BaseException as exc:  # reported below
                errors.append(exc)
                return
            answered.append(1)

    with cascadeflow.run(budget=BUDGET) as session:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(worker,))
                   for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not errors, errors
    _check(session, len(answered), sequential)


def test_a_call_stops_when_the_wait_runs_out(provider: Any) -> None:
    """With budget_wait_s=0 nothing waits: reservations of calls in flight stop the others,
    which is what the wait exists to prevent."""
    cascadeflow.init(mode="enforce", budget_wait_s=0)

    async def main() -> list[Any]:
        with cascadeflow.run(budget=BUDGET):
            return await asyncio.gather(
                *(litellm.acompletion(**chat_kwargs(provider, PROMPT, model=MODEL))
                  for _ in range(20)), return_exceptions=True)

    results = asyncio.run(main())
    stopped = [r for r in results if isinstance(r, cascadeflow.BudgetExceeded)]
    assert stopped and "after waiting 0 s" in str(stopped[0])


def test_the_wait_runs_while_calls_keep_settling(provider: Any) -> None:
    """Calls with no max_tokens each reserve what is free, so they run one after another; the
    whole queue takes longer than budget_wait_s, but every settlement starts the wait again."""
    cascadeflow.init(mode="enforce", budget_wait_s=3.0)
    sequential = _sequential(provider)
    # each call: 0.5 s; the queue of about 9: 4.5 s at least, longer than the 3 s wait. A
    # settlement every 0.5 s leaves a loaded machine 2.5 s of pauses (0.15 s calls under a 1 s
    # wait left 0.85 s, and a loaded CI machine's pauses took it: about 1 run in 15 failed)
    provider.inject(model="gpt-4o", latency_ms=500)

    async def main() -> tuple[Any, list[Any]]:
        async with cascadeflow.run(budget=BUDGET) as session:
            results = await asyncio.gather(
                *(litellm.acompletion(**chat_kwargs(provider, PROMPT, model=MODEL)) for _ in range(30)),
                return_exceptions=True)
        return session, results

    session, results = asyncio.run(main())
    answered = sum(1 for r in results if not isinstance(r, Exception))
    assert answered >= 0.9 * sequential
    assert not any("after waiting" in str(r) for r in results if isinstance(r, Exception))
    _check(session, answered, sequential)


def test_a_cancelled_call_gives_its_reservation_to_the_calls_waiting(provider: Any) -> None:
    """A call cancelled while the provider holds it (a timeout, a task group that failed) is
    settled, not left pending: the call waiting for its reservation goes on, nothing stays held."""
    cascadeflow.init(mode="enforce", budget_wait_s=60)
    provider.inject(model="gpt-4o", hold=True, times=1)

    async def main() -> tuple[Any, Any]:
        async with cascadeflow.run(budget=BUDGET) as session:  # no max_tokens: one call at a time
            held = asyncio.ensure_future(litellm.acompletion(**chat_kwargs(provider, PROMPT, model=MODEL)))
            while not provider.requests:
                await asyncio.sleep(0.01)
            waiting = asyncio.ensure_future(litellm.acompletion(**chat_kwargs(provider, PROMPT, model=MODEL)))
            await asyncio.sleep(0.2)
            assert not waiting.done() and len(provider.requests) == 1  # it waits for the held call
            held.cancel()
            answer = await waiting
        provider.release()
        with pytest.raises(asyncio.CancelledError):
            await held
        return session, answer

    session, answer = asyncio.run(main())
    assert answer.choices[0].message.content
    assert [(e["status"], e["error"]) for e in session.trace()] == [("error", "CancelledError"), ("ok", None)]
    assert session.reserved == 0.0 and session.summary()["cost_total"] == session.trace()[1]["cost"]
