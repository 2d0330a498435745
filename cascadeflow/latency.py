"""Latency this process has observed per model: an exponentially weighted moving average.

Decisions read a published value. A model's first observation is published at once; later ones
only when the average has drifted by more than `PUBLISH_DRIFT` and at most once per
`PUBLISH_INTERVAL_S`. `version` counts publications, so answers computed from latencies (KPI
scores, switch decisions) are cached until it moves: on a busy process a few times a second,
not on most steps.

A model not observed for `FORGET_AFTER_S` is forgotten (back to its prior): a model that
decisions route away from (slower than the latency target, or scored lower for its latency) is
never called, so never measured again, and without this one slow call (a cold connection) would
keep it out for the life of the process. Once forgotten it is tried again and measured afresh.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

ALPHA = 0.2
PUBLISH_DRIFT = 0.05
PUBLISH_INTERVAL_S = 1.0
FORGET_AFTER_S = 60.0


class LatencyStats:
    """Observed step latency per model; reads are single dict operations (GIL-atomic)."""

    def __init__(self, interval_s: float = PUBLISH_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic,
                 forget_after_s: float | None = None) -> None:
        self._ewma: dict[str, float] = {}
        self._published: dict[str, tuple[float, float]] = {}  # model -> (value, when)
        self._seen: dict[str, float] = {}  # model -> when last observed
        self._interval = interval_s
        self._forget = forget_after_s  # None: `FORGET_AFTER_S` as it is when read
        self._next_forget = math.inf  # when the oldest observation is due to be forgotten
        self._lock = threading.Lock()  # forgetting walks the dicts: not alongside another writer
        self._clock = clock
        self.version = 0

    def observe(self, model: str, latency_ms: float) -> None:
        now = self._clock()
        forget = FORGET_AFTER_S if self._forget is None else self._forget
        with self._lock:
            if now >= self._next_forget:
                self._forget_stale(now, forget)
            self._seen[model] = now
            if self._next_forget == math.inf:
                self._next_forget = now + forget
            old = self._ewma.get(model)
            new = latency_ms if old is None else old + ALPHA * (latency_ms - old)
            self._ewma[model] = new
            shown = self._published.get(model)
            if shown is None or (abs(new - shown[0]) > PUBLISH_DRIFT * shown[0]
                                 and now - shown[1] >= self._interval):
                self._publish(model, new, now)

    def _forget_stale(self, now: float, forget: float) -> None:
        """Drop the models not observed for `forget` seconds (under the lock)."""
        oldest = math.inf
        for model, seen in list(self._seen.items()):
            if now - seen >= forget:
                del self._seen[model]
                self._ewma.pop(model, None)
                if self._published.pop(model, None) is not None:
                    self.version += 1
            else:
                oldest = min(oldest, seen)
        self._next_forget = oldest + forget

    def _publish(self, model: str, value: float, now: float) -> None:
        self._published[model] = (value, now)
        self.version += 1

    def expected(self, model: str, prior: float | None = None) -> float | None:
        """Observed average if any (as last published), else the configured prior."""
        shown = self._published.get(model)
        return prior if shown is None else shown[0]
