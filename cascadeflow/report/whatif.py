"""What enforce would have done with observe runs: the stops, switches, denied tools and
guardrail actions observe recorded with `applied=False`, and what they would have saved.

Savings are bounds, not forecasts: a stop saves at least the calls it stops, and at most
everything the run spent from its first stop on (if the stop ends the run); a switch is priced
at the same token counts on the target model, from the bundled price map.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cascadeflow.pricing import PriceBook
from cascadeflow.report.decisions import NOTE_ONLY
from cascadeflow.report.model import Mark, Run, Step

RAISES = frozenset({"stop", "block"})  # applied, these raise a PolicyStop in the caller


@dataclass(slots=True)
class Switch:
    model: str
    target: str
    count: int = 0
    saved: float = 0.0  # at the same token counts, for the calls with a known target price
    unpriced: int = 0  # calls whose target model has no known price


@dataclass(slots=True)
class WouldHave:
    observe_runs: int = 0
    stops: dict[str, int] = field(default_factory=dict)  # reason -> calls enforce would stop
    switches: dict[tuple[str, str], Switch] = field(default_factory=dict)
    tools_denied: dict[str, int] = field(default_factory=dict)  # tool -> times denied
    guardrails: dict[tuple[str, str], int] = field(default_factory=dict)  # (rule, action) -> count
    saved_low: float = 0.0
    saved_high: float = 0.0
    failed: list[tuple[Run, Mark]] = field(default_factory=list)  # each run's first raising mark

    @property
    def stopped_calls(self) -> int:
        return sum(self.stops.values())

    @property
    def switched_calls(self) -> int:
        return sum(s.count for s in self.switches.values())

    @property
    def switch_saved(self) -> float:
        return sum(s.saved for s in self.switches.values())


def _raises(m: Mark) -> bool:
    if m.operation == "cascade":
        return False
    if m.action in RAISES:
        return True
    return m.action == "deny_tool" and m.operation == "tool"  # a denied @tool raises ToolDenied


def would_have(runs: Iterable[Run], prices: PriceBook | None = None) -> WouldHave:
    book = prices or PriceBook()
    out = WouldHave()
    for run in runs:
        if run.mode != "observe":
            continue
        out.observe_runs += 1
        first_raise: Mark | None = None
        stopped_steps: set[int] = set()
        by_number = {s.number: s for s in run.steps}
        for m in run.marks:
            if m.applied or m.operation == "cascade":
                continue
            if first_raise is None and _raises(m):
                first_raise = m
            if m.operation == "guardrail":
                if m.action in NOTE_ONLY:  # enforce would only have noted it too
                    continue
                key = (m.rule or m.reason, m.action)
                out.guardrails[key] = out.guardrails.get(key, 0) + m.count
            elif m.action == "stop":
                out.stops[m.reason] = out.stops.get(m.reason, 0) + 1
                stopped_steps.add(m.step)
            elif m.action == "deny_tool":
                step = by_number.get(m.step)
                names = m.tools_denied or ((step.tool,) if step and step.tool else ("?",))
                for name in names:
                    out.tools_denied[name] = out.tools_denied.get(name, 0) + 1
            elif m.action == "switch_model" and m.target_model:
                _switch(out, book, m, by_number.get(m.step))
        out.saved_low += sum(by_number[n].cost or 0.0 for n in stopped_steps if n in by_number)
        if first_raise is not None:
            out.failed.append((run, first_raise))
            out.saved_high += sum(s.cost or 0.0 for s in run.steps if s.number >= first_raise.step)
        else:
            out.saved_high += sum(by_number[n].cost or 0.0 for n in stopped_steps if n in by_number)
    return out


def _switch(out: WouldHave, book: PriceBook, m: Mark, step: Step | None) -> None:
    model, target = m.model or "?", m.target_model or "?"
    s = out.switches.get((model, target))
    if s is None:
        s = out.switches[(model, target)] = Switch(model, target)
    s.count += 1
    price = book.price(target)
    if step is None or step.cost is None or price is None:
        s.unpriced += 1
        return
    s.saved += step.cost - price.cost(step.tokens_in, step.tokens_out, step.cached_tokens)
