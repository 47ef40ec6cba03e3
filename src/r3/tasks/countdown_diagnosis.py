"""Countdown's diagnosis of a failed attempt, and failed attempts made from a correct equation.

Both serve the warm-start that primes the episode (`r3 sft --primed_fraction`): a failed attempt, a
reflection that says what is wrong with it, and the corrected answer. The reflection is written from
the verifier's own findings (its parser and its count of the numbers, never `eval`), so it states
only facts the verifier checked. It must never give the answer away: a warm-start that taught
reflections holding a correct equation would teach the retry to copy instead of to fix. So every
diagnosis is checked before it is returned (`contains_solution`: no stretch of it verifies), and a
quieter wording replaces one that fails the check.
"""

from __future__ import annotations

import random
import re
from fractions import Fraction

from r3.tasks.countdown import check_equation, extract_answer, number_mismatch
from r3.tasks.countdown_expr import Expression, ExpressionError, format_value, parse_answer

#: The characters an equation can be written with (`countdown_expr.tokenize` rejects any other).
EQUATION_CHARS = frozenset("0123456789+-*/()= \t\r\n")
#: A failed equation is quoted in its diagnosis only up to this length (longer ones are described).
MAX_QUOTE_CHARS = 60
#: A stretch of equation characters longer than this is not searched but counted as a leak: no
#: diagnosis R3 writes has one, and the search is quadratic in its length.
MAX_STRETCH_CHARS = 200
#: Perturbations tried before `perturb_equation` gives up.
PERTURB_TRIES = 20

#: The diagnosis when every more specific wording would show a correct equation (possible only in
#: degenerate rows, e.g. one number that is the target): no digit, so nothing in it can verify.
FALLBACK = (
    "My equation does not reach the target using each given number exactly once, so I need another "
    "way to combine the numbers."
)
_OPEN_TAG, _CLOSE_TAG = "<answer>", "</answer>"


def diagnose_answer(nums: list[int], target: int, completion: str) -> str | None:
    """A first-person reflection on why `completion` fails (`nums`, `target` already checked), or
    None when it does not fail. The failed equation is quoted when that shows no correct equation."""
    answer = extract_answer(completion)
    if answer is None:
        return _missing_tag(completion)
    quote = _quotable(answer)
    for wording in (quote, None):
        text = _diagnosis(nums, target, answer, wording)
        if text is None:
            return None
        if not contains_solution(nums, target, text):
            return text
    return FALLBACK


def contains_solution(nums: list[int], target: int, text: str) -> bool:
    """Whether any stretch of `text` is a correct equation for `nums` and `target` (as the verifier
    judges it). Only stretches of equation characters can parse, so only those are searched."""
    for stretch in re.findall(r"[0-9+\-*/()=\s]+", text):
        if len(stretch) > MAX_STRETCH_CHARS:
            return True
        for start in range(len(stretch)):
            if stretch[start] not in "0123456789(+-":
                continue
            for end in range(start + 1, len(stretch) + 1):
                if stretch[end - 1] in "0123456789)" and check_equation(nums, target, stretch[start:end]).ok:
                    return True
    return False


def _missing_tag(completion: str) -> str:
    """Why no answer could be read: tags missing, unclosed, or closed without being opened."""
    if _OPEN_TAG in completion:
        return (
            "I opened <answer> but never closed it with </answer>, so my equation could not be read. "
            "I must end with one equation inside <answer> </answer> tags."
        )
    if _CLOSE_TAG in completion:
        return (
            "I wrote </answer> without an opening <answer> tag, so my equation could not be read. "
            "I must end with one equation inside <answer> </answer> tags."
        )
    return (
        "I did not put a final equation inside <answer> </answer> tags, so there was nothing to check. "
        "I must end with one equation in those tags."
    )


def _quotable(answer: str) -> str | None:
    """The answer as it may be quoted: one short line, or None (then it is described, not quoted)."""
    text = " ".join(answer.split())
    if not text or len(text) > MAX_QUOTE_CHARS or any(ch not in EQUATION_CHARS for ch in text):
        return None
    return text


def _short(number: int) -> str:
    """A number as the verifier shows it: whole when short, its first digits when not."""
    text = str(number)
    return text if len(text) <= 24 else f"{text[:12]}... ({len(text)} digits)"


