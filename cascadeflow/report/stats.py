"""Numbers over runs: percentiles, totals, cost and calls by day / user / agent / model, latency."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cascadeflow.quantiles import percentile
from cascadeflow.report.model import Run, Step


@dataclass(slots=True)
class Totals:
    runs: int = 0
    observe_runs: int = 0
    enforce_runs: int = 0
    steps: int = 0
    cost: float = 0.0
    cost_unknown_steps: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    tool_calls: int = 0
    stops: int = 0  # applied stops (enforce)
    would_stop: int = 0  # stops observe recorded without applying
    stopped_runs: int = 0
    fallbacks: int = 0
    retries: int = 0
    findings: int = 0
    degraded_runs: int = 0
    errors: int = 0
    first: float | None = None
    last: float | None = None


def totals(runs: Iterable[Run]) -> Totals:
    t = Totals()
    for run in runs:
        t.runs += 1
        t.observe_runs += run.mode == "observe"
        t.enforce_runs += run.mode == "enforce"
        t.steps += run.step_count
        t.cost += run.cost
        t.cost_unknown_steps += run.cost_unknown_steps
        t.tokens_in += run.tokens_in
        t.tokens_out += run.tokens_out
        t.tool_calls += run.tool_calls
        t.stopped_runs += run.stopped
        t.fallbacks += run.fallbacks
        t.retries += run.retries
        t.degraded_runs += run.degraded
        t.errors += sum(1 for s in run.steps if s.error)
        for mark in run.marks:
            if mark.operation == "guardrail":
                t.findings += mark.count
            elif mark.action == "stop" and mark.operation != "cascade":
                if mark.applied:
                    t.stops += 1
                else:
                    t.would_stop += 1
        if run.started is not None:
            t.first = run.started if t.first is None else min(t.first, run.started)
            t.last = run.started if t.last is None else max(t.last, run.started)
    return t


@dataclass(slots=True)
class Group:
    """Spend and use of one day, user, agent or model."""

    name: str
    cost: float = 0.0
    calls: int = 0
    tokens: int = 0
    runs: set[str] = field(default_factory=set)


NO_LABEL = "(none)"
NOT_KEPT = "(entries not kept)"  # what a bounded trace dropped: its run's totals less the rest


def _day(step: Step, run: Run) -> str:
    when = step.ts if step.ts is not None else run.started
    return NO_LABEL if when is None else datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d")


# what each breakdown groups a step under
KEYS: dict[str, Callable[[Step, Run], str | None]] = {
    "day": _day,
    "user": lambda step, run: run.user,
    "agent": lambda step, run: step.agent,
    "model": lambda step, run: step.model if step.operation != "tool" else None,
}


def breakdown(runs: Iterable[Run], by: str) -> list[Group]:
    """Cost, calls and tokens per key, most expensive first (days in date order). Tool
    executions are calls of their agent and day, never of a model; steps enforcement kept from
    being sent are not calls. A run whose bounded trace dropped entries adds what they were
    (its exact totals less the entries kept) under its user, or `NOT_KEPT`: the groups
    always add up to the total."""
    key = KEYS[by]
    groups: dict[str, Group] = {}

    def add(name: str, run: Run, cost: float, calls: int, tokens: int) -> None:
        g = groups.get(name)
        if g is None:
            g = groups[name] = Group(name)
        g.cost += cost
        g.calls += calls
        g.tokens += tokens
        g.runs.add(run.run_id)

    for run in runs:
        kept_cost, kept_tokens = 0.0, 0
        for step in run.steps:
            kept_cost += step.cost or 0.0
            kept_tokens += step.tokens_in + step.tokens_out
            if not step.sent:
                continue
            name = key(step, run)
            if name is None:
                if by == "model":
                    continue
                name = NO_LABEL
            add(name, run, step.cost or 0.0, 1, step.tokens_in + step.tokens_out)
        if run.dropped:
            calls = max(run.step_count - len(run.steps), 0)
            cost = max(run.cost - kept_cost, 0.0)
            tokens = max(run.tokens_in + run.tokens_out - kept_tokens, 0)
            if calls or cost or tokens:
                add((run.user or NO_LABEL) if by == "user" else NOT_KEPT, run, cost, calls, tokens)
    if by == "day":
        return sorted(groups.values(), key=lambda g: g.name)
    return sorted(groups.values(), key=lambda g: (-g.cost, -g.calls, g.name))


@dataclass(slots=True)
class LatencyRow:
    name: str
    count: int
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None


def latency(runs: Iterable[Run], by: str) -> list[LatencyRow]:
    """P50/P95/P99 of step latency per agent or model, over the steps that have one."""
    key = KEYS[by]
    values: dict[str, list[float]] = {}
    for run in runs:
        for step in run.steps:
            if step.latency_ms is None:
                continue
            name = key(step, run) or (f"tool {step.tool}" if by == "model" and step.tool else NO_LABEL)
            values.setdefault(name, []).append(step.latency_ms)
    rows = [LatencyRow(name, len(v), percentile(v, 50), percentile(v, 95), percentile(v, 99), max(v))
            for name, v in values.items()]
    return sorted(rows, key=lambda r: (-(r.p95 or 0.0), r.name))


def slowest(runs: Iterable[Run], n: int = 10) -> list[tuple[Run, Step]]:
    pairs = ((run, step) for run in runs for step in run.steps if step.latency_ms is not None)
    return heapq.nlargest(n, pairs, key=lambda p: p[1].latency_ms or 0.0)
