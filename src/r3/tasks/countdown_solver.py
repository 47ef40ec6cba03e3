"""An exact Countdown solver, for reference answers to rows without a `solution` (the hub dataset's).

An equation's last operation joins the values of two disjoint groups of the numbers: the solver lists
every value each small group reaches, then, for each split and each value `a` of one group, looks up
the value the other group would need (`target - a`, `target / a`, ...), asking a group too large to
list recursively. Arithmetic is exact (`Fraction`), so `6 / (1 - 3 / 4)` = 24 is found.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from typing import TypeAlias

#: Most numbers `solve` searches (6, the classic game, takes under a second; each more, over ten times that).
MAX_SOLVER_NUMS = 6

# An expression tree: a number, or (operator, left, right). Text is only built for the answer.
Tree: TypeAlias = int | tuple[str, "Tree", "Tree"]
# Every value a group of numbers (a bit mask over `nums`) can reach, with one tree for each.
_Values = dict[Fraction, Tree]

_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3


def solve(nums: list[int], target: int) -> str | None:
    """An equation using every number of `nums` once that evaluates exactly to `target`; None when there
    is none, or unsearched when `nums` is empty or longer than `MAX_SOLVER_NUMS`. ValueError unless the
    numbers are integers >= 0 (a negative one would print as a unary minus)."""
    for number in nums:
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise ValueError(f"countdown numbers must be integers >= 0, got {number!r}")
    if not nums or len(nums) > MAX_SOLVER_NUMS:
        return None
    tree = _Solver(nums).find((1 << len(nums)) - 1, Fraction(target))
    return None if tree is None else render(tree)


class _Solver:
    """One search: the numbers, and the values of the groups listed so far."""

    def __init__(self, nums: list[int]) -> None:
        self.nums = nums
        # Groups up to this size are listed in full; larger ones are asked for one value at a time.
        self.list_up_to = max(2, len(nums) - 2)
        self.cache: dict[int, _Values] = {1 << i: {Fraction(n): n} for i, n in enumerate(nums)}

    def values(self, mask: int) -> _Values:
        """Every value the numbers in `mask` can reach, each with the first tree found for it."""
        if (known := self.cache.get(mask)) is not None:
            return known
        out: _Values = {}
        for small, large in _splits(mask):
            for a, a_tree in self.values(small).items():
                for b, b_tree in self.values(large).items():
                    for value, tree in _combinations(a, a_tree, b, b_tree):
                        out.setdefault(value, tree)
        self.cache[mask] = out
        return out

    def find(self, mask: int, goal: Fraction) -> Tree | None:
        """A tree over exactly the numbers in `mask` whose value is `goal`, or None."""
        if mask.bit_count() <= self.list_up_to:
            return self.values(mask).get(goal)
        for small, large in _splits(mask):
            for a, a_tree in self.values(small).items():
                if (found := self.join(a, a_tree, goal, large)) is not None:
                    return found
        return None

    def join(self, a: Fraction, a_tree: Tree, goal: Fraction, other: int) -> Tree | None:
        """A tree `a op b` or `b op a` equal to `goal`, with `b` made of the numbers in `other`, or None."""
        # (operator, the b it needs, whether a comes first), in the order tried.
        needs = [("+", goal - a, True), ("-", a - goal, True), ("-", a + goal, False)]
        if a != 0:  # b / 0 is never allowed, and 0 / b == 0 is covered by 0 * b
            needs.append(("*", goal / a, True))
            if goal != 0:
                needs.append(("/", a / goal, True))  # never 0, so a / b is defined
            needs.append(("/", goal * a, False))
        for op, b, a_first in needs:
            if (found := self.find(other, b)) is not None:
                return (op, a_tree, found) if a_first else (op, found, a_tree)
        return ("*", a_tree, self.any_tree(other)) if a == 0 and goal == 0 else None  # 0 * b is 0

    def any_tree(self, mask: int) -> Tree:
        """Some tree over the numbers in `mask` (their sum), for `0 * anything`."""
        leaves = [n for i, n in enumerate(self.nums) if mask >> i & 1]
        tree: Tree = leaves[0]
        for leaf in leaves[1:]:
            tree = ("+", tree, leaf)
        return tree


def _splits(mask: int) -> Iterator[tuple[int, int]]:
    """Each way to split `mask` into two non-empty groups, once, the smaller group first."""
    sub = (mask - 1) & mask
    while sub:
        rest = mask ^ sub
        size, rest_size = sub.bit_count(), rest.bit_count()
        if size < rest_size or (size == rest_size and sub < rest):
            yield sub, rest
        sub = (sub - 1) & mask


def _combinations(a: Fraction, a_tree: Tree, b: Fraction, b_tree: Tree) -> list[tuple[Fraction, Tree]]:
    """Every value of `a op b` and `b op a`; for - and / the larger operand first (easier to read)."""
    if a < b:
        a, a_tree, b, b_tree = b, b_tree, a, a_tree
    out: list[tuple[Fraction, Tree]] = [
        (a + b, ("+", a_tree, b_tree)),
        (a - b, ("-", a_tree, b_tree)),
        (a * b, ("*", a_tree, b_tree)),
    ]
    if b != 0:
        out.append((a / b, ("/", a_tree, b_tree)))
    if a != b:
        out.append((b - a, ("-", b_tree, a_tree)))
        if a != 0:
            out.append((b / a, ("/", b_tree, a_tree)))
    return out


def render(tree: Tree) -> str:
    """The text of `tree` with the fewest parentheses that keep its meaning (`6 / (1 - 3 / 4)`)."""
    return _render(tree)[0]


def _render(tree: Tree) -> tuple[str, int]:
    """The text of `tree` and the precedence of its top operator."""
    if isinstance(tree, int):
        return str(tree), _ATOM
    op, left, right = tree
    precedence = _PRECEDENCE[op]
    left_text, left_precedence = _render(left)
    right_text, right_precedence = _render(right)
    if left_precedence < precedence:
        left_text = f"({left_text})"
    if right_precedence < precedence or (right_precedence == precedence and op in "-/"):
        right_text = f"({right_text})"
    return f"{left_text} {op} {right_text}", precedence
