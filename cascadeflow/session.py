"""Sessions: nesting through contextvars, spend that rolls up, summary, trace, save and load.

A session is what `run()` and each `@agent` call open. Calls count against the session they run
in and every enclosing one; the ambient session takes calls made outside any run and keeps a
bounded window of its trace, so a long-lived process never grows.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextvars import ContextVar, Token
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from cascadeflow.config import RunLimits
from cascadeflow.entry import Entry
from cascadeflow.errors import CascadeflowError, ConfigError
from cascadeflow.guardrails.placeholders import Placeholders
from cascadeflow.secrets import scrub

# what `Session.outcome` accepts beside its label: a number (what the run was worth), or None
OutcomeValue = int | float | None

# the innermost open session in this context (read directly on the hot path)
CURRENT: ContextVar[Session | None] = ContextVar("cascadeflow_session", default=None)


class SessionHooks(Protocol):
    """What a session tells the runtime that made it (telemetry, the background worker)."""

    def in_force(self) -> str:
        """The mode the session's next call gets: that of the runtime installed now (a later
        `init()` may have replaced the one that opened it)."""

    def opened(self, session: Session) -> None: ...

    def closed(self, session: Session) -> None: ...

    def outcome(self, session: Session) -> None:
        """`session.outcome()` was called: its label, value and time are on the session."""

    def flush(self) -> None:
        """Wait until every record queued so far is written into the sessions."""

    def activate(self, session: Session) -> Any:
        """The session became current in this context (its span too, with telemetry): what
        `deactivate` takes to undo it, or None."""

    def deactivate(self, activation: Any) -> None: ...


class _Detached:
    """Hooks of a session made outside any runtime (tests of the policy engine, tools)."""

    def in_force(self) -> str:
        return "off"

    def opened(self, session: Session) -> None:
        return None

    def closed(self, session: Session) -> None:
        return None

    def outcome(self, session: Session) -> None:
        return None

    def flush(self) -> None:
        return None

    def activate(self, session: Session) -> Any:
        return None

    def deactivate(self, activation: Any) -> None:
        return None


DETACHED = _Detached()


class Session:
    """A traced unit of work with its own limits, nested under whatever session was open."""

    exceeded_reason = "budget_exceeded"  # a windowed budget of the ledger says its own

    def __init__(self, limits: RunLimits | None = None, *, agent: str | None = None,
                 user: str | None = None, project: str | None = None,
                 metadata: dict[str, Any] | None = None, max_entries: int | None = None,
                 ambient: bool = False, hooks: SessionHooks = DETACHED) -> None:
        self.run_id = uuid.uuid4().hex
        self.limits = limits or RunLimits()
        self.agent = agent
        self.user = user
        self.project = project
        self.metadata = scrub(dict(metadata or {}))  # summary() and save() show it
        self.ambient = ambient
        self.parent: Session | None = None
        self.chain: tuple[Session, ...] = (self,)
        self.lock = threading.Lock()
        self.policy_view: Any = None  # the policy engine's cached view of the chain
        self.span: Any = None  # the OpenTelemetry span while the session is open
        self.alerted = False  # the budget-threshold alert went out
        self.hooks = hooks
        self._mode: str | None = None  # the mode in force when it closed (`mode`)
        self._token: Token[Session | None] | None = None
        self._activation: Any = None  # its span made current, while the session is
        # (step number, entry): one append, so a reader never sees a number without its entry
        self._trace: deque[tuple[int, Entry]] | list[tuple[int, Entry]] = (
            deque(maxlen=max_entries) if max_entries else [])
        self.agent_in_chain = agent
        self.entries = 0  # trace entries ever added; the trace keeps the last `max_entries`
        self.steps = 0
        self.spent = 0.0
        self.reserved = 0.0
        self.tokens_in = 0
        self.tokens_out = 0
        self.cached_tokens = 0
        self.latency_total_ms = 0.0
        self.tool_calls = 0
        self.tool_executions = 0
        self.cost_unknown_steps = 0
        self.errors = 0
        self.fallbacks = 0
        self.retries = 0
        self.degraded = False
        self.stopped = False
        self.failed: str | None = None  # the type of the exception that left the session's block
        self.actions: dict[str, int] = {}
        self.modes: dict[str, int] = {}  # trace entries per mode they ran in
        self.findings_by_rule: dict[str, int] = {}
        self.reasons: dict[str, int] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        self.ended: float | None = None
        self._t0 = time.perf_counter()
        self._t1: float | None = None
        # what the run delivered (`outcome()`): read by summary(), save() and the ledger
        self.outcome_label: str | None = None
        self.outcome_value: OutcomeValue = None
        self.outcome_ts: float | None = None
        # sessions opened under this one, by run_id: their agent, parent, times and outcome, so a
        # saved run says which agent call each trace entry (by its run_id) belonged to
        self.children: dict[str, dict[str, Any]] = {}
        # the run's reversible-redaction map (values redacted -> placeholders): memory only,
        # dropped when the run ends (see `placeholders`)
        self._placeholders: Placeholders | None = None
        self._record: dict[str, Any] | None = None  # this session's entry in its ancestors' maps

    # -- context management ---------------------------------------------------------------
    def __enter__(self) -> Session:
        self.attach(CURRENT.get())
        self._token = CURRENT.set(self)
        self._activation = self.hooks.activate(self)
        return self

    def attach(self, parent: Session | None) -> None:
        """Open under `parent` without touching the context (generators step in and out)."""
        if self._token is not None or self._t1 is not None or self.parent is not None:
            raise CascadeflowError(f"session {self.run_id} was already opened; open a new run()")
        if parent is not None:
            self.parent = parent
            self.chain = (self, *parent.chain)
            self.lock = parent.lock
            self.agent_in_chain = self.agent or parent.agent_in_chain
            if not parent.ambient:
                self._record = {"agent": self.agent, "parent": parent.run_id, "started": self.started,
                                "ended": None, "outcome": None, "outcome_value": None}
                with parent.lock:
                    for ancestor in parent.chain:
                        ancestor.remember(self.run_id, self._record)
        if not self.ambient:
            self.hooks.opened(self)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(exc)

    async def __aenter__(self) -> Session:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def close(self, error: BaseException | None = None) -> None:
        """Leave the session: later calls in this context go to the enclosing one. `error`: the
        exception that ends its block, whose type its span ends with."""
        if error is not None and not isinstance(error, GeneratorExit) and self.failed is None:
            self.failed = type(error).__name__
        if self._token is not None:
            try:
                CURRENT.reset(self._token)
            except ValueError:  # closed from another context (a generator finalised elsewhere)
                CURRENT.set(self.parent)
            else:  # its span was made current in the same context
                if self._activation is not None:
                    self.hooks.deactivate(self._activation)
            self._token = self._activation = None
        if self._t1 is None:
            self._mode = self.hooks.in_force()
            self._placeholders = None  # the originals are forgotten with the run (calls hold their own)
            self._t1 = time.perf_counter()
            self.ended = time.time()
            if self._record is not None:
                self._record["ended"] = self.ended
            if not self.ambient:
                self.hooks.closed(self)

    @property
    def mode(self) -> str:
        """The mode in force for this session: while it is open, the mode its next call gets
        (the latest `init()`'s); once closed, the one in force when it closed. Each trace entry
        says the mode it ran in."""
        return self._mode if self._mode is not None else self.hooks.in_force()

    def rehome(self, hooks: SessionHooks, limits: RunLimits) -> None:
        """Move to the runtime a later `init()` installs, keeping the totals and the trace: the
        ambient session, whose next calls take the new settings."""
        self.hooks = hooks
        self.limits = limits
        self.policy_view = None

    def keep(self, max_entries: int | None) -> None:
        """Keep the latest `max_entries` trace entries from now on (every one with None); the
        worker calls it, in order with the entries it adds."""
        trace = self._trace
        if (trace.maxlen if isinstance(trace, deque) else None) != (max_entries or None):
            self._trace = deque(trace, maxlen=max_entries) if max_entries else list(trace)

    def placeholders(self) -> Placeholders:
        """The numbered placeholders of this run and every run under it (the outermost run
        numbers them, so an agent's `[EMAIL_1]` is its workflow's). A call outside any run, or
        after its run ended, gets a map of its own: the ambient session never keeps values."""
        outer = next((s for s in reversed(self.chain) if not s.ambient and s._t1 is None), None)
        if outer is None:
            return Placeholders()
        with self.lock:
            if outer._placeholders is None:
                outer._placeholders = Placeholders()
            return outer._placeholders

    def remember(self, run_id: str, record: dict[str, Any]) -> None:
        """Note a session opened under this one; a bounded trace keeps as many as it keeps entries."""
        children = self.children
        cap = self._trace.maxlen if isinstance(self._trace, deque) else None
        if cap is not None and len(children) >= cap:
            del children[next(iter(children))]
        children[run_id] = record

    # -- accounting -----------------------------------------------------------------------
    # Two writers, each with its own fields. The counters the policy engine reads (steps, spent,
    # reserved, tool counts, tokens, stopped) change on the caller's thread under `self.lock`.
    # The trace and the totals only a reader wants (actions, reasons, models, latency, errors,
    # fallbacks) are written by the background worker alone, which `summary()` and `trace()`
    # wait for; readers copy them with single C-level operations.
    def next_step(self) -> int:
        self.steps += 1
        return self.steps

    def add_entry(self, step: int, entry: Entry) -> None:
        self._trace.append((step, entry))
        self.entries += 1
        self.actions[entry.action] = self.actions.get(entry.action, 0) + 1
        self.modes[entry.mode] = self.modes.get(entry.mode, 0) + 1
        if entry.operation == "guardrail" and entry.extra:
            rule = entry.extra["rule"]  # an entry stands for `count` matches of its rule and kind
            self.findings_by_rule[rule] = self.findings_by_rule.get(rule, 0) + entry.extra.get("count", 1)
        if entry.action != "allow":
            self.reasons[entry.reason] = self.reasons.get(entry.reason, 0) + 1

    def charge(self, cost: float | None, tokens_in: int, tokens_out: int, cached: int,
               tool_calls: int) -> None:
        """A settled step's spend and counts: what the next decisions read."""
        if cost is not None:
            self.spent += cost
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cached_tokens += cached
        self.tool_calls += tool_calls

    def tally(self, entry: Entry) -> None:
        """A settled step's record: per-model totals, latency, errors (written by the worker)."""
        if entry.latency_ms is not None:
            self.latency_total_ms += entry.latency_ms
        if entry.error is not None:
            self.errors += 1
        if entry.cost is None:
            self.cost_unknown_steps += 1
        if entry.model is not None and entry.operation != "tool":
            stats = self.models.get(entry.model)
            if stats is None:
                stats = self.models[entry.model] = {"calls": 0, "cost": 0.0, "tokens_in": 0,
                                                    "tokens_out": 0, "cost_unknown": 0}
            stats["calls"] += 1
            stats["tokens_in"] += entry.tokens_in
            stats["tokens_out"] += entry.tokens_out
            if entry.cost is None:
                stats["cost_unknown"] += 1
            else:
                stats["cost"] += entry.cost

    def outcome(self, label: str, value: OutcomeValue = None) -> None:
        """Record what the run delivered: "resolved", "failed" or a label of your own, with an
        optional number (what it was worth, such as revenue). The latest call wins; it may come
        after the `with` block. Reports turn it into completion rates and cost per
        successful run."""
        if not isinstance(label, str) or not label.strip() or len(label) > 200:
            raise ConfigError("outcome", label, "session.outcome()",
                              "expected a non-empty label of at most 200 characters, such as "
                              "'resolved' or 'failed'")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or not math.isfinite(value)):
            raise ConfigError("outcome value", scrub(repr(value))[:80], "session.outcome()",
                              "expected a finite number or None")
        self.outcome_label, self.outcome_value = label, value
        self.outcome_ts = time.time()
        if self._record is not None:
            self._record["outcome"], self._record["outcome_value"] = label, self.outcome_value
        self.hooks.outcome(self)  # the ledger keeps it, when there is one

    # -- review ---------------------------------------------------------------------------
    def trace(self) -> list[dict[str, Any]]:
        """One dict per decision, in step order (the ambient session keeps the latest window)."""
        self.hooks.flush()
        return [entry.as_dict(step) for step, entry in list(self._trace)]

    def summary(self) -> dict[str, Any]:
        """Totals for the session, including every nested session's steps."""
        self.hooks.flush()
        with self.lock:
            budget = self.limits.budget
            end = self._t1 if self._t1 is not None else time.perf_counter()
            return {
                "run_id": self.run_id,
                "mode": self.mode,
                "agent": self.agent,
                "user": self.user,
                "project": self.project,
                "steps": self.steps,
                "cost_total": self.spent,
                "cost_unknown_steps": self.cost_unknown_steps,
                "latency_total_ms": self.latency_total_ms,
                "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out,
                "cached_tokens": self.cached_tokens,
                "tool_calls": max(self.tool_calls, self.tool_executions),
                "tool_calls_requested": self.tool_calls,
                "tool_executions": self.tool_executions,
                "budget": budget,
                "budget_remaining": None if budget is None else budget - self.spent,
                "actions": dict(self.actions),
                "modes": dict(self.modes),
                "reasons": dict(self.reasons),
                "models": {k: dict(v) for k, v in dict(self.models).items()},
                "guardrail_findings": sum(self.findings_by_rule.values()),
                "findings_by_rule": dict(self.findings_by_rule),
                "fallbacks": self.fallbacks,
                "retries": self.retries,
                "errors": self.errors,
                "degraded": self.degraded,
                "stopped": self.stopped,
                "duration_ms": (end - self._t0) * 1000.0,
                "started": self.started,
                "ended": self.ended,
                "outcome": self.outcome_label,
                "outcome_value": self.outcome_value,
                "outcome_ts": self.outcome_ts,
                "sessions": {k: dict(v) for k, v in dict(self.children).items()},
                "metadata": scrub(self.metadata),  # the dict is the caller's: it may have gained keys
                "trace_entries_dropped": self.entries - len(self._trace),
            }

    def findings(self) -> list[dict[str, Any]]:
        """Every guardrail finding, blocked or not: the near-miss corpus of this session."""
        return [e for e in self.trace() if e["operation"] == "guardrail"]

    def export_findings(self, path: str | Path) -> Path:
        """Write the findings as JSON Lines (rule, detector, score, action, applied, policy version,
        run, step, keyed hash of the matched text; never the text itself)."""
        target = Path(path)
        _write_atomically(target, "".join(json.dumps(f, default=str) + "\n" for f in self.findings()))
        return target

    def save(self, path: str | Path) -> Path:
        """Write the summary and the trace as JSON Lines (one header line, then one per entry)."""
        target = Path(path)
        lines = [json.dumps({"type": "summary", **self.summary()}, default=str)]
        lines.extend(json.dumps({"type": "entry", **entry}, default=str) for entry in self.trace())
        _write_atomically(target, "\n".join(lines) + "\n")
        return target

    def __repr__(self) -> str:
        name = "ambient" if self.ambient else (self.agent or "run")
        return f"<Session {name} {self.run_id[:8]} steps={self.steps} cost={self.spent:.6f}>"


