"""One definition of a percentile for every figure cascadeflow reports (the review's latency
and cost tables, budget recommendations, the ledger's request log), so the same data never
shows two different P95s."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's
    default, `statistics.quantiles(method="inclusive")`), so p50 of [1, 2, 3, 4] is 2.5; None
    for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
