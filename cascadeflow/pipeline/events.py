"""What a cascade asks of the runtime besides recording its events (`Runtime.note`): alerts,
and whether a compliance profile of the open sessions excludes a model."""

from __future__ import annotations

from typing import Any

from cascadeflow.alert import Alert
from cascadeflow.pipeline.runtime import Runtime
from cascadeflow.session import current


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
