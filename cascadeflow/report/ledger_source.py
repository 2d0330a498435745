"""The ledger as a report source: each outermost run rebuilt in the saved-session shape from its
usage events, its other trace entries and its outcomes, so nothing downstream knows which it read.

What a saved session has and the ledger rebuilds: the steps (numbered in the outermost run),
nesting (each step's session and that session's parent), every non-allow decision, guardrail
finding (rule, kind, action, stage, score; never the matched text), cascade event and breaker
transition, the run's budget and the outcomes. What it approximates: a run starts at its first
step and ends when its last step answered (a saved session counts from `with run()` to its
end), and "budget left" per step is not kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cascadeflow.entry import NOT_FALLBACKS, SIDE_OPERATIONS
from cascadeflow.errors import ConfigError
from cascadeflow.ledger import StoreUnavailable
from cascadeflow.ledger.query import ReadOnly
from cascadeflow.ledger.runs import LedgerRun, RunQuery, loads, outside, runs
from cascadeflow.report.filters import RunFilter
from cascadeflow.report.source import RunRecord

# a usage event's fields that are a trace entry's too
STEP_FIELDS = ("action", "reason", "mode", "model", "requested_model", "provider", "agent",
               "operation", "cost", "latency_ms", "tokens_in", "tokens_out", "cached_tokens",
               "reasoning_tokens", "tool_calls", "tool", "error", "status", "run_id", "ts")
PRIMARY_FIELDS = ("target_model", "tools_denied", "message")  # kept only with the run's entries


class LedgerRuns:
    """The runs in a ledger file that `keep` may keep (it narrows the query; the report checks
    each run again). `setting` and `where` name the file's origin in errors."""

    def __init__(self, path: str | Path, keep: RunFilter | None = None, setting: str = "--ledger",
                 where: str = "the command line") -> None:
        self.path = Path(path)
        keep = keep or RunFilter()
        self.query = RunQuery(keep.since, keep.user, keep.agent, keep.project)
        self.setting, self.where = setting, where
        self._outside: tuple[int, float] | None = None

    @property
    def name(self) -> str:
        count, cost = self.outside()
        note = f" (not runs: {count} calls outside any run(), ${cost:.4f})" if count else ""
        return f"ledger {self.path}{note}"

    def outside(self) -> tuple[int, float]:
        """Calls made outside any run() under the same filters: counted, never reviewed."""
        if self._outside is None:
            reader = self._open()
            try:
                self._outside = outside(reader, self.query)
            except StoreUnavailable as exc:
                raise self._error(str(exc)) from None
            finally:
                reader.close()
        return self._outside

    def runs(self) -> Iterator[RunRecord]:
        reader = self._open()
        try:
            for run in runs(reader, self.query):
                yield record(run, f"ledger {self.path} run {run.run_id}")
        except StoreUnavailable as exc:
            raise self._error(str(exc)) from None
        finally:
            reader.close()

    def _open(self) -> ReadOnly:
        """Read-only: a report never creates a ledger nor waits for its write lock."""
        try:
            return ReadOnly(self.path)
        except ValueError as exc:
            raise self._error(str(exc)) from None

    def _error(self, why: str) -> ConfigError:
        return ConfigError(self.setting, str(self.path), self.where, why)


def record(run: LedgerRun, origin: str) -> RunRecord:
    """One run in the shape of `Session.summary()` and `Session.trace()`."""
    events, mode = run.events, str(run.events[0]["mode"])
    primaries: dict[tuple[str, int], Mapping[str, Any]] = {}
    side: list[dict[str, Any]] = []
    for item in run.entries:
        entry = item["entry"]
        if entry.get("primary"):
            primaries[(item["run_id"], item["step"])] = entry
        else:
            side.append({**entry, "mode": mode, "step": item["step"], "run_id": item["run_id"],
                         "ts": item["ts"]})
    steps = [_step(e, primaries) for e in events]
    # each step's own entry, then the others in the order they were written (as the trace has them)
    trace = sorted([*steps, *side], key=lambda e: (e["step"], e.get("operation") in SIDE_OPERATIONS))
    return RunRecord(_summary(run, steps, side), trace, origin)


