"""The value every rule returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Decision:
    """What the engine wants done with one step; `applied` is decided by the mode, not here."""

    action: str  # allow | stop | switch_model | deny_tool
    reason: str
    target_model: str | None = None
    tools_denied: tuple[str, ...] = ()
    max_tokens: int | None = None
    message: str = ""
    reservation: float = 0.0
    price_known: bool = True


ALLOW = Decision("allow", "ok")
