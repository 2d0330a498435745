"""Reviewing what happened: a single-file HTML report and budget recommendations from saved
sessions and the ledger, both read through the `Source` interface."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from cascadeflow.report.filters import RunFilter, parse_since
from cascadeflow.report.ledger_source import LedgerRuns
from cascadeflow.report.model import Run, read_run
from cascadeflow.report.page import document
from cascadeflow.report.review import DETAIL_RUNS, Review, build, load_runs
from cascadeflow.report.sections import all_sections
from cascadeflow.report.source import RunRecord, SavedSessions, Source, saved_sessions

__all__ = ["DETAIL_RUNS", "LedgerRuns", "Review", "Run", "RunFilter", "RunRecord", "SavedSessions", "Source",
           "build", "load_runs", "parse_since", "read_run", "render", "review", "saved_sessions",
           "write_report"]


def review(sources: Sequence[Source], keep: RunFilter | None = None, detail: int = DETAIL_RUNS
           ) -> Review:
    """Read the sources and compute everything the report shows."""
    return build(load_runs(sources, keep), [s.name for s in sources], keep, detail)


def render(r: Review) -> str:
    """The report as one self-contained HTML document."""
    return document("cascadeflow review", all_sections(r))


def write_report(sources: Sequence[Source], path: str | Path, keep: RunFilter | None = None,
                 detail: int = DETAIL_RUNS) -> Path:
    target = Path(path)
    target.write_text(render(review(sources, keep, detail)), encoding="utf-8")
    return target
