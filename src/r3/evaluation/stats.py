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
    # Exact at the ends: with 0 (or n) successes the bound is 0 (or 1) in exact arithmetic, but
    # centre - half rounds to a tiny positive number (2.8e-17 for 0 of 6), which would put the
    # interval above the point estimate and give plots negative error bars.
    lo = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    hi = 1.0 if successes == n else max(p, min(1.0, centre + half))
    return (lo, hi)


def accuracy(successes: int, n: int) -> dict[str, object]:
    """The block written to results.json for one attempt."""
    lo, hi = wilson_interval(successes, n)
    return {"correct": successes, "accuracy": successes / n if n else 0.0, "ci95": [lo, hi]}
