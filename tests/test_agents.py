"""@agent opens a child session per call (sync, async, generators); @tool executions are steps."""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import cascadeflow
import litellm
import pytest

from tests.conftest import chat_kwargs


def test_sync_agent_opens_a_child_session(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    seen: list[Any] = []

    @cascadeflow.agent(name="triage", budget=0.10)
    def triage(query: str) -> str:
        seen.append(cascadeflow.current_session())
        litellm.completion(**chat_kwargs(provider, query))
        return "ok"

    with cascadeflow.run(budget=1.0) as outer:
        assert triage("a") == "ok"
        assert triage("b") == "ok"
    first, second = seen
    assert first is not second  # a fresh session per call
    assert first.agent == "triage" and first.parent is outer
    assert first.limits.budget == 0.10
    assert outer.summary()["steps"] == 2
    assert [e["agent"] for e in outer.trace()] == ["triage", "triage"]


async def test_async_agent_and_signature(provider: Any) -> None:
    cascadeflow.init(mode="observe")

    @cascadeflow.agent(budget=2.0, compliance="hipaa")
    async def medical_agent(query: str, *, urgent: bool = False) -> str:
        """Answers medical questions."""
        await litellm.acompletion(**chat_kwargs(provider, query))
        return cascadeflow.current_session().agent or ""

    assert medical_agent.__name__ == "medical_agent"
    assert medical_agent.__doc__ == "Answers medical questions."
    assert str(inspect.signature(medical_agent)) == "(query: 'str', *, urgent: 'bool' = False) -> 'str'"
    assert inspect.iscoroutinefunction(medical_agent)
    async with cascadeflow.run() as outer:
        assert await medical_agent("x") == "medical_agent"
    assert outer.trace()[0]["agent"] == "medical_agent"


async def test_agents_whose_work_is_awaited_later_keep_their_policy(provider: Any) -> None:
    """An object with `async def __call__`, and a plain callable that hands back a coroutine:
    the agent's session is open while the work runs, so its budget stops the call (the session
    used to close before the coroutine ran, and the call went out unbudgeted)."""
    cascadeflow.init(mode="enforce")

    async def answer(query: str) -> str:
        await litellm.acompletion(**chat_kwargs(provider, query), max_tokens=50)
        return cascadeflow.current_session().agent or ""

    class Triage:
        async def __call__(self, query: str) -> str:
            return await answer(query)

    for triage in (cascadeflow.agent("triage", budget=0.000001)(Triage()),
                   cascadeflow.agent("triage", budget=0.000001)(lambda query: answer(query))):
        with pytest.raises(cascadeflow.BudgetExceeded):
            await triage("x")
        generous = cascadeflow.agent("triage", budget=1.0)(triage.__wrapped__)
        assert await generous("x") == "triage"
    assert len(provider.requests) == 2


async def test_async_generator_agent_keeps_its_session_across_yields(provider: Any) -> None:
    cascadeflow.init(mode="observe")

    @cascadeflow.agent(name="streamer")
    async def streamer(n: int) -> AsyncIterator[str]:
        for i in range(n):
            await litellm.acompletion(**chat_kwargs(provider, str(i)))
            yield cascadeflow.current_session().agent or ""

    async with cascadeflow.run() as outer:
        names = []
        async for name in streamer(3):
            names.append(name)
            # between yields the caller is back in its own session
            assert cascadeflow.current_session() is outer
    assert names == ["streamer"] * 3
    assert [e["agent"] for e in outer.trace()] == ["streamer"] * 3


def test_generator_agent(provider: Any) -> None:
    cascadeflow.init(mode="observe")

    @cascadeflow.agent(name="gen")
    def gen() -> Iterator[int]:
        for i in range(2):
            litellm.completion(**chat_kwargs(provider))
            yield i

    with cascadeflow.run() as outer:
        assert list(gen()) == [0, 1]
    assert outer.summary()["steps"] == 2


def test_agent_limits_from_config(tmp_path: Any, provider: Any) -> None:
    (tmp_path / "cascadeflow.toml").write_text('[agents.triage]\nbudget = 0.25\nmax_steps = 4\n')
    cascadeflow.init(mode="observe")

    @cascadeflow.agent(name="triage", max_steps=2)
    def triage() -> Any:
        return cascadeflow.current_session().limits

    limits = triage()
    assert limits.budget == 0.25  # from the file
    assert limits.max_steps == 2  # code wins over the file


def test_tool_executions_are_traced_steps() -> None:
    cascadeflow.init(mode="observe")

    @cascadeflow.tool(name="fetch_similar_tickets")
    def fetch(issue: str) -> list[str]:
        return [issue.upper()]

    with cascadeflow.run() as session:
        assert fetch("refund") == ["REFUND"]
    [entry] = session.trace()
    assert entry["operation"] == "tool" and entry["tool"] == "fetch_similar_tickets"
    assert entry["status"] == "ok" and entry["latency_ms"] is not None
    assert session.summary()["tool_executions"] == 1


async def test_async_tool_error_is_recorded() -> None:
    cascadeflow.init(mode="observe")

    @cascadeflow.tool
    async def flaky() -> None:
        raise TimeoutError("backend down")

    async with cascadeflow.run() as session:
        with pytest.raises(TimeoutError):
            await flaky()
    assert session.trace()[0]["error"] == "TimeoutError"


def test_denied_tool_does_not_run_in_enforce() -> None:
    cascadeflow.init(mode="enforce")
    ran: list[int] = []

    @cascadeflow.tool
    def lookup() -> None:
        ran.append(1)

    with cascadeflow.run(max_tool_calls=1) as session:
        lookup()
        with pytest.raises(cascadeflow.ToolDenied) as info:
            lookup()
    assert ran == [1]
    err = info.value
    assert isinstance(err, cascadeflow.PolicyStop)
    assert err.reason == "max_tool_calls_reached" and err.step == 2 and err.run_id == session.run_id
    assert err.entry["action"] == "deny_tool" and err.entry["applied"] is True
    assert session.summary()["stopped"] is True


def test_irreversible_tool_needs_an_approver() -> None:
    cascadeflow.init(mode="enforce")

    @cascadeflow.tool(irreversible=True)
    def refund(order_id: str, amount: float) -> str:
        return f"refunded {order_id}"

    with cascadeflow.run(), pytest.raises(cascadeflow.ToolDenied) as info:
        refund("A-1", 10.0)
    assert info.value.reason == "tool_requires_approval"

    asked: list[Any] = []

    def approver(tool: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        asked.append((tool, args, kwargs))
        return args[1] < 50

    cascadeflow.init(mode="enforce", approver=approver)
    with cascadeflow.run():
        assert refund("A-1", 10.0) == "refunded A-1"
        with pytest.raises(cascadeflow.ToolDenied):
            refund("A-2", 500.0)
    assert asked == [("refund", ("A-1", 10.0), {}), ("refund", ("A-2", 500.0), {})]


def test_the_approver_is_not_asked_for_a_tool_denied_anyway() -> None:
    """The approver (often a person) was asked about an irreversible tool that the tool-call cap,
    a deny list or the step cap denied whatever the answer: a refund approved and then not run.
    It is asked only when its answer decides."""
    asked: list[tuple[Any, ...]] = []

    def approver(tool: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        asked.append(args)
        return True

    cascadeflow.init(mode="enforce", approver=approver)

    @cascadeflow.tool(irreversible=True)
    def refund(order_id: str) -> str:
        return f"refunded {order_id}"

    with cascadeflow.run(max_tool_calls=1) as capped:
        assert refund("A-1") == "refunded A-1"
        with pytest.raises(cascadeflow.ToolDenied, match="max_tool_calls_reached"):
            refund("A-2")
    with cascadeflow.run(tools_deny=["refund"]), \
            pytest.raises(cascadeflow.ToolDenied, match="tool_not_allowed"):
        refund("A-3")
    with cascadeflow.run(max_steps=1):
        assert refund("A-4") == "refunded A-4"
        with pytest.raises(cascadeflow.StepLimitReached):
            refund("A-5")
    assert asked == [("A-1",), ("A-4",)]
    assert [e["reason"] for e in capped.trace()] == ["ok", "max_tool_calls_reached"]


def test_observe_never_asks_the_approver() -> None:
    asked: list[str] = []

    def approver(tool: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        asked.append(tool)  # in real life: a page to a person
        return True

    cascadeflow.init(mode="observe", approver=approver)

    @cascadeflow.tool(irreversible=True)
    def refund(order_id: str) -> str:
        return f"refunded {order_id}"

    with cascadeflow.run() as session:
        assert refund("A-1") == "refunded A-1"
    [entry] = session.trace()
    assert asked == []
    assert (entry["action"], entry["reason"], entry["applied"]) == ("deny_tool", "would_need_approval",
                                                                   False)


def test_tools_in_mode_off_just_run() -> None:
    @cascadeflow.tool
    def plain() -> int:
        return 3

    with cascadeflow.run() as session:
        assert plain() == 3
    assert session.trace() == []


async def test_an_agent_whose_work_is_awaited_later_is_one_session_per_call(provider: Any) -> None:
    """A plain callable that hands back a coroutine: the session its call opens is the one open
    while the coroutine runs, not a second one (two per call used to be listed in the run's
    `sessions`, the first empty)."""
    cascadeflow.init(mode="enforce")

    async def answer(query: str) -> str:
        await litellm.acompletion(**chat_kwargs(provider, query), max_tokens=50)
        return cascadeflow.current_session().run_id

    triage = cascadeflow.agent("triage", budget=1.0)(lambda query: answer(query))
    async with cascadeflow.run(budget=1.0) as outer:
        ran = [await triage("a"), await triage("b")]
        assert cascadeflow.current_session() is outer
    assert sorted(outer.summary()["sessions"]) == sorted(ran)
    assert [e["run_id"] for e in outer.trace()] == ran
    assert all(s["ended"] is not None for s in outer.summary()["sessions"].values())


def test_an_approver_answer_other_than_a_bool_denies() -> None:
    """An approver object whose `__call__` hands back a coroutine, or one returning "no", used
    to approve the irreversible tool (both are truthy); `async def` approvers are refused."""
    async def ask_a_person(tool: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        return False

    with pytest.raises(cascadeflow.ConfigError, match="approver"):
        cascadeflow.init(mode="enforce", approver=ask_a_person)

    ran: list[str] = []

    @cascadeflow.tool(irreversible=True)
    def refund(order_id: str) -> str:
        ran.append(order_id)
        return f"refunded {order_id}"

    for answer in (lambda tool, args, kwargs: ask_a_person(tool, args, kwargs),
                   lambda tool, args, kwargs: "no"):
        cascadeflow.init(mode="enforce", approver=answer)
        with cascadeflow.run() as session, pytest.raises(cascadeflow.ToolDenied) as info:
            refund("A-1")
        assert info.value.reason == "approver_error"
        assert session.trace()[0]["reason"] == "approver_error"
    assert ran == []


async def test_generator_and_awaitable_tools_are_traced_while_they_run() -> None:
    """A generator tool's step used to finish when the generator object was made, and an
    object with `async def __call__` (or a lambda handing back a coroutine) when the coroutine
    was made: the errors they raised were traced as successes. Now the step covers the work; a
    denied generator raises on first use."""
    cascadeflow.init(mode="enforce")

    @cascadeflow.tool
    def pages(n: int) -> Iterator[int]:
        yield from range(n)
        raise RuntimeError("backend down")

    @cascadeflow.tool
    async def apages(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise RuntimeError("backend down")

    class Fetch:
        async def __call__(self, query: str) -> str:
            raise RuntimeError("backend down")

    fetch = cascadeflow.tool(name="fetch")(Fetch())
    wrapped = cascadeflow.tool(name="wrapped")(lambda query: Fetch()(query))  # hands back a coroutine

    with cascadeflow.run(max_tool_calls=5) as session:
        with pytest.raises(RuntimeError):
            list(pages(2))
        with pytest.raises(RuntimeError):
            [i async for i in apages(2)]
        with pytest.raises(RuntimeError):
            await fetch("q")
        with pytest.raises(RuntimeError):
            await wrapped("q")
        first = pages(5)
        assert next(first) == 0
        first.close()  # the consumer stops early: not an error
        with pytest.raises(cascadeflow.ToolDenied):
            next(pages(1))  # the cap of 5 executions is used up
    statuses = [(e["tool"], e["status"], e["error"]) for e in session.trace()]
    assert statuses[:5] == [("pages", "error", "RuntimeError"), ("apages", "error", "RuntimeError"),
                            ("fetch", "error", "RuntimeError"), ("wrapped", "error", "RuntimeError"),
                            ("pages", "ok", None)]
    assert statuses[5][0] == "pages" and session.trace()[5]["reason"] == "max_tool_calls_reached"
    summary = session.summary()
    assert (summary["errors"], summary["tool_executions"]) == (4, 5)


def test_a_callable_without_a_name_asks_for_one() -> None:
    """Bare `@tool` / `@agent` on a callable object or a functools.partial failed with an
    AttributeError from inside the decorator; it is a ConfigError asking for `name=`, and a
    named one works."""
    class Fetch:
        def __call__(self, query: str) -> str:
            return query

    for decorate in (cascadeflow.tool, cascadeflow.agent):
        with pytest.raises(cascadeflow.ConfigError, match=r"name=\.\.\."):
            decorate(Fetch())
    cascadeflow.init(mode="observe")
    fetch = cascadeflow.tool(name="fetch")(Fetch())
    with cascadeflow.run() as session:
        assert fetch("q") == "q"
    assert session.trace()[0]["tool"] == "fetch"


async def test_an_agent_called_outside_any_run_takes_the_run_defaults(
        provider: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """An @agent called while no run is open is the top-level session, as a top-level run() is:
    the default budget and caps of init()/env/file apply to it (they were dropped, so a program
    whose entry point is an agent ran unbudgeted under CASCADEFLOW_BUDGET). Nested under a run,
    it inherits from the run instead."""
    monkeypatch.setenv("CASCADEFLOW_BUDGET", "0.000001")
    assert cascadeflow.init(mode="enforce", max_steps=5).sources["budget"] == "env"

    @cascadeflow.agent(name="main")
    def main() -> None:
        litellm.completion(**chat_kwargs(provider), max_tokens=50)

    @cascadeflow.agent(name="amain", max_steps=7)
    async def amain() -> Any:
        return cascadeflow.current_session().limits

    with pytest.raises(cascadeflow.BudgetExceeded):
        main()
    assert provider.requests == []
    limits = await amain()
    assert (limits.budget, limits.max_steps) == (0.000001, 7)  # code wins over the default
    with cascadeflow.run(budget=1.0, max_steps=10):
        limits = await amain()
    assert (limits.budget, limits.max_steps) == (None, 7)  # the run's limits apply through it


async def test_an_async_generator_tool_in_off_mode_is_the_function_itself() -> None:
    """Off must behave exactly as without cascadeflow: an async generator @tool driven with
    asend()/athrow() got None for every value sent and the thrown exception never reached it
    (observe and enforce passed them on; off iterated the function with `async for`)."""
    @cascadeflow.tool
    async def accumulate() -> AsyncIterator[int]:
        total = 0
        while True:
            try:
                got = yield total
            except ValueError:
                got = -100
            total += got or 0

    for mode in ("off", "observe", "enforce"):
        cascadeflow.init(mode=mode)
        with cascadeflow.run():
            steps = accumulate()
            sent = [await steps.asend(None), await steps.asend(5), await steps.asend(7),
                    await steps.athrow(ValueError())]
            await steps.aclose()
        assert sent == [0, 5, 12, -88], mode


def passthrough(fn: Any) -> Any:
    """A sync decorator over any function (functools.wraps): over a generator function, it hands
    back the generator object from a plain callable."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)
    return wrapper


async def test_agents_whose_generator_is_made_by_a_plain_callable_keep_their_policy(
        provider: Any) -> None:
    """A sync decorator (functools.wraps over a plain function) over a generator or async
    generator function hands the agent a generator object: the agent's session closed before
    the generator's body ran, so its budget did not apply and its calls had no agent."""
    cascadeflow.init(mode="enforce")

    def pages(query: str) -> Iterator[str]:
        litellm.completion(**chat_kwargs(provider, query), max_tokens=50)
        yield cascadeflow.current_session().agent or ""

    async def apages(query: str) -> AsyncIterator[str]:
        await litellm.acompletion(**chat_kwargs(provider, query), max_tokens=50)
        yield cascadeflow.current_session().agent or ""

    poor = cascadeflow.agent("pages", budget=0.000001)
    with pytest.raises(cascadeflow.BudgetExceeded):
        list(poor(passthrough(pages))("x"))
    with pytest.raises(cascadeflow.BudgetExceeded):
        [item async for item in poor(passthrough(apages))("x")]
    assert provider.requests == []
    rich = cascadeflow.agent("pages", budget=1.0)
    with cascadeflow.run() as session:
        assert list(rich(passthrough(pages))("x")) == ["pages"]
        assert [item async for item in rich(passthrough(apages))("x")] == ["pages"]
    assert [e["agent"] for e in session.trace()] == ["pages", "pages"]
    assert all(child["ended"] is not None for child in session.summary()["sessions"].values())


async def test_a_tool_whose_function_hands_back_a_generator_is_one_step_to_its_end() -> None:
    """A sync decorator over a generator function hands @tool a generator object: the step
    ended when the object was made, before its code ran, so an error it raised while iterated
    was traced as a success (as generator functions' steps were before)."""
    cascadeflow.init(mode="enforce")

    @cascadeflow.tool(name="pages")
    @passthrough
    def pages(n: int) -> Iterator[int]:
        yield from range(n)
        raise RuntimeError("page store down")

    @cascadeflow.tool(name="apages")
    @passthrough
    async def apages(n: int) -> AsyncIterator[int]:
        for i in range(n):
            yield i
        raise RuntimeError("page store down")

    @cascadeflow.tool(name="fine")
    @passthrough
    def fine(n: int) -> Iterator[int]:
        yield from range(n)

    with cascadeflow.run() as session:
        with pytest.raises(RuntimeError):
            list(pages(2))
        with pytest.raises(RuntimeError):
            [i async for i in apages(2)]
        assert list(fine(3)) == [0, 1, 2]
        early = fine(3)
        assert next(early) == 0
        early.close()
    statuses = [(e["tool"], e["status"], e["error"]) for e in session.trace()]
    assert statuses == [("pages", "error", "RuntimeError"), ("apages", "error", "RuntimeError"),
                        ("fine", "ok", None), ("fine", "ok", None)]


@pytest.mark.parametrize("mode", ["off", "observe", "enforce"])
async def test_a_task_handed_back_by_an_agent_or_tool_stays_a_task(provider: Any, mode: str) -> None:
    """A plain function that starts a task and hands it back (`asyncio.ensure_future`) used to get
    a coroutine instead, in every mode, `off` included: `add_done_callback`, `cancel()` and
    `done()` failed with AttributeError, and a task started and not awaited left its tool step
    pending for good. The caller now gets the very task; the agent's session and the tool's
    step end when it is done."""
    import asyncio

    cascadeflow.init(mode=mode)

    async def answer(query: str) -> str:
        await litellm.acompletion(**chat_kwargs(provider, query), max_tokens=50)
        return cascadeflow.current_session().run_id

    async def broken() -> None:
        raise RuntimeError("backend down")

    @cascadeflow.agent(name="starter", budget=1.0)
    def starter(query: str) -> asyncio.Task[str]:
        return asyncio.ensure_future(answer(query))

    @cascadeflow.tool
    def refresh(fail: bool = False) -> asyncio.Future[Any]:
        return asyncio.ensure_future(broken() if fail else answer("refresh"))

    async with cascadeflow.run(budget=1.0) as outer:
        task = starter("a")
        assert isinstance(task, asyncio.Task)
        done = asyncio.Event()
        task.add_done_callback(lambda _: done.set())
        agent_run = await task
        await done.wait()
        started = refresh()
        assert isinstance(started, asyncio.Task)
        await started
        failing = refresh(fail=True)
        assert isinstance(failing, asyncio.Task)
        with pytest.raises(RuntimeError):
            await failing
        await asyncio.sleep(0)  # the task's done callbacks run
    if mode == "off":
        return
    sessions = outer.summary()["sessions"]
    assert list(sessions) == [agent_run] and sessions[agent_run]["ended"] is not None
    tools = [(e["tool"], e["status"], e["error"]) for e in outer.trace() if e["operation"] == "tool"]
    assert tools == [("refresh", "ok", None), ("refresh", "error", "RuntimeError")]
    agent_steps = [e for e in outer.trace() if e["agent"] == "starter"]
    assert [e["run_id"] for e in agent_steps] == [agent_run]
