"""The engine: runs the rule families in a fixed order over one request and its session chain.

Rules are pure: they read the request, the sessions' counters and the configuration, and return
decisions. Whether a decision is applied is the pipeline's business (observe vs enforce).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cascadeflow import billing
from cascadeflow.guardrails.policy import Policy
from cascadeflow.policy import budget, compliance, kpi, steps, tools
from cascadeflow.policy.context import Approver, Context
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.policy.state import SessionState
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request

__all__ = ["Approver", "Decision", "Engine"]


_MISSING = Decision("allow", "missing")  # a memo miss (never returned)
MEMO_SIZE = 4096


# switches made for a preference (KPI weights, the latency target), which the budget may overrule
PREFERENCES = frozenset({"kpi_better_model", "latency_target_exceeded"})


class Engine(Context):
    """Decides each step; see `Context` for what the rules share.

    Which model a step should use (compliance, latency target, KPI weights) depends only on
    the requested model, the client's reach, the chain's profiles, weights and latency target,
    and the observed latencies' version: the answer is memoised under those, so most steps
    pay one dictionary lookup for it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._switches: dict[tuple[Any, ...], Decision | None] = {}

    # -- the decision ----------------------------------------------------------------------
    def decide(self, request: Request, chain: Sequence[SessionState], policy: Policy | None = None
               ) -> list[Decision]:
        """Decisions for one step, most important first; `[ALLOW]` when nothing applies."""
        return self.decide_in(request, self.view(chain, policy))

    def decide_in(self, request: Request, view: ChainView, patient: bool = True) -> list[Decision]:
        """`decide` for a chain whose view the caller already has. `patient`: see `budget.check`."""
        if view.unlimited and not request.irreversible:
            return [ALLOW]
        if request.operation == "tool":
            denied = steps.check(view) or tools.check_execution(self, request, view)
            return [denied] if denied else [ALLOW]
        if view.step_caps:
            stop = steps.check(view)
            if stop:
                return [stop]
        if not (view.tool_capped or view.tool_lists):
            # The usual step's decisions, memoised per chain and request shape: its model switch
            # (if any) and a budget the most the call can cost fits `CEILING_SHARE` times over
            # with no pressure. When the budget is closer than that, the full decision runs.
            # (Inline: every call of a session with limits takes this path.)
            kwargs = request.kwargs
            key = (request.model, request.provider, request.reachable, request.pinned, request.operation,
                   kwargs.get("max_tokens"), kwargs.get("max_completion_tokens"),
                   kwargs.get("max_output_tokens"), kwargs.get("n"), kwargs.get("best_of"),
                   billing.service_tier(request), self.latency.version)
            plan = view.plans.get(key)
            if plan is None:
                if len(view.plans) >= MEMO_SIZE:
                    view.plans.clear()
                plan = view.plans[key] = self._plan(request, view)
            decisions, most = plan
            if decisions is not None:
                share = self.config.budget_pressure
                for session in view.budgeted:
                    cap = session.limits.budget or 0.0
                    left = cap - session.spent - session.reserved
                    if left < most * budget.CEILING_SHARE or left < share * cap:
                        break
                else:
                    return decisions
        return self._decide(request, view, patient)

    def _decide(self, request: Request, view: ChainView, patient: bool = True) -> list[Decision]:
        """The full decision: model switch, budget (reserve, clamp, pressure, stop), tools."""
        out: list[Decision] = []
        model = request.model
        switch = None
        if not request.pinned and (view.profiles or view.weights or view.latency_target is not None):
            switch = self._switch(request, view)
            if switch is not None and switch.action == "stop":
                return [switch]
        if switch is not None:
            out.append(switch)
            model = switch.target_model or model
        money = budget.check(self, request, view, model, patient)
        if money.action == "stop" and money.reason != budget.WAIT and switch is not None \
                and switch.reason in PREFERENCES:
            # a better model the budget cannot pay for is no reason to stop: the model asked
            # for is judged instead (a compliance switch stays: the one asked for is not allowed)
            out, model = [], request.model
            money = budget.check(self, request, view, model, patient)
        if money.action == "stop":
            return [money]
        if money.action == "switch_model":
            out = [d for d in out if d.action != "switch_model"]
            out.insert(0, money)
        if view.tool_capped or view.tool_lists:
            denied = tools.check_request(self, request, view)
            if denied:
                out.append(denied)
        if not out:
            return [money]
        if money.action == "allow":
            # the reservation rides on the primary decision; a clamp is its own entry
            first = out[0]
            out[0] = Decision(first.action, first.reason, first.target_model, first.tools_denied,
                              money.max_tokens, first.message, money.reservation, money.price_known)
            if money.max_tokens is not None:
                out.append(Decision("allow", money.reason, max_tokens=money.max_tokens,
                                    message=money.message))
        return out

    def _plan(self, request: Request, view: ChainView) -> tuple[list[Decision] | None, float]:
        switch = None
        if not request.pinned and (view.profiles or view.weights or view.latency_target is not None):
            switch = self._switch(request, view)
            if switch is not None and switch.action == "stop":
                return None, 0.0
        if not view.budgeted:
            return ([switch] if switch else [ALLOW]), 0.0
        model = switch.target_model if switch and switch.target_model else request.model
        ceiling = self.ceiling(model, request.provider if model == request.model else None,
                               request.max_tokens, billing.choices(request), billing.inputs(request),
                               billing.service_tier(request))
        if ceiling is None:
            return None, 0.0
        if switch is None:
            return [ceiling], ceiling.reservation
        return [Decision(switch.action, switch.reason, switch.target_model, switch.tools_denied,
                         None, switch.message, ceiling.reservation, ceiling.price_known)
                ], ceiling.reservation

    def _switch(self, request: Request, view: ChainView) -> Decision | None:
        """Compliance first (it may stop), then the latency target, then KPI weights; memoised."""
        key = (request.model, request.provider, request.reachable, request.operation == "embeddings",
               view.profiles, view.weights_key, view.latency_target, self.latency.version)
        found = self._switches.get(key, _MISSING)
        if found is _MISSING:
            found = compliance.check(self, request, view)
            if found is None:
                found = kpi.check_latency(self, request, view) or kpi.check_weights(self, request, view)
            if len(self._switches) >= MEMO_SIZE:
                self._switches.clear()
            self._switches[key] = found
        return found
