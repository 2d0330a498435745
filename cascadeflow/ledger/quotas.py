"""Which windowed budgets and rate limits apply to a chain of sessions, and their figures.

A `[budgets.NAME]` with `scope = "user"` is one budget per user: `SharedBudget` is that budget
for one user (or project, agent, run, or everyone), shaped like a session with only a budget so
the policy rules treat it like any other (they read `limits.budget`, `spent`, `reserved`). Its
`spent` and `reserved` are what every process settled and holds in the current window, read
from the store before each decision; the store checks them again, atomically, when the call
takes its hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cascadeflow.config import BudgetSpec, LimitSpec, RunLimits
from cascadeflow.ledger.store import NANO, Counter, Slot, nano
from cascadeflow.session import Session
from cascadeflow.windows import Window, parse

# what a counter, hold or request-slot key counts: `budget:NAME:VALUE`, `tokens:NAME:VALUE`, ...
KINDS = ("budget", "tokens", "usd", "requests")
MINUTE = parse("rolling:1m")
HOUR = parse("rolling:1h")


class SharedBudget:
    """One windowed budget of one scope value, as the policy rules see a session."""

    exceeded_reason = "budget_window_exceeded"  # the stop reason when this budget is the tightest
    agent: str | None = None
    steps = 0
    tool_calls = 0
    tool_executions = 0
    policy_view: Any = None

    def __init__(self, name: str, spec: BudgetSpec, value: str, window: Window) -> None:
        self.name = name
        self.spec = spec
        self.value = value
        self.limits = RunLimits(budget=spec.limit)
        self.counter = Counter(key("budget", name, value), window, nano(spec.limit, up=False))
        self.spent = 0.0  # USD settled in the window, every process
        self.reserved = 0.0  # USD held by calls in flight, every process

    def update(self, settled: int, held: int) -> None:
        self.spent, self.reserved = settled / NANO, held / NANO

    def __repr__(self) -> str:
        return f"budget {self.name} ({self.spec.scope} {self.value}, {self.spec.window})"


@dataclass(frozen=True, slots=True)
class Rate:
    """A token or spend rate of one scope value: checked against what settled in its window."""

    limit: str  # the [limits.NAME]
    unit: str  # "tokens" | "usd"
    counter: Counter


@dataclass(frozen=True, slots=True)
class Shares:
    """What a chain shares with other processes: budgets it is held to, budgets only watched
    (`mode = "observe"`), request slots and token/spend rates."""

    budgets: tuple[SharedBudget, ...]
    watched: tuple[SharedBudget, ...]
    slots: tuple[tuple[str, Slot], ...]  # (limit name, slot)
    rates: tuple[Rate, ...]

    @property
    def counters(self) -> list[Counter]:
        """Every counter a decision reads: budgets first, then the watched ones, then rates."""
        return [b.counter for b in (*self.budgets, *self.watched)] + [r.counter for r in self.rates]


class Quotas:
    """The configured budgets and limits; one `SharedBudget` per budget and scope value."""

    def __init__(self, budgets: Mapping[str, BudgetSpec], limits: Mapping[str, LimitSpec],
                 zone: str = "UTC") -> None:
        self.budgets = dict(budgets)
        self.limits = dict(limits)
        self.windows = {name: parse(spec.window, zone) for name, spec in self.budgets.items()}

    def budget(self, counter_key: str) -> SharedBudget | None:
        """The budget a counter key names (`budget:NAME:VALUE`), or None for a rate's key or a
        budget no longer configured. (Derived from the key: nothing is kept per user.)"""
        kind, _, rest = counter_key.partition(":")
        name, _, value = rest.partition(":")
        spec = self.budgets.get(name)
        if kind != "budget" or spec is None:
            return None
        return SharedBudget(name, spec, value, self.windows[name])

    def shares(self, chain: tuple[Session, ...]) -> Shares | None:
        """The budgets and limits that apply to a step in `chain`, or None when none does."""
        budgets: list[SharedBudget] = []
        watched: list[SharedBudget] = []
        for name, spec in self.budgets.items():
            value = scope_value(spec.scope, chain)
            if value is None or (spec.only and value not in spec.only):
                continue
            state = SharedBudget(name, spec, value, self.windows[name])  # once per session's view
            (watched if spec.mode == "observe" else budgets).append(state)
        slots: list[tuple[str, Slot]] = []
        rates: list[Rate] = []
        for name, limit in self.limits.items():
            value = scope_value(limit.scope, chain)
            if value is None or (limit.only and value not in limit.only):
                continue
            if limit.requests_per_minute is not None:
                slots.append((name, Slot(key("requests", name, value), 60,
                                         limit.requests_per_minute)))
            if limit.tokens_per_minute is not None:
                rates.append(Rate(name, "tokens", Counter(key("tokens", name, value), MINUTE,
                                                          limit.tokens_per_minute, at_end=True)))
            if limit.usd_per_hour is not None:
                rates.append(Rate(name, "usd", Counter(key("usd", name, value), HOUR,
                                                       nano(limit.usd_per_hour, up=False),
                                                       at_end=True)))
        if not (budgets or watched or slots or rates):
            return None
        return Shares(tuple(budgets), tuple(watched), tuple(slots), tuple(rates))


def key(kind: str, name: str, value: str) -> str:
    """The store key of one budget's or limit's figure for one scope value."""
    return f"{kind}:{name}:{value}"


def scope_value(scope: str, chain: tuple[Session, ...]) -> str | None:
    """The user, project, agent or run a step in `chain` counts for (None: the scope does not
    apply, e.g. a per-user budget for a call made without a user)."""
    if scope == "global":
        return "*"
    if scope == "user":
        return next((s.user for s in chain if s.user is not None), None)
    if scope == "project":
        return next((s.project for s in chain if s.project is not None), None)
    if scope == "agent":
        return chain[0].agent_in_chain
    outermost = chain[-1]
    return None if outermost.ambient else outermost.run_id
