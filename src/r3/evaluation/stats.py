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
    # Exact at the ends: centre - half rounds to a tiny positive number at 0 successes (and plots
    # would get negative error bars).
    lo = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    hi = 1.0 if successes == n else max(p, min(1.0, centre + half))
    return (lo, hi)


def accuracy(successes: int, n: int) -> dict[str, object]:
    """The block written to results.json for one attempt."""
    lo, hi = wilson_interval(successes, n)
    return {"correct": successes, "accuracy": successes / n if n else 0.0, "ci95": [lo, hi]}


def two_proportion_test(k1: int, n1: int, k2: int, n2: int) -> dict[str, float]:
    """Two-sided two-proportion z-test (pooled variance) of k1/n1 against k2/n2: the difference, z and
    p. For different problems; on the same ones `mcnemar_exact` uses the pairing and is sharper."""
    if n1 <= 0 or n2 <= 0:
        raise ValueError("both samples need n > 0")
    p1, p2 = k1 / n1, k2 / n2
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return {"diff": p1 - p2, "z": 0.0, "p": 1.0}
    z = (p1 - p2) / se
    return {"diff": p1 - p2, "z": z, "p": math.erfc(abs(z) / math.sqrt(2))}


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test: `only_a` problems solved by A and not B, `only_b` the reverse."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
