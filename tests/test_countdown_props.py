"""Property-based tests for the Countdown verifier: it never raises, and it accepts every correct
equation, however it is written."""

from __future__ import annotations

import contextlib
from fractions import Fraction

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from r3.tasks import Verdict
from r3.tasks.countdown import CountdownTask, check_equation
from r3.tasks.countdown_expr import ExpressionError, evaluate

TASK = CountdownTask()
EX = {"nums": [1, 2, 3, 4], "target": 24}
ALPHABET = "0123456789+-*/() =.<>answer/x_\n\t"

# An expression tree: ("num", n) | ("neg", tree) | (op, left, right).
Tree = tuple


def _value(tree: Tree) -> Fraction:
    kind = tree[0]
    if kind == "num":
        return Fraction(tree[1])
    if kind == "neg":
        return -_value(tree[1])
    left, right = _value(tree[1]), _value(tree[2])
    if kind == "+":
        return left + right
    if kind == "-":
        return left - right
    if kind == "*":
        return left * right
    if right == 0:
        raise ZeroDivisionError
    return left / right


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}


def _render(tree: Tree, full_parens: bool, spaces: bool) -> tuple[str, int]:
    """Text and precedence (3 = atom or unary). Minimal parentheses unless `full_parens`."""
    kind = tree[0]
    if kind == "num":
        return str(tree[1]), 3
    if kind == "neg":
        inner, prec = _render(tree[1], full_parens, spaces)
        return ("-" + (inner if prec == 3 else f"({inner})")), 3
    prec = _PREC[kind]
    left, lp = _render(tree[1], full_parens, spaces)
    right, rp = _render(tree[2], full_parens, spaces)
    if full_parens or lp < prec:
        left = f"({left})"
    if full_parens or rp < prec or (rp == prec and kind in "-/"):
        right = f"({right})"
    sep = " " if spaces else ""
    return f"{left}{sep}{kind}{sep}{right}", prec


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[int], Tree]:
    nums = draw(st.lists(st.integers(0, 999), min_size=1, max_size=6))
    order = draw(st.permutations(nums))
    pool: list[Tree] = [("num", n) for n in order]
    while len(pool) > 1:
        i = draw(st.integers(0, len(pool) - 1))
        left = pool.pop(i)
        j = draw(st.integers(0, len(pool) - 1))
        right = pool.pop(j)
        node: Tree = (draw(st.sampled_from("+-*/")), left, right)
        if draw(st.booleans()) and draw(st.booleans()):
            node = ("neg", node)
        pool.append(node)
    tree = pool[0]
    if draw(st.integers(0, 4)) == 0:
        tree = ("neg", tree)
    return nums, tree


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(trees(), st.booleans(), st.booleans(), st.booleans())
def test_correct_equations_always_pass(
    case: tuple[list[int], Tree], full: bool, spaces: bool, claim: bool
) -> None:
    nums, tree = case
    try:
        value = _value(tree)
    except ZeroDivisionError:
        assume(False)
    assume(value.denominator == 1)
    target = int(value)
    text, _ = _render(tree, full, spaces)
    if claim:
        text += f" = {target}"
    assume(len(text) <= 1000)
    example = {"nums": nums, "target": target}
    verdict = TASK.verify(example, f"Reasoning...\n<answer> {text} </answer>")
    assert verdict == Verdict(True, ""), (text, verdict)
    assert evaluate(_render(tree, False, True)[0]) == value


@settings(max_examples=200)
@given(trees())
def test_wrong_target_fails(case: tuple[list[int], Tree]) -> None:
    nums, tree = case
    try:
        value = _value(tree)
    except ZeroDivisionError:
        assume(False)
    text, _ = _render(tree, False, True)
    target = int(value) + 1 if value.denominator == 1 else int(value)
    verdict = check_equation(nums, target, text)
    assert not verdict.ok and verdict.reason.startswith("evaluates to")


@settings(max_examples=500)
@given(st.text(max_size=2000))
def test_random_text_never_raises(text: str) -> None:
    for completion in (text, f"<answer>{text}</answer>", f"x<answer>{text}</answer>{text}"):
        verdict = TASK.verify(EX, completion)
        assert isinstance(verdict, Verdict)
        assert verdict.ok or verdict.reason


@settings(max_examples=500)
@given(st.text(alphabet=ALPHABET, max_size=300))
def test_expression_like_text_never_raises(text: str) -> None:
    verdict = TASK.verify(EX, f"<answer>{text}</answer>")
    assert isinstance(verdict, Verdict)
    assert verdict.ok == (verdict.reason == "")
    with contextlib.suppress(ExpressionError):
        evaluate(text)


@settings(max_examples=200)
@given(
    st.lists(st.integers(-5, 10**7), max_size=30) | st.text(max_size=5) | st.none(),
    st.integers() | st.floats() | st.booleans() | st.none(),
    st.text(alphabet=ALPHABET, max_size=100),
)
def test_arbitrary_examples_never_raise(nums: object, target: object, text: str) -> None:
    verdict = TASK.verify({"nums": nums, "target": target}, f"<answer>{text}</answer>")
    assert isinstance(verdict, Verdict)
