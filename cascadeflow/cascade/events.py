"""Cascade events: trace entries, alerts and breaker metrics, recorded in the open sessions."""

from __future__ import annotations

from typing import Any

from cascadeflow import runtime
from cascadeflow.secrets import scrub
from cascadeflow.session import Entry, current
from cascadeflow.telemetry.alerts import Alert


def note(action: str, reason: str, *, model: str | None, message: str = "",
         degraded: bool = False) -> None:
    """Record a cascade event (retry, fallback, skip, degraded answer) in the open sessions.

    It is a decision, not a step: it takes the number of the latest step and does not count
    toward `max_steps`. Cascades route in observe mode too, so events are always `applied`.
    """
    rt = runtime.state()
    if rt.mode == "off":
        return
    session = current() or rt.ambient
    entry = Entry(action=action, reason=reason, applied=True, mode=rt.mode, requested_model=model,
                  model=model, agent=session.agent_in_chain, operation="cascade",
                  run_id=session.run_id, status="ok")
    if message:
        entry.extra = {"message": scrub(message)}  # provider error texts can quote keys
    with session.lock:
        for s in session.chain:
            s.add_entry(s.steps, entry)
            if action == "retry":
                s.retries += 1
            elif action == "fallback" and reason not in ("degraded_answer", "static_answer"):
                s.fallbacks += 1
            if degraded:
                s.degraded = True
    if rt.telemetry is not None:
        rt.telemetry.decisions_made([entry])


def alert(kind: str, message: str, attributes: dict[str, Any]) -> None:
    """Send an alert to the configured sinks (off the call path)."""
    rt = runtime.state()
    session = current()
    rt.alerts.emit(Alert(kind, message, run_id=session.run_id if session else None,
                         attributes=attributes))


def compliance_excludes(model: str) -> bool:
    """True when a compliance profile of the open sessions does not allow `model`."""
    rt = runtime.state()
    session = current()
    if rt.mode == "off" or session is None:
        return False
    view = rt.engine.view(session.chain)
    if not view.profiles:
        return False
    provider, bare, _name = rt.engine.names(model, None)
    configured = rt.engine.pool.lookup(model, provider)
    return not rt.engine.allowed(view.profiles, bare, provider, configured.spec if configured else None)


def breaker_changed(deployment: str, old: str, new: str) -> None:
    """A circuit breaker moved: count it, and alert when one opens."""
    rt = runtime.state()
    if rt.telemetry is not None:
        rt.telemetry.breaker_changed(deployment, old, new)
    if new == "open":
        alert("breaker_open", f"circuit breaker for {deployment} opened ({old} -> open)",
              {"deployment": deployment, "from": old})

