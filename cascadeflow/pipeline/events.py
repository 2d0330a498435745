"""Cascade events: retries, fallbacks, skips and degraded answers, recorded in the open sessions.

An event is a decision, not a step: it takes the number of the latest step and does not count
toward `max_steps`. Cascades route in observe mode too, so events are always `applied`.
"""

from __future__ import annotations

from typing import Any

from cascadeflow.alert import Alert
from cascadeflow.entry import Entry
from cascadeflow.pipeline.runtime import Runtime
from cascadeflow.secrets import scrub
from cascadeflow.session import Session, current


def note(rt: Runtime, action: str, reason: str, *, model: str | None, message: str = "",
         degraded: bool = False) -> None:
    """Record a cascade event in the open sessions (written by the worker, in order)."""
    if rt.mode == "off":
        return
    session = current() or rt.ambient
    entry = Entry(action=action, reason=reason, applied=True, mode=rt.mode, requested_model=model,
                  model=model, agent=session.agent_in_chain, operation="cascade",
                  run_id=session.run_id, status="ok")
    if message:
        entry.extra = {"message": scrub(message)}  # provider error texts can quote keys
    if not rt.enforce:  # observe: steps are numbered by the worker's replay, so number it there
        rt.worker.submit(_write, rt, session, None, entry, degraded)
        return
    with session.lock:
        numbers = tuple(s.steps for s in session.chain)
        rt.worker.submit(_write, rt, session, numbers, entry, degraded)


def _write(rt: Runtime, session: Session, numbers: tuple[int, ...] | None, entry: Entry,
           degraded: bool) -> None:
    if numbers is None:
        numbers = tuple(s.steps for s in session.chain)
    for s, number in zip(session.chain, numbers, strict=True):
        s.add_entry(number, entry)
        if entry.action == "retry":
            s.retries += 1
        elif entry.action == "fallback" and entry.reason not in ("degraded_answer", "static_answer"):
            s.fallbacks += 1
        if degraded:
            s.degraded = True
    if rt.observer is not None:
        rt.notify(rt.observer.decisions_made, [entry])


def alert(rt: Runtime, kind: str, message: str, attributes: dict[str, Any]) -> None:
    """Send an alert to the configured sinks (off the call path)."""
    session = current()
    rt.emit(Alert(kind, message, run_id=session.run_id if session else None, attributes=attributes))


def compliance_excludes(rt: Runtime, model: str) -> bool:
    """True when a compliance profile of the open sessions does not allow `model`."""
    session = current()
    if rt.mode == "off" or session is None:
        return False
    view = rt.view(session.chain, rt.policy())
    if not view.profiles:
        return False
    provider, bare, _name = rt.engine.names(model, None)
    configured = rt.engine.pool.lookup(model, provider)
    return not rt.engine.allowed(view.profiles, bare, provider, configured.spec if configured else None)
