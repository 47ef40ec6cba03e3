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


def test_wilson_is_exact_at_the_ends_and_contains_the_estimate() -> None:
    """0 of n has lower bound exactly 0 and n of n upper bound exactly 1 (a rounding error above 0
    once gave plots negative error bars); every interval contains the point estimate."""
    for n in range(1, 201):
        assert wilson_interval(0, n)[0] == 0.0
        assert wilson_interval(n, n)[1] == 1.0
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_two_proportion_test_against_hand_computed_values() -> None:
    from r3.evaluation.stats import two_proportion_test

    # 60/100 vs 40/100: pooled 0.5, se = sqrt(0.25 * 0.02) = 0.070711, z = 2.828427, p = 0.004678
    got = two_proportion_test(60, 100, 40, 100)
    assert got["diff"] == pytest.approx(0.2)
    assert got["z"] == pytest.approx(2.828427, abs=1e-5)
    assert got["p"] == pytest.approx(0.004678, abs=1e-5)
    assert two_proportion_test(40, 100, 60, 100)["z"] == pytest.approx(-2.828427, abs=1e-5)
    assert two_proportion_test(0, 10, 0, 10)["p"] == 1.0  # no variance: no evidence either way


def test_mcnemar_exact_against_hand_computed_values() -> None:
    from r3.evaluation.stats import mcnemar_exact

    # 8 discordant pairs split 7/1: P(X <= 1) = 9/256, two-sided 18/256
    assert mcnemar_exact(7, 1) == pytest.approx(18 / 256)
    assert mcnemar_exact(1, 7) == pytest.approx(18 / 256)
    assert mcnemar_exact(4, 4) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
