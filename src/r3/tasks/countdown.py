"""The Countdown task (TinyZero, `Jiayi-Pan/Countdown-Tasks-3to4`): reach a target with + - * /.

A row is `{"nums": [int, ...], "target": int}`; the model writes an equation in `<answer> </answer>`
tags using every number exactly once. With no data, rows come from `generate_countdown`, so R3 runs
end to end with no download. The verifier parses with `r3.tasks.countdown_expr`, never `eval`.
"""

from __future__ import annotations

import numbers
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from r3.errors import DataError, R3Error
from r3.tasks.base import Example, Prompt, Task, Verdict, load_rows
from r3.tasks.countdown_expr import MAX_LITERAL_DIGITS, ExpressionError, format_value, parse_answer
from r3.tasks.countdown_solver import Tree, render, solve

#: Most numbers a row may have. TinyZero uses 3 or 4; the cap keeps answers within the parser's limits.
MAX_NUMS = 20
#: Largest target: far above anything reachable with the operand limits, small enough to print.
MAX_TARGET_BITS = 1024
DEFAULT_NUM_EXAMPLES = 100
OPEN_TAG, CLOSE_TAG = "<answer>", "</answer>"

SYSTEM_PROMPT = (
    "You are a helpful assistant. You think about the problem briefly, then give the user the answer."
)
USER_TEMPLATE = (
    "Using the numbers {nums}, create an equation that equals {target}. Use each number exactly once, "
    "and only the operations +, -, *, / and parentheses. Show your reasoning briefly, then give the "
    "final equation in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)
RETRY_INSTRUCTION = "Now try again. Use your reflection and give a new equation in <answer> </answer> tags."


def extract_answer(completion: str) -> str | None:
    """The text inside the last closed `<answer>...</answer>`, or None: models often draft an answer,
    then correct it. Searched from the right, so unclosed tags cost one linear scan."""
    close = completion.rfind(CLOSE_TAG)
    if close < 0:
        return None
    open_ = completion.rfind(OPEN_TAG, 0, close)
    if open_ < 0:
        return None
    return completion[open_ + len(OPEN_TAG) : close]


def check_equation(nums: list[int], target: int, answer: str) -> Verdict:
    """Check the text of an answer against the numbers and target; never raises for any str. The
    numbers used are checked before the arithmetic, so inputs with many literals never reach it."""
    try:
        expression, claim = parse_answer(answer)
        if claim is not None and claim != target:
            said = str(claim) if len(str(claim)) <= 24 else f"{str(claim)[:12]}... ({len(str(claim))} digits)"
            return Verdict.failure(f"equation says = {said}, but the target is {target}")
        if problem := _numbers_problem(nums, expression.numbers):
            return Verdict.failure(problem)
        value = expression.evaluate()
    except ExpressionError as exc:
        return Verdict.failure(str(exc))
    if value != target:
        return Verdict.failure(f"evaluates to {format_value(value)}, not {target}")
    return Verdict.success()


def _times(count: int) -> str:
    return {1: "once", 2: "twice"}.get(count, f"{count} times")


def _numbers_problem(given: list[int], used: tuple[int, ...]) -> str:
    """A reason when `used` is not exactly the multiset `given`, else "": a number used too often, in
    the answer's order, else one used too rarely, in the list's order."""
    have, want = Counter(used), Counter(given)
    number = next((n for n in dict.fromkeys(used) if have[n] > want[n]), None)
    if number is None:
        number = next((n for n in dict.fromkeys(given) if have[n] < want[n]), None)
    if number is None:
        return ""
    used_times, listed = have[number], want[number]
    if listed == 0:
        return f"number {number} not in the list"
    if used_times == 0:
        return f"number {number} not used"
    if used_times > listed and listed == 1:
        return f"number {number} used {_times(used_times)}"
    return f"number {number} used {_times(used_times)}, but the list has it {_times(listed)}"


def _is_int(value: Any) -> bool:
    # numbers.Integral accepts numpy integers from Parquet; a bool is never a Countdown number.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _not_int(value: Any) -> str:
    """How a value that is not an integer reads in an error ("'2' (str)"); "" for an integer."""
    if _is_int(value):
        return ""
    return f"{_describe(value)} ({'a bool' if isinstance(value, bool) else type(value).__name__})"


def _describe(value: Any) -> str:
    """A short repr for error messages (repr can fail, e.g. for an int over 4,300 digits)."""
    try:
        text = repr(value)
    except Exception:
        return f"a {type(value).__name__}"
    return (text[:40] + "...") if len(text) > 40 else text


def normalize_row(row: Any, index: int | None = None, source: str = "<example>") -> Example:
    """A copy of the row with `nums` as a list of int and `target` as int, extra fields kept; a
    `DataError` naming the source, row and field otherwise."""
    if not isinstance(row, dict):
        raise DataError(source, index, None, f"expected an object, got {type(row).__name__}")
    for field in ("nums", "target"):
        if field not in row:
            raise DataError(source, index, field, "missing")
    nums = row["nums"]
    if not isinstance(nums, list | tuple) and hasattr(nums, "tolist"):
        nums = nums.tolist()  # a numpy array from a Parquet or pandas source
    if not isinstance(nums, list | tuple):
        raise DataError(source, index, "nums", f"expected a list of integers, got {type(nums).__name__}")
    if not nums:
        raise DataError(source, index, "nums", "is empty")
    if len(nums) > MAX_NUMS:
        raise DataError(source, index, "nums", f"has {len(nums)} numbers (at most {MAX_NUMS})")
    clean: list[int] = []
    for position, value in enumerate(nums, start=1):
        if problem := _not_int(value):
            raise DataError(source, index, "nums", f"item {position} is {problem}, expected an integer")
        number = int(value)
        if number < 0:
            raise DataError(source, index, "nums", f"item {position} is {number}; numbers must be 0 or more")
        if number >= 10**MAX_LITERAL_DIGITS:
            raise DataError(
                source, index, "nums", f"item {position} has more than {MAX_LITERAL_DIGITS} digits"
            )
        clean.append(number)
    target = row["target"]
    if problem := _not_int(target):
        raise DataError(source, index, "target", f"is {problem}, expected an integer")
    if int(target).bit_length() > MAX_TARGET_BITS:
        raise DataError(source, index, "target", f"is too large (more than {MAX_TARGET_BITS} bits)")
    out = dict(row)
    out["nums"], out["target"] = clean, int(target)
    return out


@dataclass(frozen=True)
class GeneratorConfig:
    """Ranges for `generate_countdown`. Checked on creation so a bad option fails at once."""

    min_nums: int = 3
    max_nums: int = 4
    min_number: int = 1
    max_number: int = 99
    min_target: int = 1
    max_target: int = 100

    def __post_init__(self) -> None:
        for key, value in vars(self).items():
            if not _is_int(value):
                raise R3Error(f"countdown: {key} must be an integer, got {_describe(value)}")
        for name, most in (("nums", MAX_NUMS), ("number", 10**MAX_LITERAL_DIGITS - 1), ("target", None)):
            low, high = getattr(self, f"min_{name}"), getattr(self, f"max_{name}")
            if not 1 <= low <= high or (most is not None and high > most):
                bound = "" if most is None else f" <= {most}"
                raise R3Error(f"countdown: need 1 <= min_{name} <= max_{name}{bound}, got {low} and {high}")


#: Tries per example before giving up (only reachable with a target range the numbers cannot hit).
MAX_TRIES = 10_000


def generate_countdown(
    n: int, seed: int = 0, config: GeneratorConfig | None = None, **ranges: int
) -> list[Example]:
    """`n` solvable rows `{"nums", "target", "solution"}`, deterministic in `seed` (a prefix of any larger
    `n`), TinyZero style: random numbers joined two at a time by random operators through positive
    integers, kept when the result is in range (`solution`). `ranges`: `GeneratorConfig`."""
    if config is None:
        config = GeneratorConfig(**ranges)
    elif ranges:
        raise TypeError("give either config or keyword ranges, not both")
    if not _is_int(n) or n < 0:
        raise R3Error(f"countdown: number of examples must be an integer >= 0, got {_describe(n)}")
    rng = random.Random(seed)
    return [_generate_one(rng, config) for _ in range(n)]


def _generate_one(rng: random.Random, config: GeneratorConfig) -> Example:
    for _ in range(MAX_TRIES):
        count = rng.randint(config.min_nums, config.max_nums)
        nums = [rng.randint(config.min_number, config.max_number) for _ in range(count)]
        value, tree = _random_equation(rng, nums)
        if config.min_target <= value <= config.max_target:
            return {"nums": nums, "target": value, "solution": render(tree)}
    raise R3Error(
        f"countdown: could not generate a target in {config.min_target}..{config.max_target} "
        f"from {config.min_nums}-{config.max_nums} numbers in "
        f"{config.min_number}..{config.max_number}; widen the ranges"
    )


def _random_equation(rng: random.Random, nums: list[int]) -> tuple[int, Tree]:
    pool: list[tuple[int, Tree]] = [(number, number) for number in nums]
    while len(pool) > 1:
        a = pool.pop(rng.randrange(len(pool)))
        b = pool.pop(rng.randrange(len(pool)))
        big, small = (a, b) if a[0] >= b[0] else (b, a)  # - and / put the larger value first
        choices = [("+", a, b), ("*", a, b)]
        if big[0] != small[0]:
            choices.append(("-", big, small))
        if big[0] % small[0] == 0:
            choices.append(("/", big, small))
        op, (x, left), (y, right) = rng.choice(choices)
        value = {"+": x + y, "-": x - y, "*": x * y, "/": x // y}[op]
        pool.append((value, (op, left, right)))
    return pool[0]


class CountdownTask(Task):
    """Countdown: rows from `data`, or `num_examples` generated rows when no data is given. Options: also
    the ranges of `GeneratorConfig`, and `system_prompt` (None: no system message)."""

    name = "countdown"
    stop = (CLOSE_TAG,)
    retry_instruction = RETRY_INSTRUCTION

    def __init__(
        self,
        num_examples: int = DEFAULT_NUM_EXAMPLES,
        *,
        system_prompt: str | None = SYSTEM_PROMPT,
        **ranges: int,
    ) -> None:
        if not _is_int(num_examples) or num_examples < 1:
            raise R3Error(f"countdown: num_examples must be an integer >= 1, got {_describe(num_examples)}")
        self.num_examples = int(num_examples)
        self.config = GeneratorConfig(**ranges)  # TypeError for an unknown option -> R3Error in get_task
        self.system_prompt = system_prompt

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        """Validated rows from `data`, or `limit` (default `num_examples`) rows generated from `seed`."""
        if limit is not None and (not _is_int(limit) or limit < 0):
            raise R3Error(f"limit must be an integer >= 0, got {_describe(limit)}")
        if data is not None:
            return load_rows(self, data, limit)
        return generate_countdown(self.num_examples if limit is None else limit, seed, self.config)

    def validate(self, row: Any, index: int, source: str) -> Example:
        return normalize_row(row, index, source)

    def prompt(self, example: Example) -> Prompt:
        nums = ", ".join(str(number) for number in example["nums"])
        user = {"role": "user", "content": USER_TEMPLATE.format(nums=f"[{nums}]", target=example["target"])}
        if self.system_prompt:
            return Prompt([{"role": "system", "content": self.system_prompt}, user])
        return Prompt([user])

    def reference_answer(self, example: Example) -> str | None:
        """`<answer> EQUATION </answer>` (no made-up reasoning, ending with the stop string): the row's
        `solution` if it verifies, else the solver's; None when there is none."""
        try:
            row = normalize_row(example)
        except DataError:
            return None
        solution = row.get("solution")
        if isinstance(solution, str) and "<" not in solution and ">" not in solution:  # no stray tags
            answer = f"{OPEN_TAG} {' '.join(solution.split())} {CLOSE_TAG}"  # one line
            if self.verify(row, answer).ok:
                return answer
        equation = solve(row["nums"], row["target"])
        return None if equation is None else f"{OPEN_TAG} {equation} {CLOSE_TAG}"

    def answer_text(self, completion: str) -> str | None:
        """The equation inside the last closed `<answer>` tag, as `verify` reads it."""
        return extract_answer(completion)

    def verify(self, example: Example, completion: str) -> Verdict:
        """Check the last `<answer>` of `completion`. Never raises and never executes it."""
        try:
            if not isinstance(completion, str):
                return Verdict.failure(f"completion is not text ({type(completion).__name__})")
            answer = extract_answer(completion)
            if answer is None:
                return Verdict.failure("no <answer> tag")
            row = normalize_row(example)
            return check_equation(row["nums"], row["target"], answer)
        except DataError as exc:
            return Verdict.failure(f"invalid example: {exc.field or 'row'} {exc.problem}")
        except Exception as exc:  # a verifier must answer, whatever happens; this is a bug if reached
            return Verdict.failure(f"verifier error: {type(exc).__name__}")