def _write_atomically(target: Path, text: str) -> None:
    """Write beside the target and rename over it: a failed write (a full disk) leaves the
    previous file as it was, never half of a new one. An error names the target, not the
    temporary file."""
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or None)
    except OSError as exc:
        raise _naming(exc, target) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(exc, OSError):
            raise _naming(exc, target) from None
        raise


def _naming(exc: OSError, target: Path) -> OSError:
    """The same error (type, errno, reason) about `target`."""
    if exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(target))


class LoadedSession:
    """A session read back from `save()`: the same `summary()` and `trace()`, read-only."""

    def __init__(self, summary: dict[str, Any], entries: list[dict[str, Any]]) -> None:
        self._summary = summary
        self._entries = entries
        self.run_id: str = summary.get("run_id", "")

    def summary(self) -> dict[str, Any]:
        return dict(self._summary)

    def trace(self) -> list[dict[str, Any]]:
        return [dict(e) for e in self._entries]


def load_session(path: str | Path) -> LoadedSession:
    """Read a file written by `Session.save`."""
    loaded = [LoadedSession(summary, entries) for summary, entries, _line in iter_saved(path)]
    if len(loaded) != 1:
        raise CascadeflowError(f"{path}: holds {len(loaded)} saved sessions, expected one "
                               "(`cascadeflow report` reads files with several)")
    return loaded[0]


