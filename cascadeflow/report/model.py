"""A run as the report reads it: steps with their decisions, checked once when it is read.

Records come in the saved-session shape (`source.RunRecord`); this turns one into typed,
compact objects, so a malformed record is an error naming where it came from, and a
10,000-run source does not keep every raw dict alive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cascadeflow.entry import SIDE_OPERATIONS
from cascadeflow.errors import ConfigError
from cascadeflow.report.source import RunRecord

# trace entries that are not steps of their own: they ride on the step they are numbered with
MAX_CONTENT_CHARS = 2000  # captured prompt/completion shown per step (content capture only)


@dataclass(slots=True)
class Mark:
    """A non-allow decision on a step: a policy decision, a guardrail finding or a cascade event."""

    step: int
    action: str
    reason: str
    applied: bool
    mode: str
    operation: str
    agent: str | None
    model: str | None
    target_model: str | None = None
    tools_denied: tuple[str, ...] = ()
    message: str | None = None  # cascadeflow's own words (policy decisions), never provider text
    rule: str | None = None
    kind: str | None = None
    stage: str | None = None
    score: float | None = None
    ts: float | None = None
    count: int = 1  # a guardrail finding stands for every match of its rule and kind in a text


@dataclass(slots=True)
class Step:
    """A model call, tool execution or embedding: what it cost and took, and its decisions."""

    number: int
    ts: float | None
    latency_ms: float | None
    operation: str
    model: str | None
    tool: str | None
    agent: str | None
    session: str  # run_id of the innermost session (agent call) it ran in
    cost: float | None
    tokens_in: int
    tokens_out: int
    cached_tokens: int
    tool_calls: int  # tool calls the model asked for
    error: str | None
    budget_remaining: float | None
    action: str
    reason: str
    applied: bool
    status: str = "ok"  # "stopped": enforcement kept it from being sent
    marks: list[Mark] = field(default_factory=list)
    content: dict[str, str] | None = None

    @property
    def sent(self) -> bool:
        return self.status != "stopped"


@dataclass(slots=True)
class SessionInfo:
    """A session opened inside the run (an `@agent` call or a nested `run()`)."""

    run_id: str
    agent: str | None
    parent: str | None
    started: float | None
    ended: float | None
    outcome: str | None
    outcome_value: Any


@dataclass(slots=True)
class Run:
    run_id: str
    origin: str
    mode: str
    agent: str | None
    user: str | None
    project: str | None
    started: float | None
    duration_ms: float | None
    budget: float | None
    cost: float
    cost_unknown_steps: int
    step_count: int
    tokens_in: int
    tokens_out: int
    tool_calls: int
    stopped: bool
    degraded: bool
    fallbacks: int
    retries: int
    outcome: str | None
    outcome_value: Any
    dropped: int
    sessions: dict[str, SessionInfo]
    steps: list[Step]
    marks: list[Mark]

    @property
    def label(self) -> str:
        """The run's type: its `agent` label, else "run" (what `[run]` in the config limits)."""
        return self.agent or "run"

    def agents(self) -> set[str]:
        found = {s.agent for s in self.steps if s.agent}
        found.update(i.agent for i in self.sessions.values() if i.agent)
        if self.agent:
            found.add(self.agent)
        return found


def in_calendar(epoch: float) -> bool:
    """Whether a date can be made of `epoch` (1e20 overflows the platform's time_t)."""
    try:
        datetime.fromtimestamp(epoch, UTC)
    except (OverflowError, ValueError, OSError):
        return False
    return True


class _Reader:
    """Typed reads of one record's fields, with errors that name the record and the key."""

    def __init__(self, origin: str, argument: str) -> None:
        self.origin, self.argument = origin, argument

    def fail(self, where: str, key: str, value: Any, expected: str) -> ConfigError:
        return ConfigError(self.argument, self.origin.split(" line ")[0], self.origin,
                           f"{where}: {key}={str(value)[:60]!r} is not {expected}")

    def text(self, d: Mapping[str, Any], key: str, where: str, default: str | None = None
             ) -> str | None:
        value = d.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.fail(where, key, value, "a string")
        return value

    def number(self, d: Mapping[str, Any], key: str, where: str) -> float | None:
        value = d.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(where, key, value, "a finite number")
        return float(value)

    def moment(self, d: Mapping[str, Any], key: str, where: str) -> float | None:
        """An epoch in seconds that a calendar date can show (the report prints it as one)."""
        value = self.number(d, key, where)
        if value is not None and not in_calendar(value):
            raise self.fail(where, key, value, "a time (epoch seconds) between the years 1 and 9999")
        return value

    def count(self, d: Mapping[str, Any], key: str, where: str) -> int:
        value = d.get(key) or 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.fail(where, key, value, "a count (an integer >= 0)")
        return value


