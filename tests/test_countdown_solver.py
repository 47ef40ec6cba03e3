"""The exact Countdown solver: it finds an equation whenever one exists, and the verifier accepts it."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from r3.tasks.countdown import CountdownTask, generate_countdown
from r3.tasks.countdown_solver import MAX_SOLVER_NUMS, solve

TASK = CountdownTask()


def accepted(nums: list[int], target: int, equation: str) -> bool:
    """Whether the task's own verifier accepts `equation` for the row, in the prompt's answer format."""
    return TASK.verify({"nums": nums, "target": target}, f"<answer> {equation} </answer>").ok


@pytest.mark.parametrize("count", [3, 4])
def test_solves_every_generated_row(count: int) -> None:
    for row in generate_countdown(300, seed=count, min_nums=count, max_nums=count):
        equation = solve(row["nums"], row["target"])
        assert equation is not None, row
        assert accepted(row["nums"], row["target"], equation), (row, equation)


@pytest.mark.parametrize(
    ("nums", "target"),
    [
        ([2, 3, 4], 24),
        ([1, 2, 3, 4], 24),
        ([25, 50, 75, 100], 125),
        ([3, 3, 8, 8], 24),  # 8 / (3 - 8 / 3): needs a non-integer intermediate
        ([5, 5, 5, 1], 24),  # (5 - 1 / 5) * 5
        ([7], 7),
        ([0, 5, 9], 0),  # 0 * (5 + 9)
        ([4, 9], -5),  # a negative target is reachable too
        ([6, 3], 2),
    ],
)
def test_hand_written_solvable_rows(nums: list[int], target: int) -> None:
    equation = solve(nums, target)
    assert equation is not None
    assert accepted(nums, target, equation), equation


def test_non_integer_intermediate() -> None:
    assert solve([1, 3, 4, 6], 24) == "6 / (1 - 3 / 4)"


def test_output_uses_only_the_parentheses_it_needs() -> None:
    equation = solve([1, 3, 4, 6], 24)
    assert equation is not None
    assert equation.count("(") == 1
    assert solve([2, 3, 4], 24) == "4 * 3 * 2"


@pytest.mark.parametrize(
    ("nums", "target"),
    [([1, 1, 1], 100), ([2, 2], 7), ([1, 1, 1, 1], 1000), ([5], 6), ([0, 0], 1), ([], 0)],
)
def test_unsolvable_rows(nums: list[int], target: int) -> None:
    assert solve(nums, target) is None


def test_too_many_numbers_are_refused_not_searched() -> None:
    nums = [1] * (MAX_SOLVER_NUMS + 1)
    assert solve(nums, sum(nums)) is None  # solvable, but more numbers than the solver searches
    assert solve([1] * MAX_SOLVER_NUMS, MAX_SOLVER_NUMS) is not None


@pytest.mark.parametrize("bad", [[-1, 2], [1.5, 2], [True, 2]])
def test_rejects_numbers_a_row_cannot_have(bad: list) -> None:
    with pytest.raises(ValueError, match="integers >= 0"):
        solve(bad, 3)


def test_random_four_number_rows_terminate_with_correct_answers() -> None:
    """Many of these are unsolvable, the slowest case: each must end with None or a correct equation."""
    rng = random.Random(7)
    solved = 0
    for _ in range(200):
        nums = [rng.randint(1, 100) for _ in range(4)]
        target = rng.randint(1, 1000)
        equation = solve(nums, target)
        if equation is not None:
            solved += 1
            assert accepted(nums, target, equation), (nums, target, equation)
    assert 0 < solved < 200


def test_six_numbers_are_searched() -> None:
    equation = solve([25, 50, 75, 100, 3, 6], 952)  # the famous 1972 Countdown round
    assert equation is not None
    assert accepted([25, 50, 75, 100, 3, 6], 952, equation)
    assert solve([97, 89, 83, 79, 73, 71], 10**12 + 7) is None


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=30), min_size=1, max_size=4),
    st.integers(min_value=-50, max_value=200),
)
def test_any_answer_is_accepted_by_the_verifier(nums: list[int], target: int) -> None:
    equation = solve(nums, target)
    if equation is not None:
        assert accepted(nums, target, equation), equation


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=4), st.randoms())
def test_reachable_targets_are_found(nums: list[int], rng: random.Random) -> None:
    """Combine the numbers at random with exact arithmetic; an integer result must be found again."""
    pool = [Fraction(number) for number in nums]
    while len(pool) > 1:
        a, b = pool.pop(rng.randrange(len(pool))), pool.pop(rng.randrange(len(pool)))
        op = rng.choice("+-*/" if b != 0 else "+-*")
        pool.append({"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b)
    assume(pool[0].denominator == 1)
    target = int(pool[0])
    equation = solve(nums, target)
    assert equation is not None, (nums, target)
    assert accepted(nums, target, equation), equation
