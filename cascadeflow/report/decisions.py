"""Decisions by reason, guardrail findings by rule and action, cascade events over time.

Only labels, counts and scores leave this module: a finding's matched text is never in the
trace, and a cascade event's provider message is left out too (it can quote the request).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cascadeflow.quantiles import percentile
from cascadeflow.report.model import Mark, Run

# guardrail actions that change nothing: what they catch is a near-miss, kept for tuning
NOTE_ONLY = frozenset({"log_only", "alert"})


@dataclass(slots=True)
class Tally:
    """Decisions or findings of one kind: applied, only recorded (observe), where, by what."""

    applied: int = 0
    would_have: int = 0
    runs: set[str] = field(default_factory=set)
    by: dict[str, int] = field(default_factory=dict)  # per agent (decisions) or stage (findings)
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return self.applied + self.would_have

    def note(self, m: Mark, run_id: str, by: str) -> None:
        n = m.count  # a finding counts every match it stands for
        if m.applied:
            self.applied += n
        else:
            self.would_have += n
        self.runs.add(run_id)
        self.by[by] = self.by.get(by, 0) + n
        self.reasons[m.reason] = self.reasons.get(m.reason, 0) + n


@dataclass(slots=True)
class DecisionRow(Tally):
    """Every non-allow policy decision or cascade event with one (action, reason)."""

    action: str = ""
    reason: str = ""
    example: str | None = None  # cascadeflow's own message for the first one


def decisions(runs: Iterable[Run]) -> list[DecisionRow]:
    """Policy decisions and cascade events (guardrail findings have their own section), most
    frequent first."""
    rows: dict[tuple[str, str], DecisionRow] = {}
    for run in runs:
        for m in run.marks:
            if m.operation == "guardrail":
                continue
            row = rows.setdefault((m.action, m.reason), DecisionRow(action=m.action,
                                                                           reason=m.reason))
            row.note(m, run.run_id, m.agent or "-")
            if row.example is None and m.message:
                row.example = m.message
    return sorted(rows.values(), key=lambda r: (-r.count, r.action, r.reason))


@dataclass(slots=True)
class FindingRow(Tally):
    """Guardrail findings of one rule and action (`by` counts them per stage)."""

    rule: str = ""
    action: str = ""


@dataclass(slots=True)
class NearMiss:
    """Findings a rule only noted (log_only / alert): how close they came, by rule and kind."""

    rule: str
    kind: str
    count: int
    min_score: float | None
    median_score: float | None
    max_score: float | None


def _findings(runs: Iterable[Run]) -> Iterable[Mark]:
    return (m for run in runs for m in run.marks if m.operation == "guardrail")


def findings(runs: Sequence[Run]) -> list[FindingRow]:
    rows: dict[tuple[str, str], FindingRow] = {}
    for run in runs:
        for m in run.marks:
            if m.operation == "guardrail":
                rule = m.rule or m.reason
                rows.setdefault((rule, m.action), FindingRow(rule=rule, action=m.action)).note(
                    m, run.run_id, m.stage or "-")
    return sorted(rows.values(), key=lambda r: (-r.count, r.rule, r.action))


def near_misses(runs: Sequence[Run]) -> list[NearMiss]:
    scores: dict[tuple[str, str], list[float]] = {}
    counts: dict[tuple[str, str], int] = {}
    for m in _findings(runs):
        if m.action not in NOTE_ONLY:
            continue
        key = (m.rule or m.reason, m.kind or m.reason)
        counts[key] = counts.get(key, 0) + m.count
        if m.score is not None:
            scores.setdefault(key, []).append(m.score)
    rows = []
    for (rule, kind), n in counts.items():
        s = scores.get((rule, kind), [])
        rows.append(NearMiss(rule, kind, n, min(s, default=None), percentile(s, 50),
                             max(s, default=None)))
    return sorted(rows, key=lambda r: (-r.count, r.rule, r.kind))


# bucket sizes of the timeline (a minute to a week), the smallest that gives few enough bars
BUCKETS = (60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0)


@dataclass(slots=True)
class Reliability:
    """Retries, fallbacks, breaker skips and breaker transitions: counts by reason and model,
    and when they happened."""

    by_reason: list[tuple[str, str, str, int]]  # action, reason, model, count
    buckets: list[tuple[float, int, int, int]]  # bucket start (epoch s), retries, fallbacks, opened
    bucket_s: float
    breaker_skips: int  # tiers skipped because their circuit breaker was open
    degraded_answers: int
    transitions: list[tuple[float | None, str, str, str]]  # when, model, from, to (oldest first)


MAX_TRANSITIONS = 30  # breaker transitions listed (the latest); all of them are counted


def _moved(reason: str) -> tuple[str, str]:
    """A breaker transition's reason, `closed_to_open`, as (from, to)."""
    old, _, new = reason.partition("_to_")
    return old, new


def reliability(runs: Sequence[Run], max_buckets: int = 48) -> Reliability:
    counts: dict[tuple[str, str, str], int] = {}
    events: list[tuple[float, str]] = []
    moves: list[tuple[float | None, str, str, str]] = []
    skips = degraded = 0
    for run in runs:
        for m in run.marks:
            if m.operation != "cascade":
                continue
            key = (m.action, m.reason, m.model or "-")
            counts[key] = counts.get(key, 0) + 1
            skips += m.reason == "circuit_open"
            degraded += m.reason == "degraded_answer"
            when = m.ts if m.ts is not None else run.started
            if m.action == "breaker":
                moves.append((when, m.model or "-", *_moved(m.reason)))
            if when is None:
                continue
            if m.action in ("retry", "fallback"):
                events.append((when, m.action))
            elif m.action == "breaker" and m.reason.endswith("_to_open"):
                events.append((when, "opened"))
    rows = sorted(((a, r, mdl, n) for (a, r, mdl), n in counts.items()), key=lambda x: (-x[3], x[:3]))
    moves.sort(key=lambda t: (t[0] is None, t[0] or 0.0))
    latest = moves[-MAX_TRANSITIONS:]
    if not events:
        return Reliability(rows, [], 0.0, skips, degraded, latest)
    first = min(t for t, _ in events)
    span = max(t for t, _ in events) - first
    size = next((b for b in BUCKETS if span / b < max_buckets), BUCKETS[-1])
    start = first - first % size
    column = {"retry": 1, "fallback": 2, "opened": 3}
    series = [[start + i * size, 0, 0, 0] for i in range(int((first + span - start) // size) + 1)]
    for when, action in events:
        series[int((when - start) // size)][column[action]] += 1
    return Reliability(rows, [(float(a), int(b), int(c), int(d)) for a, b, c, d in series], size,
                       skips, degraded, latest)
