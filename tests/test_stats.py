"""Wilson intervals against values computed by hand from the closed form."""

import pytest

from r3.evaluation.stats import accuracy, wilson_interval


@pytest.mark.parametrize(
    ("k", "n", "lo", "hi"),
    [
        (0, 10, 0.0, 0.27753),
        (5, 10, 0.23659, 0.76341),
        (10, 10, 0.72247, 1.0),
        (1, 1, 0.20654, 1.0),
        (32, 100, 0.23669, 0.41663),
    ],
)
def test_wilson_matches_closed_form(k: int, n: int, lo: float, hi: float) -> None:
    got = wilson_interval(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_wilson_contains_point_estimate_and_narrows_with_n() -> None:
    small = wilson_interval(3, 10)
    large = wilson_interval(300, 1000)
    assert small[0] < 0.3 < small[1]
    assert large[1] - large[0] < small[1] - small[0]


def test_empty_and_invalid() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
    assert accuracy(1, 4)["accuracy"] == 0.25
