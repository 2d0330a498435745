"""Latency this process has observed per model: an exponentially weighted moving average."""

from __future__ import annotations

ALPHA = 0.2


class LatencyStats:
    """Observed step latency per model; reads and writes are single dict operations (GIL-atomic)."""

    def __init__(self) -> None:
        self._ewma: dict[str, float] = {}

    def observe(self, model: str, latency_ms: float) -> None:
        old = self._ewma.get(model)
        self._ewma[model] = latency_ms if old is None else old + ALPHA * (latency_ms - old)

    def expected(self, model: str, prior: float | None = None) -> float | None:
        """Observed average if any, else the configured prior."""
        return self._ewma.get(model, prior)