def _diagnosis(nums: list[int], target: int, answer: str, quote: str | None) -> str | None:
    """The reflection on `answer`, quoting `quote` as the equation when given; None if it verifies."""
    subject = f"My equation {quote}" if quote else "My equation"
    try:
        expression, claim = parse_answer(answer)
    except ExpressionError as exc:
        if not answer.strip():
            return "My <answer> tags were empty. I must put one equation between them."
        return (
            f"{subject} is not a valid equation ({exc}), so it could not be checked. I must write one "
            "equation using only the given numbers, + - * / and parentheses."
        )
    claimed = ""
    if claim is not None and claim != target:
        claimed = f"I wrote = {_short(claim)} at the end, but the target is {_short(target)}."
    problem = _numbers_sentence(subject, nums, expression.numbers) or _value_sentence(
        subject, target, expression
    )
    if not claimed and not problem:
        return None
    return " ".join(part for part in (claimed, problem) if part)


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _numbers_sentence(subject: str, nums: list[int], used: tuple[int, ...]) -> str:
    """What is wrong with the numbers the equation uses, or "" when they are exactly the list."""
    mismatch = number_mismatch(nums, used)
    if mismatch is None:
        return ""
    number, times, listed = mismatch.number, mismatch.used, mismatch.listed
    if listed == 0:
        listing = ", ".join(str(n) for n in nums)
        return (
            f"{subject} uses {number}, which is not in the list [{listing}]. I may use only the given "
            "numbers."
        )
    if times == 0:
        return f"{subject} leaves out {number}, but every number in the list must be used exactly once."
    return (
        f"{subject} uses {number} {_times(times)}, but the list has it {_times(listed)}. Each number must "
        "be used exactly as often as the list has it."
    )


def _value_sentence(subject: str, target: int, expression: Expression) -> str:
    """What is wrong with the equation's value (division by zero, too large, not the target), or ""."""
    try:
        value: Fraction = expression.evaluate()
    except ExpressionError as exc:
        if "zero" in str(exc):
            return (
                f"{subject} divides by zero, which has no value. I need another way to combine the numbers."
            )
        return f"{subject} cannot be evaluated ({exc}). I need another way to combine the numbers."
    if value == target:
        return ""
    gap = value - target
    direction = "too high" if gap > 0 else "too low"
    return (
        f"{subject} evaluates to {format_value(value)}, not {_short(target)}: {format_value(abs(gap))} "
        f"{direction}, so I need another way to combine the numbers."
    )


# --------------------------------------------------------------------------------------------------
# Perturbed attempts


def perturb_equation(nums: list[int], target: int, equation: str, rng: random.Random) -> str | None:
    """A wrong equation made from a correct one: an operator changed, or a number swapped for one not
    in the list or for another number of the list (used twice then). Tries a few times until the
    verifier rejects the result; None if none was found. Deterministic given `rng`."""
    numbers = [m.span() for m in re.finditer(r"\d+", equation)]
    operators = _binary_operators(equation)
    for _ in range(PERTURB_TRIES):
        kind = rng.choice(("operator", "wrong number", "duplicate number"))
        candidate = _perturbed(kind, nums, equation, numbers, operators, rng)
        if candidate and candidate != equation and not check_equation(nums, target, candidate).ok:
            return candidate
    return None


def _binary_operators(equation: str) -> list[int]:
    """Where the binary operators are: an operator after a number or a closing parenthesis (a unary
    minus follows an operator or an opening parenthesis, and changing it would not change the kind)."""
    found = []
    for match in re.finditer(r"[+\-*/]", equation):
        before = equation[: match.start()].rstrip()
        if before and before[-1] in "0123456789)":
            found.append(match.start())
    return found


def _perturbed(
    kind: str,
    nums: list[int],
    equation: str,
    numbers: list[tuple[int, int]],
    operators: list[int],
    rng: random.Random,
) -> str | None:
    """One perturbation of `kind`, or None when the equation offers nothing to perturb that way."""
    if kind == "operator":
        if not operators:
            return None
        at = rng.choice(operators)
        op = rng.choice([o for o in "+-*/" if o != equation[at]])
        return equation[:at] + op + equation[at + 1 :]
    if not numbers:
        return None
    start, end = rng.choice(numbers)
    old = int(equation[start:end])
    if kind == "duplicate number":
        others = sorted({n for n in nums if n != old})
        if not others:
            return None
        new = rng.choice(others)
    else:
        outside = [n for n in (old - 2, old - 1, old + 1, old + 2, old + 10) if n >= 0 and n not in nums]
        if not outside:
            return None
        new = rng.choice(outside)
    return equation[:start] + str(new) + equation[end:]
