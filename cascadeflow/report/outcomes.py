"""Did the runs deliver: completion rate and cost per successful run, per agent and per mode.

An outcome is what `session.outcome(label, value)` recorded on a run or an `@agent` call.
"resolved" is a success, every other label is not; runs with no outcome count toward cost but
not toward the completion rate, which is resolved / runs with an outcome.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cascadeflow.report.model import Run

SUCCESS = "resolved"


@dataclass(slots=True)
class OutcomeRow:
    agent: str
    mode: str
    sessions: int = 0
    with_outcome: int = 0
    resolved: int = 0
    failed: int = 0
    other: int = 0
    cost: float = 0.0
    value: float = 0.0  # sum of numeric outcome values
    stopped: int = 0

    @property
    def completion_rate(self) -> float | None:
        return self.resolved / self.with_outcome if self.with_outcome else None

    @property
    def cost_per_success(self) -> float | None:
        return self.cost / self.resolved if self.resolved else None

    def add(self, outcome: str | None, value: object, cost: float) -> None:
        self.sessions += 1
        self.cost += cost
        if outcome is None:
            return
        self.with_outcome += 1
        if outcome == SUCCESS:
            self.resolved += 1
        elif outcome == "failed":
            self.failed += 1
        else:
            self.other += 1
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.value += value


def session_costs(run: Run) -> dict[str, float]:
    """Cost of each session in the run, its nested sessions' steps included (as limits count)."""
    costs: dict[str, float] = {}
    for step in run.steps:
        session: str | None = step.session or run.run_id
        seen = 0
        while session is not None and seen <= len(run.sessions):  # a bad parent map cannot loop
            costs[session] = costs.get(session, 0.0) + (step.cost or 0.0)
            info = run.sessions.get(session)
            session = info.parent if info is not None and session != run.run_id else None
            seen += 1
    return costs


def outcomes(runs: Iterable[Run]) -> list[OutcomeRow]:
    """One row per (agent, mode): the runs by their label and every `@agent` call."""
    rows: dict[tuple[str, str], OutcomeRow] = {}

    def row(agent: str, mode: str) -> OutcomeRow:
        found = rows.get((agent, mode))
        if found is None:
            found = rows[(agent, mode)] = OutcomeRow(agent, mode)
        return found

    for run in runs:
        costs = session_costs(run)
        row(run.label, run.mode).add(run.outcome, run.outcome_value, run.cost)
        for info in run.sessions.values():
            if info.agent is not None or info.outcome is not None:
                row(info.agent or "run", run.mode).add(info.outcome, info.outcome_value,
                                                       costs.get(info.run_id, 0.0))
    return sorted(rows.values(), key=lambda r: (r.agent, r.mode))


def by_mode(runs: Iterable[Run]) -> list[OutcomeRow]:
    """The outermost runs per mode, observe against enforce (`stopped` counts applied stops)."""
    rows: dict[str, OutcomeRow] = {}
    for run in runs:
        r = rows.setdefault(run.mode, OutcomeRow("all runs", run.mode))
        r.add(run.outcome, run.outcome_value, run.cost)
        r.stopped += run.stopped
    return sorted(rows.values(), key=lambda r: r.mode)
