"""Latency this process has observed per model: an exponentially weighted moving average.

Decisions read a published value. A model's first observation is published at once; later ones
only when the average has drifted by more than `PUBLISH_DRIFT` and at most once per
`PUBLISH_INTERVAL_S`. `version` counts publications, so answers computed from latencies (KPI
scores, switch decisions) are cached until it moves: on a busy process a few times a second,
not on most steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable

ALPHA = 0.2
PUBLISH_DRIFT = 0.05
PUBLISH_INTERVAL_S = 1.0


class LatencyStats:
    """Observed step latency per model; reads and writes are single dict operations (GIL-atomic)."""

    def __init__(self, interval_s: float = PUBLISH_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._ewma: dict[str, float] = {}
        self._published: dict[str, tuple[float, float]] = {}  # model -> (value, when)
        self._interval = interval_s
        self._clock = clock
        self.version = 0

    def observe(self, model: str, latency_ms: float) -> None:
        old = self._ewma.get(model)
        new = latency_ms if old is None else old + ALPHA * (latency_ms - old)
        self._ewma[model] = new
        shown = self._published.get(model)
        if shown is None:
            self._publish(model, new)
        elif abs(new - shown[0]) > PUBLISH_DRIFT * shown[0]:
            now = self._clock()
            if now - shown[1] >= self._interval:
                self._publish(model, new, now)

    def _publish(self, model: str, value: float, now: float | None = None) -> None:
        self._published[model] = (value, self._clock() if now is None else now)
        self.version += 1

    def expected(self, model: str, prior: float | None = None) -> float | None:
        """Observed average if any (as last published), else the configured prior."""
        shown = self._published.get(model)
        return prior if shown is None else shown[0]