def _step(event: Mapping[str, Any], primaries: Mapping[tuple[str, int], Mapping[str, Any]]
          ) -> dict[str, Any]:
    number = event["root_step"] if event["root_step"] is not None else event["step"]
    entry = {"step": number, "applied": bool(event["applied"]), "budget_remaining": None,
             **{k: event[k] for k in STEP_FIELDS}}
    entry["tool_calls"] = entry["tool_calls"] or 0
    primary = primaries.get((event["run_id"], number))
    if primary is not None:
        entry.update({k: primary[k] for k in PRIMARY_FIELDS if k in primary})
    if event["content"] is not None:  # stored only when content capture was on
        entry["content"] = loads(event["content"], f"the content of step {number} of run "
                                                   f"{event['run_id']}")
    return entry


def _summary(run: LedgerRun, steps: list[dict[str, Any]], side: list[dict[str, Any]]
             ) -> dict[str, Any]:
    events = run.events
    head = next((e for e in events if e["run_id"] == run.run_id), events[0])
    started = min(float(e["ts"]) for e in events)
    ended = max(float(e["ts"]) + (e["latency_ms"] or 0.0) / 1000 for e in events)
    latest = {o["run_id"]: o for o in run.outcomes}  # oldest first: the latest wins
    own = latest.get(run.run_id, {})
    return {
        "run_id": run.run_id, "mode": head["mode"],
        # schema 1 rows have no outermost run: each session is its own, with its own agent
        "agent": head["workflow"] if head["root_step"] is not None else head["agent"],
        "user": head["user"], "project": head["project"], "steps": len(events),
        "cost_total": sum(e["cost"] or 0.0 for e in events),
        "cost_unknown_steps": sum(e["cost"] is None and e["status"] != "stopped" for e in events),
        "tokens_in": sum(e["tokens_in"] or 0 for e in events),
        "tokens_out": sum(e["tokens_out"] or 0 for e in events),
        "tool_calls": max(sum(s["tool_calls"] for s in steps),
                          sum(e["operation"] == "tool" for e in events)),
        "budget": next((e["budget"] for e in events if e["budget"] is not None), None),
        "stopped": any(e["status"] == "stopped" for e in events),
        "degraded": any(e["reason"] == "degraded_answer" for e in side),
        "fallbacks": sum(e["action"] == "fallback" and e["reason"] not in NOT_FALLBACKS for e in side),
        "retries": sum(e["action"] == "retry" for e in side),
        "duration_ms": (ended - started) * 1000, "started": started, "ended": ended,
        "outcome": own.get("label"), "outcome_value": own.get("value"),
        "sessions": _sessions(run, latest), "trace_entries_dropped": 0,
    }


def _sessions(run: LedgerRun, latest: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The sessions opened inside the run: from their steps, and from outcomes of sessions
    that had none of their own (an @agent whose calls all ran in a nested agent)."""
    out: dict[str, dict[str, Any]] = {}
    for e in run.events:
        if e["run_id"] == run.run_id:
            continue
        ts, end = float(e["ts"]), float(e["ts"]) + (e["latency_ms"] or 0.0) / 1000
        info = out.get(e["run_id"])
        if info is None:
            out[e["run_id"]] = {"agent": e["agent"], "parent": e["parent_run_id"], "started": ts,
                                "ended": end, "outcome": None, "outcome_value": None}
        else:
            info["started"], info["ended"] = min(info["started"], ts), max(info["ended"], end)
    for run_id, o in latest.items():
        if run_id == run.run_id:
            continue
        info = out.setdefault(run_id, {"agent": o["agent"], "parent": o["parent_run_id"],
                                       "started": None, "ended": None})
        info["outcome"], info["outcome_value"] = o["label"], o["value"]
    return out
