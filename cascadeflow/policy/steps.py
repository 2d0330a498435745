"""Runaway loops: `max_steps` on any enclosing session stops the step."""

from __future__ import annotations

from cascadeflow.policy.decision import Decision
from cascadeflow.policy.view import ChainView


def check(view: ChainView) -> Decision | None:
    for session, cap in view.step_caps:
        if session.steps >= cap:
            who = session.agent or "run"
            return Decision("stop", "max_steps_reached", message=f"{who} reached max_steps={cap}")
    return None