SavedRun = tuple[dict[str, Any], list[dict[str, Any]], int]


def iter_saved(path: str | Path) -> Iterator[SavedRun]:
    """Each session in a file of `Session.save` output (files may be concatenated): its summary,
    its trace entries and the line its summary is on. Reads line by line, so a file of
    thousands of runs never sits in memory as a whole."""
    summary: dict[str, Any] | None = None
    entries: list[dict[str, Any]] = []
    start = 0
    with open(path, encoding="utf-8-sig") as lines:  # a BOM (Windows editors) is skipped
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CascadeflowError(f"{path} line {number}: not a cascadeflow session file "
                                       f"({exc.msg})") from None
            kind = item.pop("type", None) if isinstance(item, dict) else None
            if kind == "summary":
                if summary is not None:
                    yield summary, entries, start
                summary, entries, start = item, [], number
            elif kind == "entry" and summary is not None:
                entries.append(item)
            elif kind == "entry":
                raise CascadeflowError(f"{path} line {number}: a trace entry before any summary line")
            else:
                raise CascadeflowError(f"{path} line {number}: unknown record type {kind!r}")
    if summary is not None:
        yield summary, entries, start


def current() -> Session | None:
    """The innermost open session in this context, or None."""
    return CURRENT.get()



Entered = tuple[Token[Session | None], Session | None, Any]


def set_current(session: Session | None) -> Entered:
    """Make `session` (and its span) current in this context; pass the result to `reset_current`.
    (Generator agents step in and out of their session around each item.)"""
    token = CURRENT.set(session)
    return token, session, None if session is None else session.hooks.activate(session)


def reset_current(entered: Entered) -> None:
    token, session, activation = entered
    if activation is not None and session is not None:
        session.hooks.deactivate(activation)
    CURRENT.reset(token)
