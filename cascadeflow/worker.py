"""The background worker: one daemon thread that runs queued tasks in the order they were queued.

The caller's thread does only what must happen before a request is sent; writing trace entries,
scanning in observe mode, spans and metrics are queued here. `flush()` queues a marker and waits
for it, so everything queued before has run: that is what `summary()`, `trace()`, the end of an
outermost `run()` and `shutdown()` do, and a reader always sees a complete trace in step order.

Submitting is one `deque.append` (atomic under the GIL) and a flag read: the caller never wakes
the worker on the hot path. While there is work about the worker looks at its queue every
`poll_s`; after `idle_s` without work it sleeps until the next submit wakes it. (Waking a
thread on every call costs a system call and, under the GIL, a contended lock.)

When the application leaves the worker no time (a tight loop of calls that do no I/O), tasks
would pile up, and every object they hold would outlive its call: the garbage collector would
then promote them and run full collections of the whole heap far more often. So a call that
starts while more than `help_at` tasks wait first runs them itself (`help_if_behind`, at the
entry of a call, where it holds no lock): records then cost about what they would inline, and
the queue stays short. A worker that keeps up is never helped.

The queue is bounded. When it is full the caller waits for room (back-pressure); if the worker
makes no progress for `block_s`, the task is dropped and counted instead of hanging the
application.

Spans and metrics go to a second worker of the same kind (`telemetry()`): span processors and
exporters are the application's code, and one that hangs must only hold up telemetry, never the
settlements that budgets and `summary()` wait for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("cascadeflow.worker")

Task = tuple[Callable[..., Any], tuple[Any, ...]]


class Worker:
    """Runs tasks off the caller's thread, in order; thread-safe, started on first use."""

    def __init__(self, capacity: int = 50_000, block_s: float = 2.0, poll_s: float = 0.01,
                 idle_s: float = 1.0, help_at: int = 64, name: str = "cascadeflow-worker") -> None:
        self.capacity = capacity
        self.help_at = help_at
        self.block_s = block_s
        self.poll_s = poll_s
        self.idle_s = idle_s
        self.name = name
        self.dropped = 0  # tasks not run because the queue stayed full
        self.failed = 0  # tasks that raised (logged, never propagated)
        self.stalls = 0  # bounded waits (`flush_unless_stuck`) that gave up on a task that hangs
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child starts with no thread

    def _reset(self) -> None:
        # the tasks waiting, in order; outside the worker only read, and only for its length
        # (a call's entry checks `len(worker.queue) >= worker.help_at` before `help_if_behind`)
        self.queue: deque[Task] = deque()
        self._done = 0  # tasks run; written by the worker only
        self._busy = False  # set before a task is taken from the queue, cleared once it is empty
        self._sleeping = True  # blocked until woken (no work for `idle_s`), or not started yet
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._runner = threading.Lock()  # held by whoever is running tasks: they run one at a time
        self._local = threading.local()  # `draining`: this thread is running tasks now
        self._pause = False  # a caller wants to run the tasks: the worker stops after its current one
        self._stuck_at = -1  # `_done` when a bounded flush last timed out waiting for a task
        # `_done` when a caller last could not take over from the worker within 50 ms: the
        # worker is in a long task (a slow exporter, a loaded machine), not necessarily stuck,
        # so this holds back helping only, never a flush
        self._unhelpable_at = -1

    # -- the caller's side ------------------------------------------------------------------
    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue `fn(*args)`; it runs within `poll_s` (sooner when something flushes)."""
        queue = self.queue
        if len(queue) >= self.capacity and not self._wait_for_room():
            self.dropped += 1
            log.error("cascadeflow worker queue full for %.1fs: dropped a task (%d so far)",
                      self.block_s, self.dropped)
            return
        queue.append((fn, args))
        if self._sleeping:
            self._wake_up()

    def help_if_behind(self) -> None:
        """Run the queued tasks here when more than `help_at` wait. The worker is asked to stop
        after the task it is running (tasks always run one at a time, in order). Call it only
        where no lock a task could take is held: at the entry of a call."""
        if len(self.queue) < self.help_at or getattr(self._local, "draining", False) \
                or self._done == self._unhelpable_at:
            return
        self._pause = True
        try:
            # waiting here lets the worker finish its task and let go; a task that hangs (a
            # wedged exporter) must not hang the application: give up, and do not try again
            # until the worker has made progress
            if not self._runner.acquire(timeout=0.05):
                self._unhelpable_at = self._done
                return
            try:
                self._drain()
            finally:
                self._runner.release()
        finally:
            self._pause = False

    def _wake_up(self) -> None:
        if self._thread is None:
            self._start()
        self._wake.set()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every task queued before this call has run; False on timeout.

        Called from the worker itself (a task reading a summary) it returns at once: waiting
        there would wait for itself.
        """
        thread = self._thread
        if thread is None or threading.current_thread() is thread \
                or getattr(self._local, "draining", False):
            return True
        if not self.queue and not self._busy:  # read in this order: the worker sets busy first
            return True
        marker = threading.Event()
        self.queue.append((marker.set, ()))
        self._wake.set()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not marker.wait(0.1):
            if not thread.is_alive():
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
        return True

    def flush_unless_stuck(self, timeout: float) -> bool:
        """`flush(timeout)`, but once a wait has timed out, return False at once until the
        worker makes progress: a task that hangs costs its callers one timeout, not one each."""
        if self._thread is not None and self._done == self._stuck_at and not self.idle():
            return False
        if self.flush(timeout):
            return True
        self._stuck_at = self._done
        self.stalls += 1
        log.error("cascadeflow %s: a task has not finished within %.1fs (a span processor or "
                  "exporter that hangs?); not waiting for it (%d so far)", self.name, timeout,
                  self.stalls)
        return False

    def pending(self) -> int:
        return len(self.queue)

    def idle(self) -> bool:
        """Nothing queued and nothing running (read in this order: the worker sets busy first)."""
        return not self.queue and not self._busy

    def _wait_for_room(self) -> bool:
        """Back-pressure: wait while the worker makes progress; False if it stalls for `block_s`."""
        if threading.current_thread() is self._thread or getattr(self._local, "draining", False):
            return True  # a task queueing a follow-up: never wait for ourselves
        self._wake.set()
        done, since = self._done, time.monotonic()
        while len(self.queue) >= self.capacity:
            time.sleep(0.001)
            if self._done != done:
                done, since = self._done, time.monotonic()
            elif time.monotonic() - since >= self.block_s:
                return False
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()
                self._thread = thread

    # -- the worker's side ------------------------------------------------------------------
    def _run(self) -> None:
        queue = self.queue
        last_work = time.monotonic()
        self._sleeping = False
        while True:
            if queue:
                with self._runner:
                    self._drain()
                last_work = time.monotonic()
            if time.monotonic() - last_work < self.idle_s:
                self._wake.wait(self.poll_s)  # woken early by a flush
                self._wake.clear()
                continue
            self._sleeping = True
            if not queue:  # a submit between the check above and `_sleeping = True` saw us awake
                self._wake.wait()
            self._wake.clear()
            self._sleeping = False


    def _drain(self) -> None:
        """Run tasks until the queue is empty (the caller holds `_runner`)."""
        queue = self.queue
        self._local.draining = True
        self._busy = True
        try:
            while queue and not (self._pause and threading.current_thread() is self._thread):
                fn, args = queue.popleft()
                try:
                    fn(*args)
                except Exception:  # a failing record must not stop the ones after it
                    self.failed += 1
                    log.exception("cascadeflow background task %r failed", fn)
                self._done += 1
        finally:
            self._busy = False
            self._local.draining = False


_shared: Worker | None = None
_telemetry: Worker | None = None
_shared_lock = threading.Lock()


def shared() -> Worker:
    """The process's worker: the records of every runtime `init()` makes are queued here."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = Worker()
    return _shared


def telemetry() -> Worker:
    """The process's telemetry worker: spans and metrics, in the order the worker queues them."""
    global _telemetry
    if _telemetry is None:
        with _shared_lock:
            if _telemetry is None:
                # full (its processors hang): drop spans at once rather than hold the worker
                _telemetry = Worker(name="cascadeflow-telemetry", block_s=0.05)
    return _telemetry
