"""The one definition of a percentile the benchmarks report and the tests assert."""
from __future__ import annotations

import statistics


def percentile(values, p):
    """Nearest-rank percentile (p99 of 100 values is the 99th, not an interpolation); None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def summary(values) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": round(percentile(values, 50), 3), "p95": round(percentile(values, 95), 3),
            "p99": round(percentile(values, 99), 3), "max": round(max(values), 3),
            "mean": round(statistics.mean(values), 3)}
