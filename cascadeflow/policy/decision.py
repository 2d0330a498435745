"""The value every rule returns."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Decision:
    """What the engine wants done with one step; `applied` is decided by the mode, not here.

    Treat it as immutable: decisions are memoised and shared. (Not `frozen=True`: a frozen
    dataclass sets each field through `object.__setattr__`, several times slower to build, and
    one is built on most steps.)"""

    action: str  # allow | stop | switch_model | deny_tool
    reason: str
    target_model: str | None = None
    tools_denied: tuple[str, ...] = ()
    max_tokens: int | None = None
    message: str = ""
    reservation: float = 0.0
    price_known: bool = True


ALLOW = Decision("allow", "ok")
