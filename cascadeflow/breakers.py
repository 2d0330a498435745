"""Circuit breakers per deployment (`provider/model` at an api_base): closed, open, half-open.

A breaker opens after `failure_threshold` consecutive failures, or when the failure rate over the
last `window` calls reaches `failure_rate` (once `min_calls` are in the window). While open, the
cascade skips the tier without sending anything. After `recovery_timeout` seconds it lets exactly
`half_open_max_calls` probe calls through: if they all succeed it closes, if one fails it opens
again. Only those probes decide: a call admitted before (while closed, or as a probe of an earlier
half-open period) that answers late says nothing about the deployment now, so each admission is a
`Ticket` that its outcome is reported with. A probe that reports nothing within `probe_timeout`
(it hangs, or its caller vanished without a word) counts as failed, so a lost probe can never
wedge the breaker half-open.
State lives behind `BreakerStore`, so a shared store can replace the in-process one.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from cascadeflow.secrets import mask

log = logging.getLogger("cascadeflow")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
Listener = Callable[[str, str, str], None]  # (deployment, old state, new state)
T = TypeVar("T")
# where a deployment key's endpoint starts: "@" then a URL scheme, or "@" at the end (no endpoint)
_ENDPOINT = re.compile(r"@(?:[A-Za-z][A-Za-z0-9+.-]*://|$)")


def deployment_key(model: str, endpoint: str) -> str:
    """What a breaker guards: `model@endpoint` (the endpoint empty for the provider's own). A
    password or key in the endpoint is masked: the key names the breaker in alerts, metrics
    and a shared store's keys, and two credentials for one endpoint share its health."""
    return f"{model}@{mask(endpoint)}" if endpoint else f"{model}@"


def model_of(key: str) -> str:
    """The model of a deployment key, without the endpoint (an address that may carry
    credentials, never shown in a trace). A model name may hold "@" itself (vertex_ai/x@2024)."""
    found = _ENDPOINT.search(key)
    return key[:found.start()] if found else key.split("@", 1)[0]


@dataclass(frozen=True)
class BreakerSettings:
    failure_threshold: int = 5
    failure_rate: float = 0.5
    window: int = 20
    min_calls: int = 10
    recovery_timeout: float = 30.0
    half_open_max_calls: int = 1
    probe_timeout: float = 60.0


@dataclass
class BreakerState:
    state: str = CLOSED
    opened_at: float = 0.0
    consecutive: int = 0
    outcomes: deque[bool] = field(default_factory=deque)  # True = failure
    probes_started: int = 0
    probes_succeeded: int = 0
    probe_since: float | None = None  # when probes last went from none unanswered to some


@dataclass(frozen=True)
class Ticket:
    """What `admit` hands a call: whether it is a probe, and of which half-open period (named by
    when the breaker opened before it). Its outcome, reported with it, decides a half-open
    breaker only if it is a probe of this period."""

    probe: bool
    opened_at: float


class BreakerStore(Protocol):
    """Where breaker state lives; the in-process store is the default. A store shared by several
    processes also offers `update(key, change)` (see `update`), so that two processes' changes
    never overwrite each other."""

    def load(self, key: str) -> BreakerState: ...

    def save(self, key: str, state: BreakerState) -> None: ...


# what a breaker does to its state: the result, and whether the state changed (to be saved)
Change = Callable[[BreakerState], tuple[T, bool]]


def update(store: BreakerStore, key: str, change: Change[T]) -> T:
    """Apply `change` to the state of `key` in `store` as one step: through the store's own
    `update` when it has one (a shared store: atomic across processes, so two replicas cannot
    both take the last probe slot), else load, change, save."""
    atomic: Callable[[str, Change[T]], T] | None = getattr(store, "update", None)
    if atomic is not None:
        return atomic(key, change)
    state = store.load(key)
    result, changed = change(state)
    if changed:
        store.save(key, state)
    return result


class InMemoryBreakerStore:
    def __init__(self) -> None:
        self._states: dict[str, BreakerState] = {}

    def load(self, key: str) -> BreakerState:
        return self._states.setdefault(key, BreakerState())

    def save(self, key: str, state: BreakerState) -> None:
        self._states[key] = state

    def update(self, key: str, change: Change[T]) -> T:
        """The state is this store's own object, changed in place (under the breaker's lock)."""
        return change(self.load(key))[0]


class CircuitBreaker:
    """Thread- and asyncio-safe: every transition happens under one short lock, never awaiting.
    With a shared store, each decision is one atomic update of the shared state."""

    def __init__(self, key: str, settings: BreakerSettings, store: BreakerStore,
                 clock: Callable[[], float] = time.monotonic,
                 listeners: list[Listener] | None = None) -> None:
        self.key = key
        self.settings = settings
        self.store = store
        self.clock = clock
        self.listeners = listeners if listeners is not None else []
        self._lock = threading.Lock()

    def _apply(self, change: Callable[[BreakerState, list[tuple[str, str]]], tuple[T, bool]]) -> T:
        """`change` after the transitions time makes (open -> half-open, a lost probe), as one
        update of the store; listeners hear the transitions of the update that was kept (a
        shared store may run `change` again on a state another process changed meanwhile)."""
        moves: list[tuple[str, str]] = []

        def step(s: BreakerState) -> tuple[T, bool]:
            moves.clear()
            timed = self._advance(s, moves)
            result, changed = change(s, moves)
            return result, changed or timed

        with self._lock:
            result = update(self.store, self.key, step)
            for old, new in moves:
                for listener in self.listeners:
                    listener(self.key, old, new)
        return result

    @property
    def state(self) -> str:
        return self._apply(lambda s, moves: (s.state, False))

    def _advance(self, s: BreakerState, moves: list[tuple[str, str]]) -> bool:
        """The transitions time alone makes; whether it made one."""
        if s.state == OPEN and self.clock() - s.opened_at >= self.settings.recovery_timeout:
            self._move(s, HALF_OPEN, moves)
            s.probes_started = s.probes_succeeded = 0
            s.probe_since = None
            return True
        if s.state == HALF_OPEN and s.probe_since is not None and \
                self.clock() - s.probe_since >= self.settings.probe_timeout:
            self._move(s, OPEN, moves)  # a probe that never answered: the deployment has not recovered
            s.probe_since = None
            return True
        return False

    def _move(self, s: BreakerState, new: str, moves: list[tuple[str, str]]) -> None:
        moves.append((s.state, new))
        s.state = new
        if new == OPEN:
            s.opened_at = self.clock()

    def acquire(self) -> bool:
        """May a call go to this deployment now? (`admit`, for a caller that reports no outcome.)"""
        return self.admit() is not None

    def admit(self) -> Ticket | None:
        """A ticket if a call may go to this deployment now, else None. Half-open hands out
        exactly the probe slots; report the call's outcome with its ticket."""
        def take(s: BreakerState, moves: list[tuple[str, str]]) -> tuple[Ticket | None, bool]:
            if s.state == CLOSED:
                return Ticket(False, s.opened_at), False
            if s.state == HALF_OPEN and s.probes_started < self.settings.half_open_max_calls:
                if s.probes_started == s.probes_succeeded:
                    s.probe_since = self.clock()
                s.probes_started += 1
                return Ticket(True, s.opened_at), True
            return None, False

        return self._apply(take)

    def _stale(self, s: BreakerState, ticket: Ticket | None) -> bool:
        """Whether a half-open breaker must ignore this outcome: the call was no probe of this
        half-open period (None: a caller that vouches for its outcome, as before tickets).
        Two periods' openings are at least `recovery_timeout` apart; half of it absorbs the
        wall-clock translation of a shared store, which moves `opened_at` by microseconds."""
        return s.state == HALF_OPEN and ticket is not None and not (
            ticket.probe and abs(ticket.opened_at - s.opened_at) < self.settings.recovery_timeout / 2)

    def success(self, ticket: Ticket | None = None) -> None:
        def note(s: BreakerState, moves: list[tuple[str, str]]) -> tuple[None, bool]:
            if self._stale(s, ticket):
                return None, False
            if s.state == HALF_OPEN:
                s.probes_succeeded += 1
                if s.probes_started == s.probes_succeeded:
                    s.probe_since = None
                if s.probes_succeeded >= self.settings.half_open_max_calls:
                    self._move(s, CLOSED, moves)
                    s.consecutive = 0
                    s.outcomes.clear()
            else:
                s.consecutive = 0
                self._note(s, failed=False)
            return None, True

        self._apply(note)

    def failure(self, ticket: Ticket | None = None) -> None:
        def note(s: BreakerState, moves: list[tuple[str, str]]) -> tuple[None, bool]:
            if self._stale(s, ticket):
                return None, False
            if s.state == HALF_OPEN:
                self._move(s, OPEN, moves)
            elif s.state == CLOSED:
                s.consecutive += 1
                self._note(s, failed=True)
                cfg = self.settings
                failures = sum(s.outcomes)
                if s.consecutive >= cfg.failure_threshold or (
                        len(s.outcomes) >= cfg.min_calls and failures / len(s.outcomes) >= cfg.failure_rate):
                    self._move(s, OPEN, moves)
            return None, True

        self._apply(note)

    def release(self, ticket: Ticket | None = None) -> None:
        """A call that was admitted ended without saying anything about the deployment: its
        probe slot, if it held one of this half-open period, goes back."""
        def give_back(s: BreakerState, moves: list[tuple[str, str]]) -> tuple[None, bool]:
            if self._stale(s, ticket):
                return None, False
            if s.state == HALF_OPEN and s.probes_started > s.probes_succeeded:
                s.probes_started -= 1
                if s.probes_started == s.probes_succeeded:
                    s.probe_since = None
                return None, True
            return None, False

        self._apply(give_back)

    def _note(self, s: BreakerState, failed: bool) -> None:
        s.outcomes.append(failed)
        while len(s.outcomes) > self.settings.window:
            s.outcomes.popleft()


class BreakerRegistry:
    """One breaker per deployment key, shared by every cascade in the process."""

    def __init__(self, store: BreakerStore | None = None) -> None:
        self.store: BreakerStore = store or InMemoryBreakerStore()
        self.listeners: list[Listener] = []
        self._breakers: dict[str, CircuitBreaker] = {}
        self._warned: set[str] = set()  # deployments whose breaker was asked for other settings
        self._lock = threading.Lock()

    def get(self, key: str, settings: BreakerSettings,
            clock: Callable[[], float] = time.monotonic) -> CircuitBreaker:
        with self._lock:
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = CircuitBreaker(key, settings, self.store, clock, self.listeners)
                self._breakers[key] = breaker
            elif breaker.settings != settings and key not in self._warned:
                self._warned.add(key)  # (the model only: an endpoint address can carry credentials)
                log.warning("the breaker of %s keeps the settings of the cascade that used it first "
                            "(%s); another cascade asked for %s", model_of(key), breaker.settings, settings)
            return breaker

    def use(self, store: BreakerStore | None) -> None:
        """Keep breaker state in `store` from now on (None: in this process, as it is if it
        already is). Breakers made so far are dropped: each holds the store it was made with."""
        with self._lock:
            if store is None and isinstance(self.store, InMemoryBreakerStore):
                return
            self.store = store or InMemoryBreakerStore()
            self._breakers.clear()

    def reset(self) -> None:
        """Forget every breaker (tests, or after a deploy that fixed the provider)."""
        with self._lock:
            self._breakers.clear()
            if isinstance(self.store, InMemoryBreakerStore):
                self.store = InMemoryBreakerStore()


breakers = BreakerRegistry()
