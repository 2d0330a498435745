"""Latency this process has observed per model: an exponentially weighted moving average.

Decisions read a published value that only moves when the average has drifted by more than
`PUBLISH_DRIFT`; `version` counts those moves, so scores computed from latencies can be cached.
"""

from __future__ import annotations

ALPHA = 0.2
PUBLISH_DRIFT = 0.05


class LatencyStats:
    """Observed step latency per model; reads and writes are single dict operations (GIL-atomic)."""

    def __init__(self) -> None:
        self._ewma: dict[str, float] = {}
        self._published: dict[str, float] = {}
        self.version = 0

    def observe(self, model: str, latency_ms: float) -> None:
        old = self._ewma.get(model)
        new = latency_ms if old is None else old + ALPHA * (latency_ms - old)
        self._ewma[model] = new
        shown = self._published.get(model)
        if shown is None or abs(new - shown) > PUBLISH_DRIFT * shown:
            self._published[model] = new
            self.version += 1

    def expected(self, model: str, prior: float | None = None) -> float | None:
        """Observed average if any (as last published), else the configured prior."""
        return self._published.get(model, prior)
