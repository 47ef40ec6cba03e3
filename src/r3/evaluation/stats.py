"""Accuracy with a 95% Wilson score interval (sound at 0%, 100% and small n, unlike the normal one)."""

from __future__ import annotations

import math


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when n is 0."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes={successes} outside 0..{n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def accuracy(successes: int, n: int) -> dict[str, object]:
    """The block written to results.json for one attempt."""
    lo, hi = wilson_interval(successes, n)
    return {"correct": successes, "accuracy": successes / n if n else 0.0, "ci95": [lo, hi]}
