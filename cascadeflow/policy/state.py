"""What the rules read of a session: its limits and its counters, nothing else.

`cascadeflow.session.Session` has these attributes; the rules depend on this shape only, so they
stay pure functions testable without a runtime.
"""

from __future__ import annotations

from typing import Any, Protocol

from cascadeflow.config import RunLimits


class SessionState(Protocol):
    limits: RunLimits
    agent: str | None
    steps: int  # steps admitted so far
    spent: float  # USD settled
    reserved: float  # USD held by steps in flight
    tool_calls: int  # tool calls models asked for
    tool_executions: int  # @tool functions run
    policy_view: Any  # the engine's cached view of the chain this session heads
    exceeded_reason: str  # the stop reason when this budget is the tightest one

