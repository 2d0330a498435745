"""The ledger's writer: one daemon thread that commits settlements in batches.

Callers (the background worker, settling a step) append to a bounded queue and go on; the writer
commits what has gathered every `interval_s`, or sooner once `batch` are waiting, in one
transaction: a durable write per call would cost a disk sync each. When the queue is full the
settlement is dropped and counted; a batch the store refuses is retried, then counted as lost.
A batch that fails for any other reason (a record that cannot be encoded) is written again one
settlement at a time, so only the ones that fail are lost. None of it is ever silent: `on_loss`
hears of it (the ledger alerts), `stats` counts it. Should the thread itself die, `flush` stops
waiting for it and the next `put` starts another.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from cascadeflow.ledger.store import Settlement, StoreUnavailable

log = logging.getLogger("cascadeflow.ledger")
RETRIES = 3


class Writer:
    def __init__(self, commit: Callable[[Sequence[Settlement]], None],
                 on_commit: Callable[[Sequence[Settlement]], None],
                 on_loss: Callable[[str, int], None], capacity: int = 10_000,
                 interval_s: float = 0.2, batch: int = 500) -> None:
        self._commit = commit
        self._on_commit = on_commit
        self._on_loss = on_loss
        self.capacity = capacity
        self.interval_s = interval_s
        self.batch = batch
        self.written = 0  # settlements committed
        self.dropped = 0  # not queued: the queue was full
        self.lost = 0  # queued, but the store refused them `RETRIES` times
        self._reset()
        # the fork hooks are never unregistered: a hook holding the writer kept it (and through
        # `commit` its ledger, quotas and sinks) alive for good after every init() that replaced it
        mine = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _reset_if_alive(mine))

    def _reset(self) -> None:
        self._queue: deque[Settlement] = deque()
        self._cond = threading.Condition()
        self._pending = 0  # taken from the queue, not yet through (committed or lost, hooks run)
        self._in_hand = 0  # of those, neither committed nor counted lost yet
        self._closed = False
        self._thread: threading.Thread | None = None
        self._writing = threading.RLock()  # writes made without the thread (after close), one at a time

    def put(self, settlement: Settlement) -> None:
        """Queue one settlement (never blocks the caller while the writer is open). After
        `close` (a call that was in flight through `init()` or `shutdown()`) it is committed
        here, so its event is kept and its hold released."""
        if len(self._queue) >= self.capacity:
            self.dropped += 1
            self._on_loss("queue_full", 1)
            return
        with self._cond:  # with the lock a closing thread decides under: it sees this, or we see it gone
            self._queue.append(settlement)
            running = self._thread is not None
            if running and len(self._queue) >= self.batch:
                self._cond.notify()
        if not running:
            self._start()

    def _start(self) -> None:
        """Start the thread; once closed, write what is queued here instead."""
        with self._cond:
            if self._thread is not None:
                return
            if not self._closed:
                self._thread = threading.Thread(target=self._run, name="cascadeflow-ledger",
                                                daemon=True)
                self._thread.start()
                return
            taken = [self._queue.popleft() for _ in range(len(self._queue))]
        self._write_here(taken)

    def _write_here(self, taken: list[Settlement]) -> None:
        """Write on the calling thread (no writer thread runs): one such write at a time."""
        if taken:
            with self._writing:
                self._write(taken)

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            self._ended()

    def _loop(self) -> None:
        while True:
            with self._cond:
                if not self._queue and not self._closed:
                    self._cond.wait(self.interval_s)
                if self._closed and not self._queue:
                    self._thread = None  # with the lock: a `put` from now on writes itself
                    return
                taken = [self._queue.popleft() for _ in range(min(len(self._queue), self.batch))]
                self._pending = self._in_hand = len(taken)
            if taken:
                self._write(taken)
            with self._cond:
                self._pending = 0
                self._cond.notify_all()
            with self._cond:  # gather a batch rather than commit each call; close wakes it
                if len(self._queue) < self.batch and not self._closed:
                    self._cond.wait(self.interval_s / 4)

    def _ended(self) -> None:
        """The thread is ending (closed, or killed by something `_write` does not catch, such
        as a hook's SystemExit): what it held uncommitted is lost, and the next `put` or `flush`
        finds no thread and starts one or writes itself."""
        with self._cond:
            held, self._pending = self._in_hand, 0
            self._thread = None
            self._cond.notify_all()
        if held:
            self._lose(held, "writer_died", "the ledger's writer thread died")

    def _write(self, taken: list[Settlement]) -> None:
        """Commit `taken`; a batch that fails for a reason other than the store is written again
        one settlement at a time, so one bad record costs only itself."""
        try:
            committed = self._commit_retrying(taken)
        except Exception as exc:
            if len(taken) > 1:
                for one in taken:
                    self._write([one])
                return
            log.exception("cascadeflow ledger: a record could not be written")
            self._lose(1, "write_failed", f"{type(exc).__name__}")
            return
        if committed:
            self.written += len(taken)
            self._in_hand = max(self._in_hand - len(taken), 0)
            try:
                self._on_commit(taken)
            except Exception:  # alerts after a commit never undo it
                log.exception("cascadeflow ledger: after-commit hook failed")

    def _commit_retrying(self, taken: list[Settlement]) -> bool:
        """Commit, retrying while the store is unavailable; False once `taken` was lost to it."""
        for attempt in range(RETRIES):
            try:
                self._commit(taken)
                return True
            except StoreUnavailable as exc:
                if attempt == RETRIES - 1:
                    self._lose(len(taken), "store_unavailable", str(exc))
                    return False
                time.sleep(0.05 * 2 ** attempt)
        return False

    def _lose(self, count: int, why: str, detail: str) -> None:
        self.lost += count
        self._in_hand = max(self._in_hand - count, 0)
        log.error("cascadeflow ledger: %d settlements lost (%s): %s", count, why, detail)
        try:
            self._on_loss(why, count)
        except Exception:  # the alert's failure must not stop the writer too
            log.exception("cascadeflow ledger: loss hook failed")

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is committed (or lost); False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._cond.notify_all()
            while self._queue or self._pending:
                if self._thread is None:  # never started, or ended: nobody else will write
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(0.05 if left is None else min(left, 0.05))
            # no thread (never started, or ended): write here; popped one by one, as a `put`
            # appends beside us without the lock
            taken = [] if self._thread is not None else \
                [self._queue.popleft() for _ in range(len(self._queue))]
        self._write_here(taken)
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Write what is queued, then stop the thread. It is waited for: a settlement `put`
        while it was still running went to its queue, and nothing would wait for that one (a
        call in flight through `shutdown()` lost its event to the exit, or showed up late).
        From then on each `put` writes on its caller's thread."""
        done = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if done and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)  # not after a timeout: it is stuck in a commit
        return done


def _reset_if_alive(writer: weakref.ref[Writer]) -> None:
    """A forked child's writer starts with an empty queue and no thread (if it still exists)."""
    alive = writer()
    if alive is not None:
        alive._reset()
