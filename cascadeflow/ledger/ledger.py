"""The ledger of one `init()`: usage events on disk, windowed budgets and rate limits shared by
every process (and, with Redis, every machine), metering sinks and budget alerts.

The caller's thread touches it only for steps under a windowed budget or a rate limit (a read of
the figures before the decision, one atomic `acquire` after it). Everything else is the
worker's (building a settlement) and the writer's (committing a batch, then telling the sinks
and raising alerts).
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import IO, Any

from cascadeflow.alert import Alert
from cascadeflow.config import LedgerSpec
from cascadeflow.entry import SIDE_OPERATIONS, Entry
from cascadeflow.ledger.cache import CacheWatch
from cascadeflow.ledger.events import ENTRY_KEYS, Outcome, RunEntry, UsageEvent, to_json
from cascadeflow.ledger.quotas import Quotas, SharedBudget, Shares, scope_value
from cascadeflow.ledger.sqlite import SQLiteStore
from cascadeflow.ledger.store import Claim, Refusal, Settlement, Store, StoreUnavailable, nano
from cascadeflow.ledger.writer import Writer
from cascadeflow.session import Session
from cascadeflow.windows import Window

log = logging.getLogger("cascadeflow.ledger")
Sink = Callable[[dict[str, Any]], None]


class Ledger:
    def __init__(self, spec: LedgerSpec, quotas: Quotas, alert: Callable[[Alert], None],
                 sinks: Sequence[Sink] = (), store: Store | None = None) -> None:
        self.spec = spec
        self.quotas = quotas
        self.events = SQLiteStore(spec.path, counters=store is None)
        self.store: Store = store if store is not None else self.events
        self._alert = alert
        self.sinks = list(sinks)
        self.sink_errors = 0
        self.store_errors = 0  # reads and holds the store refused on the caller's thread
        # an outage is on (a read or hold failed, none succeeded since): its first failure is
        # alerted, and again once the store answers and fails anew (each outage its own alert)
        self._store_down = False
        self._store_errors_lock = threading.Lock()
        self.hash_key = self.events.secret("prefix_hash_key")  # the same in every process
        self.cache = CacheWatch(alert)
        self._jsonl: IO[str] | None = None
        self._jsonl_lock = threading.Lock()
        self._jsonl_failing = False  # alerted once until a write succeeds again
        self._closed = False  # a settlement after close is written by the writer all the same
        self._owed: list[Settlement] = []  # spend the shared store has not taken yet (writer's)
        self.counters_lost = 0
        # the queue overflowed since the last commit: alerted once, not per dropped record (a
        # locked file turned away thousands, whose alerts crowded out every other alert)
        self._dropping = False
        self._dropping_lock = threading.Lock()
        self.writer = Writer(self._commit, self._committed, self._lost, spec.queue_size,
                             spec.flush_interval_s)
        # a forked child owes none of its parent's spend: the parent sends it (each sent it, and
        # the budget counted those calls twice); as the writer's hook, never unregistered, so weak
        mine = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _forget_owed(mine))

    # -- the caller's thread ---------------------------------------------------------------
    def shares(self, chain: tuple[Session, ...]) -> Shares | None:
        return self.quotas.shares(chain)

    def refresh(self, shares: Shares, now: float) -> None:
        """Read what every process settled and holds into the chain's budgets."""
        states = (*shares.budgets, *shares.watched)
        figures = self.store.figures([s.counter for s in states], now)
        self._store_down = False
        for state, (settled, held) in zip(states, figures, strict=True):
            state.update(settled, held)

    def acquire(self, shares: Shares, hold: str, reservation: float, now: float) -> Refusal | None:
        """Hold `reservation` USD on every budget of the chain and take a request slot of every
        rate limit, or nothing (see `Store.acquire`; the index counts budgets, rates, slots)."""
        amount = nano(reservation) if reservation > 0 else 0
        claims = [Claim(b.counter, amount) for b in shares.budgets]
        claims += [Claim(r.counter, 0) for r in shares.rates]
        refusal = self.store.acquire(hold, claims, [slot for _, slot in shares.slots], now)
        self._store_down = False
        return refusal

    def store_failed(self) -> bool:
        """Count a read or hold the store refused; True when it is to be alerted: the first
        failure of an outage (the first since the store last answered), then every thousandth."""
        with self._store_errors_lock:
            self.store_errors += 1
            first, self._store_down = not self._store_down, True
            return first or self.store_errors % 1000 == 0

    # -- the worker --------------------------------------------------------------------------
    def settle(self, settlement: Settlement) -> None:
        self.writer.put(settlement)

    def outcome(self, session: Session, label: str, value: float | None, ts: float) -> None:
        """Keep what a run or an @agent call delivered (`session.outcome`), with where it sits
        in its run, for the report's completion rates."""
        chain, root, parent = session.chain, session.chain[-1], session.parent
        self.writer.put(Settlement(None, ts, outcome=Outcome(
            session.run_id, ts, label, value, scope_value("user", chain),
            scope_value("project", chain), session.agent_in_chain,
            None if root.ambient else root.run_id, None if parent is None else parent.run_id)))

    def entries(self, chain: tuple[Session, ...], number: int, entries: Sequence[Entry],
                primary: Entry | None = None) -> None:
        """Keep a run's non-allow trace entries (numbered `number` in its outermost session):
        what the report needs of its decisions, findings and cascade events besides the usage
        events. `primary` is the step's own decision, which its usage event also carries."""
        root = chain[-1]
        shown = [e for e in entries if e.action != "allow"]
        if not shown or root.ambient:  # calls outside any run() are no run to review
            return
        user = scope_value("user", chain)
        kept = [RunEntry(root.run_id, e.run_id, number, e.ts, user, _labels(e, e is primary))
                for e in shown]
        self.writer.put(Settlement(None, kept[0].ts, entries=kept))

    # -- the writer --------------------------------------------------------------------------
    def _commit(self, batch: Sequence[Settlement]) -> None:
        """One batch: events and counters in one SQLite transaction; with Redis, the events on
        disk first (a failure there retries the batch whole), then the counters, which a Redis
        outage leaves owed and retried alone with the next batch, so no event is written twice
        and none is lost to the outage. It raises only when no event of the batch was written
        (the writer may then write the batch again, one settlement at a time)."""
        if self.store is self.events:
            self.store.commit(batch)
            return
        self.events.commit(batch)
        owed = self._owed + [Settlement(None, s.ts, s.hold, s.amounts, ended=s.ended)
                             for s in batch if s.amounts or s.hold is not None]
        try:
            self.store.commit(owed)
        except Exception as exc:  # StoreUnavailable, or any other: the events are on disk
            kept = owed[-self.spec.queue_size:]
            if not self._owed:
                self._alert(Alert("ledger_write_failed", f"the shared store refused the spend of "
                                  f"{len(owed)} calls ({exc}); their events are on disk and the "
                                  f"spend is retried with the next batch", attributes={
                                      "why": "counters_owed", "count": len(owed)}))
            self._owed = kept
            self._counters_lost(len(owed) - len(kept), "more owed than queue_size")
        else:
            self._owed = []

    def _committed(self, batch: Sequence[Settlement]) -> None:
        self._dropping = False  # a write went through: the next overflow is news again
        events = [s.event for s in batch if s.event is not None]
        if events and (self.sinks or self.spec.events_jsonl):
            self._deliver(events)
        self.cache.observe(events)
        touched = {c.key for s in batch for c, amount in s.amounts if amount}
        states = [b for key in touched if (b := self.quotas.budget(key)) is not None]
        if states:
            try:
                self._check_thresholds(states, max(s.ts for s in batch))
            except StoreUnavailable as exc:  # the outage itself is alerted where it is met
                log.warning("cascadeflow ledger: budget thresholds not checked: %s", exc)

    def _deliver(self, events: list[UsageEvent]) -> None:
        rows = [e.as_dict() for e in events]
        if self.spec.events_jsonl:
            self._append_jsonl(self.spec.events_jsonl, rows)
        for sink in self.sinks:
            for row in rows:
                try:
                    sink(row)
                except Exception:
                    self.sink_errors += 1
                    if self.sink_errors == 1 or self.sink_errors % 1000 == 0:
                        log.exception("cascadeflow usage sink %r failed (%d so far)", sink,
                                      self.sink_errors)

    def _append_jsonl(self, path: str, rows: list[dict[str, Any]]) -> None:
        """Append the rows to `events_jsonl` (`path`). A failure (a missing directory, no
        permission, a full disk) is counted as a sink's (`usage_sink_errors`, per row) and
        alerted once until a write succeeds again; it never keeps the other sinks or the budget
        alerts from running. The file is opened again for the next batch, and whenever the
        path no longer names the file held open: a consumer rotated it by renaming, or
        `cascadeflow ledger forget` rewrote it (events written on into the old file were kept
        in a rotated file for ever, or lost with the unlinked one)."""
        try:
            with self._jsonl_lock:
                if self._jsonl is not None and _moved(path, self._jsonl):
                    with suppress(OSError, ValueError):
                        self._jsonl.close()
                    self._jsonl = None
                if self._jsonl is None:
                    self._jsonl = open(path, "a", encoding="utf-8")  # noqa: SIM115
                self._jsonl.write("".join(to_json(r) + "\n" for r in rows))
                self._jsonl.flush()
                if self._closed:  # a call that was in flight at close: leave no file open
                    self._jsonl.close()
                    self._jsonl = None
        except Exception as exc:  # OSError mostly; whatever it is, the sinks and alerts go on
            self._jsonl_failed(path, len(rows), exc)
        else:
            self._jsonl_failing = False

    def _jsonl_failed(self, path: str, count: int, exc: Exception) -> None:
        with self._jsonl_lock:
            if self._jsonl is not None:
                with suppress(OSError, ValueError):
                    self._jsonl.close()
                self._jsonl = None
        self.sink_errors += count
        log.error("cascadeflow ledger: %d usage events not written to %s: %s", count, path, exc)
        if not self._jsonl_failing:
            self._jsonl_failing = True
            self._alert(Alert("ledger_write_failed", f"{count} usage events could not be appended "
                              f"to events_jsonl {path} ({exc}); they are in the ledger, and the "
                              f"other sinks and budget alerts still run (alerted once until a "
                              f"write succeeds)", severity="error",
                              attributes={"why": "events_jsonl", "count": count, "path": path}))

    def _check_thresholds(self, states: list[SharedBudget], now: float) -> None:
        """Alert once per window (across processes) when a budget crosses `alert_at`, and when a
        budget only watched (`mode = "observe"`) would have stopped calls."""
        figures = self.store.figures([s.counter for s in states], now)
        for state, (settled, _held) in zip(states, figures, strict=True):
            spec, window = state.spec, state.counter.window
            share = settled / state.counter.limit
            period, until = _alert_period(window, now)
            marks = []
            if spec.alert_at is not None and share >= spec.alert_at:
                marks.append(("budget_threshold", f"{spec.alert_at:.0%} threshold"))
            if spec.mode == "observe" and share >= 1.0:
                marks.append(("budget_window_exceeded", "limit reached; observe mode, so calls "
                                                        "go on (enforce would stop them)"))
            for kind, what in marks:
                if self.store.mark(f"{kind}:{state.counter.key}:{period}", until):
                    self._alert(Alert(kind, f"budget {state.name} for {state.spec.scope} "
                                      f"{state.value} spent {settled / 1e9:.6f} of {spec.limit} USD "
                                      f"in {window.label(now)}: {what}",
                                      attributes={"budget": state.name, "scope": spec.scope,
                                                  "value": state.value, "limit": spec.limit,
                                                  "spent": settled / 1e9, "window": window.text}))

    def _counters_lost(self, count: int, why: str) -> None:
        if count:
            self.counters_lost += count
            self._alert(Alert("ledger_write_failed", f"the spend of {count} calls never reached "
                              f"the shared store ({why}); their events are on disk, but budgets "
                              f"shared through the store miss it", severity="error",
                              attributes={"why": "counters_lost", "count": count}))

    def _lost(self, why: str, count: int) -> None:
        if why == "queue_full":  # one settlement at a time, on the callers' threads
            with self._dropping_lock:
                if self._dropping:
                    return
                self._dropping = True
            self._alert(Alert("ledger_write_failed", f"the ledger's queue ({self.spec.queue_size} "
                              f"records) is full: the writer cannot keep up or the file is "
                              f"locked, and usage events are dropped; more drops are counted in "
                              f"stats()['ledger_dropped'], not alerted again until a write "
                              f"succeeds", severity="error",
                              attributes={"why": why, "count": count}))
            return
        self._alert(Alert("ledger_write_failed", f"{count} ledger records (usage events, run "
                          f"entries, outcomes) could not be written ({why}); budgets shared "
                          f"through the ledger miss the spend of those that were usage events",
                          severity="error", attributes={"why": why, "count": count}))

    # -- lifecycle ---------------------------------------------------------------------------
    def flush(self, timeout: float | None = None) -> bool:
        return self.writer.flush(timeout)

    def close(self, timeout: float | None = 5.0) -> None:
        stopped = self.writer.close(timeout)
        if stopped and self._owed:  # the writer is idle: a last try at the spend Redis refused
            try:
                self.store.commit(self._owed)
            except StoreUnavailable as exc:
                self._counters_lost(len(self._owed), str(exc))
            self._owed = []
        with self._jsonl_lock:
            self._closed = True
            if self._jsonl is not None:
                self._jsonl.close()
                self._jsonl = None
        if not stopped:  # the writer is still in a commit (a ledger another process holds
            # locked): closing its connection under it waited out the busy timeout, or crashed
            # the interpreter; it keeps them, and commits if the process lives long enough
            log.warning("cascadeflow ledger: the writer did not finish within %s s; what it "
                        "holds is committed if the process lives on", timeout)
            return
        self.store.close()
        if self.store is not self.events:
            self.events.close()

    def stats(self) -> dict[str, int]:
        return {"ledger_written": self.writer.written, "ledger_dropped": self.writer.dropped,
                "ledger_lost": self.writer.lost, "ledger_store_errors": self.store_errors,
                "ledger_counters_owed": len(self._owed), "ledger_counters_lost": self.counters_lost,
                "usage_sink_errors": self.sink_errors}