def read_run(record: RunRecord, argument: str = "SOURCES") -> Run:
    """Check and convert one record (raises `ConfigError` naming the source and key)."""
    r = _Reader(record.origin, argument)
    s = record.summary
    if not isinstance(s, Mapping) or not isinstance(s.get("run_id"), str):
        raise r.fail("summary", "run_id", s.get("run_id") if isinstance(s, Mapping) else s,
                     "a run id string")
    steps: dict[int, Step] = {}
    marks: list[Mark] = []
    for i, e in enumerate(record.entries, 1):
        where = f"trace entry {i}"
        if not isinstance(e, Mapping):
            raise r.fail(where, "entry", e, "an object")
        number = e.get("step")
        if isinstance(number, bool) or not isinstance(number, int):
            raise r.fail(where, "step", number, "a step number")
        action = r.text(e, "action", where) or "allow"
        operation = r.text(e, "operation", where) or "chat"
        if operation not in SIDE_OPERATIONS and number not in steps:
            steps[number] = _step(r, e, where, number, action, operation)
        if action == "allow":
            continue
        mark = Mark(step=number, action=action, reason=r.text(e, "reason", where) or "",
                    applied=bool(e.get("applied")), mode=r.text(e, "mode", where) or "",
                    operation=operation, agent=r.text(e, "agent", where),
                    model=r.text(e, "model", where), target_model=r.text(e, "target_model", where),
                    tools_denied=tuple(str(t) for t in e.get("tools_denied") or ()),
                    message=r.text(e, "message", where) if operation not in SIDE_OPERATIONS else None,
                    rule=r.text(e, "rule", where), kind=r.text(e, "kind", where),
                    stage=r.text(e, "stage", where), score=r.number(e, "score", where),
                    ts=r.moment(e, "ts", where), count=max(r.count(e, "count", where), 1))
        marks.append(mark)
        if number in steps:
            steps[number].marks.append(mark)
    ordered = sorted(steps.values(), key=lambda st: st.number)
    started = r.moment(s, "started", "summary")
    if started is None:
        started = min((st.ts for st in ordered if st.ts is not None), default=None)
    return Run(
        run_id=s["run_id"], origin=record.origin, mode=r.text(s, "mode", "summary") or "observe",
        agent=r.text(s, "agent", "summary"), user=r.text(s, "user", "summary"),
        project=r.text(s, "project", "summary"), started=started,
        duration_ms=r.number(s, "duration_ms", "summary"), budget=r.number(s, "budget", "summary"),
        cost=r.number(s, "cost_total", "summary") or sum(st.cost or 0.0 for st in ordered),
        cost_unknown_steps=r.count(s, "cost_unknown_steps", "summary"),
        step_count=r.count(s, "steps", "summary") or len(ordered),
        tokens_in=r.count(s, "tokens_in", "summary"), tokens_out=r.count(s, "tokens_out", "summary"),
        tool_calls=r.count(s, "tool_calls", "summary"), stopped=bool(s.get("stopped")),
        degraded=bool(s.get("degraded")), fallbacks=r.count(s, "fallbacks", "summary"),
        retries=r.count(s, "retries", "summary"), outcome=r.text(s, "outcome", "summary"),
        outcome_value=s.get("outcome_value"), dropped=r.count(s, "trace_entries_dropped", "summary"),
        sessions=_sessions(r, s.get("sessions")), steps=ordered, marks=marks)


def _step(r: _Reader, e: Mapping[str, Any], where: str, number: int, action: str,
          operation: str) -> Step:
    content = e.get("content")
    shown: dict[str, str] | None = None
    if isinstance(content, Mapping):  # only present when the run captured content
        shown = {str(k): str(v)[:MAX_CONTENT_CHARS] for k, v in content.items() if v is not None}
    return Step(number=number, ts=r.moment(e, "ts", where), latency_ms=r.number(e, "latency_ms", where),
                operation=operation, model=r.text(e, "model", where), tool=r.text(e, "tool", where),
                agent=r.text(e, "agent", where), session=r.text(e, "run_id", where, "") or "",
                cost=r.number(e, "cost", where), tokens_in=r.count(e, "tokens_in", where),
                tokens_out=r.count(e, "tokens_out", where),
                cached_tokens=r.count(e, "cached_tokens", where),
                tool_calls=r.count(e, "tool_calls", where), error=r.text(e, "error", where),
                budget_remaining=r.number(e, "budget_remaining", where), action=action,
                reason=r.text(e, "reason", where) or "", applied=bool(e.get("applied")),
                status=r.text(e, "status", where) or "ok", content=shown)


def _sessions(r: _Reader, raw: Any) -> dict[str, SessionInfo]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise r.fail("summary", "sessions", raw, "an object of sessions by run id")
    out: dict[str, SessionInfo] = {}
    for run_id, info in raw.items():
        where = f"summary sessions.{run_id}"
        if not isinstance(info, Mapping):
            raise r.fail(where, "session", info, "an object")
        out[str(run_id)] = SessionInfo(
            run_id=str(run_id), agent=r.text(info, "agent", where), parent=r.text(info, "parent", where),
            started=r.moment(info, "started", where), ended=r.moment(info, "ended", where),
            outcome=r.text(info, "outcome", where), outcome_value=info.get("outcome_value"))
    return out
