"""Everything the report shows, computed once from the runs: the HTML only lays it out, and
tests read the same numbers."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cascadeflow.errors import ConfigError
from cascadeflow.pricing import PriceBook
from cascadeflow.report import decisions as dec
from cascadeflow.report import outcomes as out
from cascadeflow.report import stats, whatif
from cascadeflow.report.filters import RunFilter
from cascadeflow.report.model import Run, Step, read_run
from cascadeflow.report.source import Source

DETAIL_RUNS = 20  # runs shown step by step; the rest only count in the aggregates


@dataclass(slots=True)
class Review:
    sources: list[str]
    filter: str
    generated: float
    totals: stats.Totals
    by_day: list[stats.Group]
    by_user: list[stats.Group]
    by_agent: list[stats.Group]
    by_model: list[stats.Group]
    latency_agent: list[stats.LatencyRow]
    latency_model: list[stats.LatencyRow]
    slowest: list[tuple[Run, Step]]
    decisions: list[dec.DecisionRow]
    findings: list[dec.FindingRow]
    near_misses: list[dec.NearMiss]
    reliability: dec.Reliability
    outcomes: list[out.OutcomeRow]
    modes: list[out.OutcomeRow]
    would_have: whatif.WouldHave
    detail: list[Run]
    content_captured: bool


def load_runs(sources: Iterable[Source], keep: RunFilter | None = None,
              argument: str = "SOURCES") -> list[Run]:
    """Every run of the sources that the filter keeps; a run id seen twice counts once."""
    runs: list[Run] = []
    seen: set[str] = set()
    for source in sources:
        for record in source.runs():
            run = read_run(record, argument)
            if run.run_id in seen or (keep is not None and not keep.keeps(run)):
                continue
            seen.add(run.run_id)
            runs.append(run)
    return runs


def _interest(run: Run) -> tuple[bool, bool, float]:
    """Runs worth reading first: stopped (or would have been), failed, then the costliest."""
    halted = run.stopped or any(m.action == "stop" and m.operation != "cascade" for m in run.marks)
    failed = run.outcome is not None and run.outcome != out.SUCCESS
    return halted, failed, run.cost


def build(runs: Sequence[Run], sources: Sequence[str], keep: RunFilter | None = None,
          detail: int = DETAIL_RUNS, prices: PriceBook | None = None) -> Review:
    if detail < 0:
        raise ConfigError("--detail", detail, "the command line", "expected a number of runs >= 0")
    chosen = sorted(runs, key=_interest, reverse=True)[:detail]
    chosen.sort(key=lambda r: (r.started or 0.0, r.run_id))
    return Review(
        sources=list(sources), filter=(keep or RunFilter()).describe(), generated=time.time(),
        totals=stats.totals(runs), by_day=stats.breakdown(runs, "day"),
        by_user=stats.breakdown(runs, "user"), by_agent=stats.breakdown(runs, "agent"),
        by_model=stats.breakdown(runs, "model"), latency_agent=stats.latency(runs, "agent"),
        latency_model=stats.latency(runs, "model"), slowest=stats.slowest(runs),
        decisions=dec.decisions(runs), findings=dec.findings(runs),
        near_misses=dec.near_misses(runs), reliability=dec.reliability(runs),
        outcomes=out.outcomes(runs), modes=out.by_mode(runs),
        would_have=whatif.would_have(runs, prices), detail=chosen,
        content_captured=any(s.content for r in runs for s in r.steps))