def _forget_owed(ledger: weakref.ref[Ledger]) -> None:
    """In a forked child: the spend its parent owes the shared store stays the parent's."""
    alive = ledger()
    if alive is not None:
        alive._owed = []


def _moved(path: str, handle: IO[str]) -> bool:
    """Whether `path` no longer names the file `handle` has open (renamed, replaced, removed):
    one stat per batch, as logging's WatchedFileHandler does."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return True
    held = os.fstat(handle.fileno())
    return (now.st_dev, now.st_ino) != (held.st_dev, held.st_ino)


def _alert_period(window: Window, now: float) -> tuple[int, int]:
    """Where a budget alerts at most once (its start and end): its calendar window, or a stretch
    of a rolling window's length (aligned to the epoch), not each of its 60 buckets, which
    alerted a budget that stayed over `alert_at` every minute of a `rolling:1h`."""
    if window.calendar is not None:
        return window.bucket(now), window.end(now)
    start = int(now // window.seconds) * window.seconds
    return start, start + window.seconds


def _labels(entry: Entry, primary: bool) -> dict[str, Any]:
    """The entry's `ENTRY_KEYS` that have a value."""
    data = entry.as_dict(0)
    if entry.operation in SIDE_OPERATIONS:
        data.pop("message", None)
    if primary:
        data["primary"] = True
    return {k: data[k] for k in ENTRY_KEYS if data.get(k) is not None and data.get(k) != []}


__all__ = ["Ledger", "StoreUnavailable"]
