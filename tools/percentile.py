"""The percentile of request timings that `make bench` and `make loadtest` report."""

import math


def percentile(times: list[float], fraction: float) -> float:
    """The nearest-rank percentile of `times` (`fraction` 0.95 for p95; 0 for no times)."""
    if not times:
        return 0.0
    ordered = sorted(times)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
