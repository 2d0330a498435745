"""Proposed limits from observed runs: `budget`, `max_steps` and `max_tool_calls` per run type
and per agent, at a percentile with head-room, as a `cascadeflow.toml` snippet.

The rollout guide asks for caps above the 95th percentile of observed runs; each proposal says
how many of the observed runs (or agent calls) it would have stopped, so the cut is a choice.
Runs that enforcement already stopped are counted but cut short: their need was higher.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal

from cascadeflow.errors import ConfigError
from cascadeflow.quantiles import percentile
from cascadeflow.report.fmt import money
from cascadeflow.report.model import Run
from cascadeflow.report.outcomes import session_costs

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
LIMITS = ("budget", "max_steps", "max_tool_calls")


@dataclass(slots=True)
class Usage:
    """What one run or one agent call used, as its limits count it (nested calls included)."""

    cost: float = 0.0
    steps: int = 0
    tool_calls_requested: int = 0
    tool_executions: int = 0
    stopped: bool = False

    @property
    def tool_calls(self) -> int:
        return max(self.tool_calls_requested, self.tool_executions)


@dataclass(slots=True)
class Proposal:
    section: str  # "run" or "agents.<name>"
    usages: list[Usage] = field(default_factory=list)
    values: dict[str, float | int | None] = field(default_factory=dict)
    observed: dict[str, float] = field(default_factory=dict)  # the percentile itself
    would_stop: dict[str, int] = field(default_factory=dict)

    @property
    def censored(self) -> int:
        return sum(u.stopped for u in self.usages)


def _section(agent: str | None) -> str:
    if agent is None:
        return "run"
    return "agents." + (agent if _BARE_KEY.match(agent) else _toml_string(agent))


def _toml_string(text: str) -> str:
    """A TOML basic string: the characters kept (JSON's ASCII escapes would split an emoji into
    surrogates, which TOML refuses), the control characters TOML forbids raw (DEL too) escaped."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _comment(text: str) -> str:
    """Text for a `#` comment: a line break in a file name must not start a line of TOML."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def usages(runs: Iterable[Run]) -> dict[str, list[Usage]]:
    """Per config section: one usage per outermost run (by its agent label) and per agent call."""
    out: dict[str, list[Usage]] = {}
    for run in runs:
        out.setdefault(_section(run.agent), []).append(
            Usage(run.cost, run.step_count, run.tool_calls, 0, run.stopped))
        if run.dropped:  # a bounded trace lost its early entries: its agent calls would look
            continue     # smaller than they were, and the limits proposed would stop them
        per: dict[str, Usage] = {}
        stopped: set[str] = set()
        costs = session_costs(run)
        for step in run.steps:
            for session in _ancestors(run, step.session):
                u = per.setdefault(session, Usage(cost=costs.get(session, 0.0)))
                u.steps += 1
                if step.operation == "tool":
                    u.tool_executions += 1
                else:
                    u.tool_calls_requested += step.tool_calls
                if any(m.action == "stop" and m.applied and m.operation != "cascade" for m in step.marks):
                    stopped.add(session)
        for session, u in per.items():
            info = run.sessions.get(session)
            agent = info.agent if info is not None else None
            if agent is None:
                agent = next((s.agent for s in run.steps if s.session == session and s.agent), None)
            if agent is None:
                continue
            u.stopped = session in stopped
            out.setdefault(_section(agent), []).append(u)
    return out


def _ancestors(run: Run, session: str) -> list[str]:
    """The nested sessions a step counts against (the outermost run itself is left out)."""
    chain: list[str] = []
    current: str | None = session
    while current and current != run.run_id and current not in chain:
        chain.append(current)
        info = run.sessions.get(current)
        current = info.parent if info is not None else None
    return chain


def _round_up(value: float, digits: int = 2) -> float:
    """Up to `digits` significant digits, never below the value ($0.000487 -> $0.00049). In
    decimal, from the float's shortest text: a float's scale such as 10**325 (a cost of 5e-324)
    is out of range, and 0.00049 is not 0.00050 for a binary tail."""
    if value <= 0:
        return 0.0
    if value >= sys.float_info.max:  # a cost near the float's limit, plus head-room
        return sys.float_info.max
    exact = Decimal(repr(value))
    step = Decimal(1).scaleb(exact.adjusted() - digits + 1)
    return min(float(exact.quantize(step, rounding=ROUND_CEILING)), sys.float_info.max)


def propose(runs: Sequence[Run], q: float = 95.0, headroom: float = 0.2) -> list[Proposal]:
    if not 0 < q <= 100:
        raise ConfigError("--percentile", q, "the command line", "expected a number in (0, 100]")
    if not 0 <= headroom <= 10:
        raise ConfigError("--headroom", headroom, "the command line", "expected a fraction such as 0.2")
    proposals = []
    for section, found in sorted(usages(runs).items(), key=lambda x: (x[0] != "run", x[0])):
        p = Proposal(section, found)
        for limit in LIMITS:
            values = [float(getattr(u, "cost" if limit == "budget" else
                                    "steps" if limit == "max_steps" else "tool_calls")) for u in found]
            at = percentile(values, q) or 0.0
            p.observed[limit] = at
            if at <= 0:  # nothing used: no limit to propose from it
                p.values[limit] = None
                continue
            proposed: float | int = (_round_up(at * (1 + headroom)) if limit == "budget"
                                     else max(1, math.ceil(at * (1 + headroom) - 1e-9)))
            p.values[limit] = proposed
            p.would_stop[limit] = sum(1 for v in values if v > proposed)
        proposals.append(p)
    return proposals


def _toml_value(value: float | int) -> str:
    """A plain decimal (0.000019, not 1.9e-05), still a TOML float, as many digits as it takes."""
    if isinstance(value, int):
        return str(value)
    if 0 < value < 1e-12:
        return repr(value)  # 5e-324: a TOML float too, not 0.0 nor 300 zeros
    text = format(Decimal(repr(value)), "f")  # every digit
    return text if "." in text else text + ".0"


def _enough(q: float) -> int:
    """Observations below which the q-th percentile is just the largest one seen (20 for p95)."""
    return 1 if q >= 100 else math.ceil(100 / (100 - q) - 1e-9)


def _observed(limit: str, value: float) -> str:
    return money(value) if limit == "budget" else f"{value:g}"


def to_toml(proposals: Sequence[Proposal], q: float, headroom: float, sources: Sequence[str],
            bounded: int = 0) -> str:
    """The snippet to merge into cascadeflow.toml, each value with what it rests on (`bounded`:
    runs whose trace dropped entries, left out of the agent proposals)."""
    lines = [f"# cascadeflow recommend: p{q:g} of observed use + {headroom:.0%} head-room",
             f"# from {_comment(', '.join(sources)) or '-'}; merge into cascadeflow.toml.",
             "# Each line: the percentile observed, and how many observed runs (or agent calls) "
             "the limit would have stopped."]
    if bounded:
        lines.append(f"# {bounded} runs outgrew run_max_entries (their early trace entries are gone): "
                     "their agent calls are left out of the [agents.*] proposals.")
    for p in proposals:
        kind = "runs" if p.section == "run" or not p.section.startswith("agents.") else "calls"
        lines += ["", f"# {len(p.usages)} observed {kind}"
                  + (f"; {p.censored} stopped by enforcement (their need was higher)"
                     if p.censored else "")]
        if len(p.usages) < _enough(q):
            lines.append(f"# too few for a p{q:g} (it takes {_enough(q)} or more): these rest on the few "
                         f"seen; observe more {kind} before enforcing them")
        lines.append(f"[{p.section}]")
        for limit in LIMITS:
            value = p.values.get(limit)
            seen = _observed(limit, p.observed[limit])
            if value is None:
                lines.append(f"# {limit}: none used (p{q:g} = {seen}), no limit proposed")
                continue
            stops = p.would_stop[limit]
            lines.append(f"{limit} = {_toml_value(value)}  # p{q:g} {seen}; would have stopped {stops} of "
                         f"{len(p.usages)}")
    return "\n".join(lines) + "\n"
