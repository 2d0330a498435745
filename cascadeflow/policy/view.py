"""What the rules need to know about a chain of sessions, computed once per session.

A session's limits never change once it is open, so everything derived from the chain (which
sessions have budgets, the compliance profiles, the KPI weights...) is computed the first time
a step runs in it and reused for every later step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cascadeflow.config import Config
from cascadeflow.guardrails.policy import Policy, Profile, Rule
from cascadeflow.policy.state import SessionState

ACTING = frozenset({"redact", "rewrite", "block"})  # guardrail actions that change what is sent


@dataclass(frozen=True, slots=True)
class ChainView:
    chain: tuple[SessionState, ...]
    profiles: tuple[str, ...]  # compliance profiles of every enclosing session, sorted
    weights: dict[str, float] | None  # KPI weights of the innermost session that sets them
    weights_key: tuple[tuple[str, float], ...] | None
    budgeted: tuple[SessionState, ...]
    tool_capped: tuple[SessionState, ...]
    latency_target: float | None
    tool_lists: tuple[tuple[tuple[str, ...] | None, tuple[str, ...]], ...]  # (allow, deny)
    step_caps: tuple[tuple[SessionState, int], ...]  # max_steps of sessions and their guardrail profiles
    guardrails: tuple[Profile, ...]  # guardrail profiles in force
    input_rules: tuple[Rule, ...]
    output_rules: tuple[Rule, ...]
    input_acts: bool  # an input rule may change or block the request (redact, rewrite, block)
    unlimited: bool  # no rule can say anything but allow: no limits, profiles, weights or lists
    reads_latency: bool  # a rule reads observed latency (a latency target or a latency KPI weight)
    output_acts: bool  # an output rule may change or block the answer
    input_numbered: bool  # an input rule redacts to the run's numbered placeholders
    approval_tools: tuple[str, ...]
    policy_version: str | None
    tools_exempt: tuple[str, ...]  # tools the caps and lists leave alone (frameworks' own)
    # budgets and limits shared with other processes (`cascadeflow.ledger.Shares`), opaque here:
    # its windowed budgets are in `budgeted`, like sessions with only a budget
    shared: Any = None
    # the engine's memo of the usual step's decisions for this chain (see `Engine.decide_in`)
    plans: dict[tuple[Any, ...], Any] = field(default_factory=dict, compare=False, repr=False)


def view_of(chain: tuple[SessionState, ...], config: Config, policy: Policy | None = None,
            shared: Any = None, shared_budgets: tuple[SessionState, ...] = ()) -> ChainView:
    """The view for `chain`, cached on its innermost session for this config and policy.
    `shared` and `shared_budgets`: the windowed budgets and rate limits of the chain, if any."""
    head = chain[0]
    cached: Any = head.policy_view
    if cached is not None and cached[0] is config and cached[2] is policy:
        view: ChainView = cached[1]
        return view
    for s in chain:  # run() checked it against the config of then: a later init() may lack it
        config.check_compliance(s.limits.compliance, "compliance",
                                "a session opened before the latest init()")
    profiles = tuple(sorted({s.limits.compliance for s in chain if s.limits.compliance}))
    chosen: dict[str, Profile] = {}
    caps = [(s, s.limits.max_steps) for s in chain if s.limits.max_steps is not None]
    if policy is not None:
        for s in chain:
            names = [s.limits.guardrails]
            if s.limits.compliance:
                names.append(config.compliance[s.limits.compliance].guardrails)
            for name in names:
                profile = policy.profiles.get(name) if name else None
                if name is not None and profile is not None:
                    chosen.setdefault(name, profile)
                    if profile.max_steps is not None:
                        caps.append((s, profile.max_steps))
    guardrails = tuple(chosen.values())
    weights = next((s.limits.kpi_weights for s in chain if s.limits.kpi_weights), None)
    latencies = [s.limits.max_latency_ms for s in chain if s.limits.max_latency_ms is not None]
    lists = [(s.limits.tools_allow, s.limits.tools_deny) for s in chain]
    lists += [(config.compliance[p].tools_allow, config.compliance[p].tools_deny) for p in profiles]
    lists += [(g.tools_allow, g.tools_deny) for g in guardrails]
    budgeted = tuple(s for s in chain if s.limits.budget is not None) + shared_budgets
    tool_capped = tuple(s for s in chain if s.limits.max_tool_calls is not None)
    step_caps = tuple((s, cap) for s, cap in caps if cap is not None)
    tool_lists = tuple((a, d) for a, d in lists if a is not None or d)
    latency_target = min(latencies) if latencies else None
    approval = tuple(t for g in guardrails for t in g.require_approval)
    view = ChainView(
        chain=chain,
        profiles=profiles,
        weights=weights,
        weights_key=tuple(sorted(weights.items())) if weights else None,
        budgeted=budgeted,
        step_caps=step_caps,
        guardrails=guardrails,
        input_rules=tuple(r for g in guardrails for r in g.input),
        output_rules=tuple(r for g in guardrails for r in g.output),
        input_acts=any(r.action in ACTING for g in guardrails for r in g.input),
        output_acts=any(r.action in ACTING for g in guardrails for r in g.output),
        input_numbered=any(r.redaction != "typed" for g in guardrails for r in g.input),
        approval_tools=approval,
        tools_exempt=config.tools_exempt,
        shared=shared,
        policy_version=",".join(sorted({g.version for g in guardrails})) or None,
        tool_capped=tool_capped,
        latency_target=latency_target,
        tool_lists=tool_lists,
        reads_latency=latency_target is not None or bool(weights and weights.get("latency")),
        unlimited=not (profiles or weights or budgeted or tool_capped or step_caps or tool_lists
                       or latency_target is not None or approval or shared is not None),
    )
    head.policy_view = (config, view, policy)
    return view
