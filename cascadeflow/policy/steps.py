"""Runaway loops: `max_steps` on any enclosing session stops the step."""

from __future__ import annotations

from collections.abc import Sequence

from cascadeflow.policy.decision import Decision
from cascadeflow.request import Request
from cascadeflow.session import Session


def check(request: Request, chain: Sequence[Session]) -> Decision | None:
    for session in chain:
        cap = session.limits.max_steps
        if cap is not None and session.steps >= cap:
            who = session.agent or "run"
            return Decision("stop", "max_steps_reached",
                            message=f"{who} reached max_steps={cap}")
    return None
