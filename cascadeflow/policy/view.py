"""What the rules need to know about a chain of sessions, computed once per session.

A session's limits never change once it is open, so everything derived from the chain (which
sessions have budgets, the compliance profiles, the KPI weights...) is computed the first time
a step runs in it and reused for every later step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cascadeflow.config import Config
from cascadeflow.session import Session


@dataclass(frozen=True, slots=True)
class ChainView:
    chain: tuple[Session, ...]
    profiles: tuple[str, ...]  # compliance profiles of every enclosing session, sorted
    weights: dict[str, float] | None  # KPI weights of the innermost session that sets them
    weights_key: tuple[tuple[str, float], ...] | None
    budgeted: tuple[Session, ...]
    step_capped: tuple[Session, ...]
    tool_capped: tuple[Session, ...]
    latency_target: float | None
    tool_lists: tuple[tuple[tuple[str, ...] | None, tuple[str, ...]], ...]  # (allow, deny)


def view_of(chain: tuple[Session, ...], config: Config) -> ChainView:
    """The view for `chain`, cached on its innermost session for this config."""
    head = chain[0]
    cached: Any = head.policy_view
    if cached is not None and cached[0] is config:
        view: ChainView = cached[1]
        return view
    profiles = tuple(sorted({s.limits.compliance for s in chain if s.limits.compliance}))
    weights = next((s.limits.kpi_weights for s in chain if s.limits.kpi_weights), None)
    latencies = [s.limits.max_latency_ms for s in chain if s.limits.max_latency_ms is not None]
    lists = [(s.limits.tools_allow, s.limits.tools_deny) for s in chain]
    lists += [(config.compliance[p].tools_allow, config.compliance[p].tools_deny) for p in profiles]
    view = ChainView(
        chain=chain,
        profiles=profiles,
        weights=weights,
        weights_key=tuple(sorted(weights.items())) if weights else None,
        budgeted=tuple(s for s in chain if s.limits.budget is not None),
        step_capped=tuple(s for s in chain if s.limits.max_steps is not None),
        tool_capped=tuple(s for s in chain if s.limits.max_tool_calls is not None),
        latency_target=min(latencies) if latencies else None,
        tool_lists=tuple((a, d) for a, d in lists if a is not None or d),
    )
    head.policy_view = (config, view)
    return view
