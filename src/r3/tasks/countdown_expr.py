"""A bounded parser and exact evaluator for Countdown equations, `expression [= integer]`: integers,
+ - * / (also unary + and -: "-3" uses the number 3) and parentheses, with the usual precedence.

Model output is never run as code: the shunting-yard parser does not recurse, `Fraction` arithmetic is
exact (`7 / 2 * 2` is 7), and every limit is checked before the step it protects (linear work).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from fractions import Fraction

#: Longest expression text accepted (real answers are a few dozen characters).
MAX_EXPRESSION_CHARS = 1000
#: Longest integer literal (Countdown numbers have 2-3 digits).
MAX_LITERAL_DIGITS = 6
#: Longest number accepted after `=` (Python refuses to parse ints over 4,300 digits).
MAX_CLAIM_DIGITS = 400
#: Deepest parenthesis nesting accepted.
MAX_DEPTH = 64
#: Largest numerator or denominator (in bits) of any intermediate value.
MAX_VALUE_BITS = 1024

_WHITESPACE = frozenset(" \t\r\n")
_DIGITS = frozenset("0123456789")
_BINARY_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_NEG_PRECEDENCE = 3  # unary minus binds tighter than * and /, as in Python
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
#: Friendlier reasons for characters models often use instead of the allowed ones.
_CHAR_HINTS = {
    **dict.fromkeys("×·", "use * for multiplication"),
    "÷": "use / for division",
    **dict.fromkeys("−–", "use the ASCII '-'"),
    "^": "powers are not allowed",
    "%": "only + - * / are allowed",
    **dict.fromkeys("[]{}", "use ( ) for grouping"),
}


class ExpressionError(ValueError):
    """The text is not a valid Countdown equation. The message is a short, user-facing reason."""


#: A postfix program: ints push themselves, "+", "-", "*", "/" pop two, "neg" pops one.
Program = tuple[int | str, ...]


@dataclass(frozen=True)
class Expression:
    """A parsed expression: the numbers it uses (in order of appearance) and a postfix program."""

    numbers: tuple[int, ...]
    program: Program

    def evaluate(self) -> Fraction:
        """The exact value. Raises `ExpressionError` on division by zero or an oversized value."""
        return evaluate_program(self.program)


def tokenize(text: str) -> list[int | str]:
    """Split `text` into integers and the operators and parentheses (as strings); ExpressionError for
    anything else."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"answer too long (more than {MAX_EXPRESSION_CHARS} characters)")
    tokens: list[int | str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
        elif ch in _DIGITS:
            j = i
            while j < n and text[j] in _DIGITS:
                j += 1
            digits = text[i:j]
            if j + 1 < n and text[j] in ".," and text[j + 1] in _DIGITS:
                raise ExpressionError("decimal numbers are not allowed")
            if len(digits) > MAX_LITERAL_DIGITS:
                shown = digits if len(digits) <= 12 else digits[:12] + "..."
                raise ExpressionError(f"number {shown} is too long (more than {MAX_LITERAL_DIGITS} digits)")
            if len(digits) > 1 and digits[0] == "0":
                # Python itself rejects `07`; a leading zero is ambiguous (octal?), so refuse it.
                raise ExpressionError(f"number {digits} has a leading zero")
            tokens.append(int(digits))
            i = j
        elif ch in "+-*/()":
            if ch in "*/" and i + 1 < n and text[i + 1] == ch:
                raise ExpressionError(f"'{ch}{ch}' is not allowed (only + - * /)")
            tokens.append(ch)
            i += 1
        elif ch == "." and i + 1 < n and text[i + 1] in _DIGITS:
            raise ExpressionError("decimal numbers are not allowed")
        else:
            hint = _CHAR_HINTS.get(ch)
            raise ExpressionError(f"character {ch!r} is not allowed" + (f" ({hint})" if hint else ""))
    return tokens


def parse_expression(text: str) -> Expression:
    """Parse an arithmetic expression (no `=`) into an `Expression`; `ExpressionError` otherwise.
    Shunting-yard with an explicit stack: `MAX_DEPTH` only keeps answers human-sized."""
    tokens = tokenize(text)
    if not tokens:
        raise ExpressionError("empty answer")
    output: list[int | str] = []
    numbers: list[int] = []
    stack: list[str] = []  # "(", "neg" or a binary operator
    depth = 0
    expect_operand = True
    for token in tokens:
        if isinstance(token, int):
            if not expect_operand:
                raise ExpressionError(f"missing operator before {token}")
            output.append(token)
            numbers.append(token)
            expect_operand = False
        elif expect_operand:
            if token == "-":
                stack.append("neg")  # prefix operator: pushed, never pops anything
            elif token == "(":
                depth += 1
                if depth > MAX_DEPTH:
                    raise ExpressionError(f"too deeply nested (more than {MAX_DEPTH} levels of parentheses)")
                stack.append("(")
            elif token == ")":
                raise ExpressionError("empty parentheses" if stack and stack[-1] == "(" else "unexpected ')'")
            elif token != "+":  # unary plus changes nothing
                raise ExpressionError(f"unexpected '{token}'")
        elif token == ")":
            while stack and stack[-1] != "(":
                output.append(stack.pop())
            if not stack:
                raise ExpressionError("unmatched ')'")
            stack.pop()
            depth -= 1
        elif token == "(":
            raise ExpressionError("missing operator before '('")
        else:
            precedence = _BINARY_PRECEDENCE[token]
            while stack and stack[-1] != "(" and _precedence(stack[-1]) >= precedence:
                output.append(stack.pop())
            stack.append(token)
            expect_operand = True
    if expect_operand:
        raise ExpressionError("expression ends with an operator")
    while stack:
        top = stack.pop()
        if top == "(":
            raise ExpressionError("missing ')'")
        output.append(top)
    return Expression(tuple(numbers), tuple(output))


def _precedence(op: str) -> int:
    return _NEG_PRECEDENCE if op == "neg" else _BINARY_PRECEDENCE[op]


def parse_answer(text: str) -> tuple[Expression, int | None]:
    """Parse `expression [= integer]`; return the expression and the claimed result (or None), which
    models often restate (`(1 + 2) * 8 = 24`) and the caller rejects when wrong."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"answer too long (more than {MAX_EXPRESSION_CHARS} characters)")
    if "=" not in text:
        return parse_expression(text), None
    left, _, right = text.partition("=")
    if "=" in right:
        raise ExpressionError("more than one '='")
    claim = right.strip()
    digits = claim[1:] if claim[:1] in ("-", "+") else claim
    if not digits or not all(ch in _DIGITS for ch in digits):
        raise ExpressionError("after '=' only the target number may follow")
    if len(digits) > MAX_CLAIM_DIGITS:
        raise ExpressionError("number after '=' is too long")
    return parse_expression(left), int(claim)


def evaluate_program(program: Program) -> Fraction:
    """Run a postfix program exactly. Raises `ExpressionError` (division by zero, value too large)."""
    stack: list[Fraction] = []
    for item in program:
        if isinstance(item, int):
            stack.append(Fraction(item))
            continue
        if item == "neg":
            if not stack:
                raise ExpressionError("malformed expression")
            stack.append(-stack.pop())
            continue
        if len(stack) < 2:
            raise ExpressionError("malformed expression")
        right = stack.pop()
        left = stack.pop()
        if item not in _APPLY:
            raise ExpressionError(f"unknown operator {item!r}")
        if item == "/" and right == 0:
            raise ExpressionError("division by zero")
        value = _APPLY[item](left, right)
        if value.numerator.bit_length() > MAX_VALUE_BITS or value.denominator.bit_length() > MAX_VALUE_BITS:
            raise ExpressionError("intermediate value too large")
        stack.append(value)
    if len(stack) != 1:
        raise ExpressionError("malformed expression")
    return stack[0]


def evaluate(text: str) -> Fraction:
    """Parse and evaluate an expression in one call (for tools and tests)."""
    return parse_expression(text).evaluate()


def format_value(value: Fraction) -> str:
    """`17/2` for a fraction, `24` for an integer: short enough for a verdict's reason."""
    text = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text)} characters)"
