"""What an alert says: budget thresholds, fallbacks, guardrail `alert` actions, breaker openings."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Alert:
    kind: str  # budget_threshold | fallback | guardrail | breaker_open | guardrail_policy_rejected
    message: str
    severity: str = "warning"
    run_id: str | None = None
    step: int | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["attributes"] = dict(self.attributes)
        return out
