"""The engine: runs the rule families in a fixed order over one request and its session chain.

Rules are pure: they read the request, the sessions' counters and the configuration, and return
decisions. Whether a decision is applied is the pipeline's business (observe vs enforce).
"""

from __future__ import annotations

from collections.abc import Sequence

from cascadeflow.guardrails.policy import Policy
from cascadeflow.policy import budget, compliance, kpi, steps, tools
from cascadeflow.policy.context import Approver, Context
from cascadeflow.policy.decision import ALLOW, Decision
from cascadeflow.policy.state import SessionState
from cascadeflow.policy.view import ChainView
from cascadeflow.request import Request

__all__ = ["Approver", "Decision", "Engine"]


class Engine(Context):
    """Decides each step; see `Context` for what the rules share."""

    # -- the decision ----------------------------------------------------------------------
    def decide(self, request: Request, chain: Sequence[SessionState], policy: Policy | None = None
               ) -> list[Decision]:
        """Decisions for one step, most important first; `[ALLOW]` when nothing applies."""
        return self.decide_in(request, self.view(chain, policy))

    def decide_in(self, request: Request, view: ChainView) -> list[Decision]:
        """`decide` for a chain whose view the caller already has."""
        if view.unlimited and not request.irreversible:
            return [ALLOW]
        if request.operation == "tool":
            denied = steps.check(view) or tools.check_execution(self, request, view)
            return [denied] if denied else [ALLOW]
        stop = steps.check(view)
        if stop:
            return [stop]
        out: list[Decision] = []
        model = request.model
        switch = None if request.pinned else compliance.check(self, request, view)
        if switch and switch.action == "stop":
            return [switch]
        if switch is None and not request.pinned:
            switch = kpi.check_latency(self, request, view) or kpi.check_weights(self, request, view)
        if switch is not None:
            out.append(switch)
            model = switch.target_model or model
        money = budget.check(self, request, view, model)
        if money.action == "stop":
            return [money]
        if money.action == "switch_model":
            out = [d for d in out if d.action != "switch_model"]
            out.insert(0, money)
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
