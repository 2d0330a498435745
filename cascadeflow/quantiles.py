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
    low, high, weight = ranks(len(ordered), q)
    return ordered[low] + (ordered[high] - ordered[low]) * weight


def ranks(count: int, q: float) -> tuple[int, int, float]:
    """Where the q-th percentile of `count` (at least 1) ordered values lies: the two closest
    ranks and the weight of the higher one, for a reader that streams the values in order
    rather than holding them all (`percentile` is `ordered[low] + (ordered[high] -
    ordered[low]) * weight`)."""
    rank = (count - 1) * q / 100.0
    low = math.floor(rank)
    return low, min(low + 1, count - 1), rank - low
