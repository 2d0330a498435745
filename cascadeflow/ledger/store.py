"""What a ledger store does, whatever it is backed by (SQLite on one machine, Redis across many).

Every figure is an integer: USD in nano-dollars (`nano`), tokens as tokens, so that counters
add up exactly in any store and Redis can keep them with INCRBY. A store does four things, each
one atomic:

- `figures`: what is settled and held in some windowed counters, for a decision;
- `acquire`: before a call, take its holds (the worst-case cost on each budget) and its request
  slots (rate limits) all at once, or none of them, checking every limit against what every
  process has settled and holds;
- `commit`: after calls, in one batch, append their usage events, add what they used to the
  counters and release their holds;
- `mark`: once per window and key (a budget's alert), whichever process gets there first.

Holds and a budget's amounts go into the bucket of the moment the call's hold was taken (its
start when it held nothing), so a call counts in the window that admitted it. A token or spend
rate's amounts go into the bucket of the call's end (its response): a rate limits what is used
in any minute or hour, and a call longer than the window would otherwise add its use to a
bucket already out of the window. A hold whose process died
mid-call is never released: it counts at its full amount for the rest of its window (the
provider may have billed it), so a budget errs on the side of caution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cascadeflow.ledger.events import Outcome, RunEntry, UsageEvent
from cascadeflow.windows import Window

NANO = 1_000_000_000


def nano(usd: float, up: bool = True) -> int:
    """USD as integer nano-dollars: rounded up for what is held (never less than the worst
    case), to the nearest for what was billed."""
    scaled = usd * NANO
    return math.ceil(scaled - 1e-6) if up else round(scaled)


class StoreUnavailable(Exception):
    """The store could not be read or written (a locked or full disk, Redis unreachable)."""


@dataclass(frozen=True, slots=True)
class Counter:
    """One windowed figure of one scope value: `budget:daily:u-42`, `tokens:per_user:u-42`."""

    key: str
    window: Window
    limit: int  # nano-USD or tokens
    at_end: bool = False  # a rate: counts what calls used in the bucket of their end, not start


@dataclass(frozen=True, slots=True)
class Claim:
    """Hold `amount` on `counter` if settled + held + amount stays within its limit (a budget);
    with `amount` 0, only ask that something is left (a token or spend rate)."""

    counter: Counter
    amount: int


@dataclass(frozen=True, slots=True)
class Slot:
    """One request in a sliding window of `seconds`, at most `limit` of them (requests_per_minute)."""

    key: str
    seconds: int
    limit: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why `acquire` took nothing: the claim or slot at `index` (claims first, then slots) did
    not fit, with the figures it saw."""

    index: int
    settled: int
    held: int


@dataclass(slots=True)
class Settlement:
    """What one settled call adds to each counter (in the bucket of `ts`, when its hold was
    taken or its start without one, or of `ended` for a rate's counter), and the hold it
    releases (its id, or None when it held nothing). A run's other trace entries and its
    outcomes travel the same way, without amounts: one writer, one batch, one transaction."""

    event: UsageEvent | None
    ts: float
    hold: str | None = None
    amounts: list[tuple[Counter, int]] = field(default_factory=list)
    entries: list[RunEntry] = field(default_factory=list)
    outcome: Outcome | None = None
    ended: float | None = None  # when the call's response arrived (None: at `ts`)

    def at(self, counter: Counter) -> float:
        """When the amount on `counter` counts: a rate's at the call's end, a budget's at `ts`."""
        return self.ended if counter.at_end and self.ended is not None else self.ts


class Store(Protocol):
    """A ledger backend. Every method may raise `StoreUnavailable`."""

    def figures(self, counters: Sequence[Counter], now: float) -> list[tuple[int, int]]:
        """(settled, held) of each counter in its window ending `now`."""

    def acquire(self, hold: str, claims: Sequence[Claim], slots: Sequence[Slot], now: float
                ) -> Refusal | None:
        """Take every claim's hold and every slot, or nothing: None when all were taken."""

    def commit(self, settlements: Sequence[Settlement]) -> None:
        """Append the events (and run entries, outcomes), add the amounts, release the holds: one
        atomic batch."""

    def mark(self, key: str, until: float) -> bool:
        """True the first time `key` is marked (kept until `until`); False after, in any process."""

    def purge(self, now: float) -> dict[str, int]:
        """Drop counters, holds, request slots and marks whose windows have passed."""

    def close(self) -> None: ...
