"""The background worker: order, flush, contained failures, back-pressure, and what readers see."""

from __future__ import annotations

import threading
from typing import Any

import cascadeflow
import litellm
from cascadeflow.worker import Worker

from tests.conftest import chat_kwargs


def test_tasks_run_in_order_and_flush_waits_for_them() -> None:
    worker = Worker()
    seen: list[int] = []
    for i in range(500):
        worker.submit(seen.append, i)
    assert worker.flush(timeout=10)
    assert seen == list(range(500))


def test_a_failing_task_is_counted_and_the_next_ones_still_run() -> None:
    worker = Worker()
    seen: list[str] = []

    def boom() -> None:
        raise RuntimeError("a broken exporter")

    worker.submit(boom)
    worker.submit(seen.append, "after")
    assert worker.flush(timeout=10)
    assert worker.failed == 1 and seen == ["after"]


def test_flush_from_a_task_does_not_wait_for_itself() -> None:
    worker = Worker()
    done = threading.Event()

    def reads_back() -> None:
        worker.flush()  # e.g. a span processor reading a session summary
        done.set()

    worker.submit(reads_back)
    assert worker.flush(timeout=10) and done.is_set()


def test_a_full_queue_waits_for_room_then_drops_and_counts_when_the_worker_stalls() -> None:
    worker = Worker(capacity=2, block_s=0.2)
    gate, stuck = threading.Event(), threading.Event()

    def wedged() -> None:  # a hanging exporter
        stuck.set()
        gate.wait()

    worker.submit(wedged)
    assert stuck.wait(10)
    seen: list[int] = []
    for i in range(4):
        worker.submit(seen.append, i)  # two fit; the others wait 0.2 s for room, then drop
    assert worker.dropped == 2
    gate.set()
    assert worker.flush(timeout=10)
    assert seen == [0, 1]


def test_back_pressure_while_the_worker_keeps_up_loses_nothing() -> None:
    worker = Worker(capacity=4, block_s=5.0)
    seen: list[int] = []
    for i in range(2000):
        worker.submit(seen.append, i)
    assert worker.flush(timeout=30)
    assert seen == list(range(2000)) and worker.dropped == 0


def test_concurrent_calls_leave_a_complete_trace_in_step_order(provider: Any) -> None:
    cascadeflow.init(mode="observe")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            litellm.completion(**chat_kwargs(provider, "hi"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    import contextvars

    with cascadeflow.run(budget=1.0) as session:
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(call,))
                   for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    trace = session.trace()
    assert [e["step"] for e in trace] == list(range(1, 41))
    assert all(e["status"] == "ok" and e["tokens_in"] > 0 for e in trace)
    assert session.summary()["steps"] == 40 and session.summary()["cost_total"] > 0


class _CountingLock:
    """The worker's runner lock, counting the callers that waited for it and gave up."""

    def __init__(self) -> None:
        self._inner = threading.Lock()
        self.gave_up = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._inner.acquire(blocking, timeout)
        self.gave_up += not got
        return got

    def release(self) -> None:
        self._inner.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_caller_helps_a_worker_that_falls_behind_but_never_waits_on_a_stuck_one() -> None:
    """Counted, not timed: behind a task that hangs, the first caller waits briefly and gives up,
    the next ones do not wait at all, and none runs a task; once the worker moves, they try again."""
    worker = Worker(help_at=8)
    runner = worker._runner = _CountingLock()  # type: ignore[assignment]
    seen: list[int] = []
    for i in range(20):
        worker.submit(seen.append, i)
    worker.help_if_behind()  # 20 waiting: this thread runs them, in order (or, when the worker
    assert worker.flush(timeout=10)  # thread held on for 50 ms on a loaded machine, it does)
    assert seen == list(range(20))
    base = runner.gave_up  # 0, or 1 when that wait gave up

    def wedge() -> threading.Event:
        gate, stuck = threading.Event(), threading.Event()

        def wedged() -> None:
            stuck.set()
            gate.wait()

        worker.submit(wedged)
        assert stuck.wait(10)
        for i in range(20):
            worker.submit(seen.append, len(seen) + i)
        return gate

    gate = wedge()
    for _ in range(50):
        worker.help_if_behind()
    assert runner.gave_up == base + 1 and len(seen) == 20  # one wait; the tasks left queued
    gate.set()
    assert worker.flush(timeout=10)
    assert seen == list(range(40))
    gate = wedge()  # the worker moved since: the next caller tries once more
    for _ in range(50):
        worker.help_if_behind()
    assert runner.gave_up == base + 2 and len(seen) == 40
    gate.set()
    assert worker.flush(timeout=10)
    assert seen == list(range(60))
