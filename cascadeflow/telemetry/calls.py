"""Which tool call of the model a `@tool` execution answers, for `gen_ai.tool.call.id`.

A `@tool` function is called by the application with the arguments the model sent, not with
the call id. When a model call in the same session (or one enclosing it) asked for that tool,
its id is the one the execution answers: the oldest call of that name not yet answered. Both
sides are recorded by the background worker in step order, so no lock is needed.
"""

from __future__ import annotations

import weakref
from collections import deque

from cascadeflow.pipeline.observer import StepRecord
from cascadeflow.session import Session
from cascadeflow.usage import Usage

MAX_PENDING = 64  # unanswered calls kept per session and tool name (the ambient session never closes)


class ToolCalls:
    """Tool call ids the model asked for and no execution answered yet, per session."""

    def __init__(self) -> None:
        self._pending: weakref.WeakKeyDictionary[Session, dict[str, deque[str]]] = (
            weakref.WeakKeyDictionary())

    def settle(self, step: StepRecord, usage: Usage | None) -> str | None:
        """Note the calls a model step asked for; for a tool step, the id it answers (or None)."""
        request = step.request
        if request.operation == "tool":
            name = request.tool or ""
            for session in step.chain:
                waiting = self._pending.get(session, {}).get(name)
                if waiting:
                    return waiting.popleft()
            return None
        if usage is not None and usage.calls:
            by_name = self._pending.setdefault(step.session, {})
            for call_id, name, _arguments in usage.calls:
                if call_id:
                    by_name.setdefault(name, deque(maxlen=MAX_PENDING)).append(call_id)
        return None
