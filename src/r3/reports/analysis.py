"""What the reflections of an evaluation did: pure functions over `samples.jsonl` rows (`r3 eval`),
reading each row's first attempt and round 1, the paper's second try (`Episode.first_round`). Failure
reasons are grouped into categories (`reason_category`: "number 7 used twice" and "number 3 used twice"
are one); a reflection "contains an answer" though it was asked for advice, not the answer.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from r3.episode import Episode, Round
from r3.errors import R3Error
from r3.evaluation.records import EvalResults
from r3.reports.problems import ProblemKey, problem_key
from r3.tasks.base import Task
from r3.tasks.registry import get_task

#: Categories shown in the fix-rate table; the rest are summed up as `OTHER`.
TOP_REASONS = 8
OTHER = "other"
NO_REASON = "(no reason given)"

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"-?\d+(?:[./]\d+)*")
_MAX_CATEGORY_CHARS = 80


def reason_category(reason: str | None) -> str:
    """A failure reason with quoted text as `'…'` and numbers as `N` ("evaluates to 12, not 30" ->
    "evaluates to N, not N"), cut at 80 characters."""
    if not reason or not reason.strip():
        return NO_REASON
    text = _QUOTED.sub("'…'", _squash(reason))
    text = _NUMBER.sub("N", text)
    return text if len(text) <= _MAX_CATEGORY_CHARS else text[: _MAX_CATEGORY_CHARS - 3] + "..."


def retried(rows: Iterable[Episode]) -> list[tuple[Episode, Round]]:
    """Rows whose first attempt failed and that have a verified retry, each with its round 1."""
    return [(r, r.first_round) for r in rows if not r.first_try_ok and r.first_round is not None]


def fix_rates_by_reason(
    runs: Sequence[Sequence[Episode]], top: int = TOP_REASONS
) -> list[tuple[str, list[tuple[int, int]]]]:
    """For each category of the first attempt's failure reason: (fixed, retried) per run; the `top`
    categories with the most retries, then the rest summed up in an `other` row."""
    tried = [
        [(reason_category(r.attempt_verdict.reason), t.retry_verdict.ok) for r, t in retried(rows)]
        for rows in runs
    ]
    total = Counter(category for pairs in tried for category, _ in pairs)
    ordered = sorted(total, key=lambda category: (-total[category], category))
    groups = [(category, {category}) for category in ordered[:top]]
    if ordered[top:]:
        groups.append((OTHER, set(ordered[top:])))

    def cell(pairs: list[tuple[str, bool]], members: set[str]) -> tuple[int, int]:
        oks = [ok for category, ok in pairs if category in members]
        return sum(oks), len(oks)

    return [(name, [cell(pairs, members) for pairs in tried]) for name, members in groups]


def reflection_lengths(rows: Iterable[Episode]) -> list[int]:
    """Token counts of the reflections that were written."""
    written = [r.first_round.reflection for r in rows if r.first_round is not None]
    return [c.num_tokens for c in written if c is not None and c.num_tokens]


def _quantile(ordered: Sequence[int], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default)."""
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def length_summary(lengths: Sequence[int]) -> dict[str, float] | None:
    """n, mean, min, quartiles, 90th percentile and max of reflection lengths; None when empty."""
    if not lengths:
        return None
    ordered = sorted(lengths)
    points = (("p25", 0.25), ("median", 0.5), ("p75", 0.75), ("p90", 0.9))
    quantiles = {name: _quantile(ordered, q) for name, q in points}
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "min": ordered[0],
        **quantiles,
        "max": ordered[-1],
    }


def evaluated_task(results: EvalResults) -> Task | None:
    """The task an evaluation ran, with its options (`results.json`); None when it cannot be built
    here (a dotted path or a custom verifier that this machine cannot import)."""
    try:
        return get_task(results.task, **results.config.get("task_options", {}))
    except R3Error:
        return None


def contains_answer(task: Task, text: str | None) -> bool:
    """Whether `task` reads an answer in `text` (`Task.answer_text`)."""
    return bool(text) and task.answer_text(text) is not None


def _squash(text: str) -> str:
    return " ".join(text.split())


def repeats_attempt(row: Episode) -> bool:
    """Whether the retry is the failed attempt again (equal once whitespace runs are collapsed)."""
    return row.first_round is not None and _squash(row.attempt.text) == _squash(row.first_round.retry.text)


def reflection_behaviour(rows: Iterable[Episode], task: Task | None) -> dict[str, int | None]:
    """Counts: reflections written and how many contain an answer of `task` (None without a task);
    retries of failed attempts, how many were fixed and how many repeat the failed attempt."""
    rows = list(rows)
    written = [t for t in map(reflection_text, rows) if t is not None]
    tries = retried(rows)
    return {
        "reflections": len(written),
        "with_answer": None if task is None else sum(contains_answer(task, t) for t in written),
        "retries": len(tries),
        "fixed": sum(first.retry_verdict.ok for _, first in tries),
        "repeats": sum(repeats_attempt(r) for r, _ in tries),
    }


def reflection_text(row: Episode) -> str | None:
    """Round 1's reflection, None when none was written."""
    first = row.first_round
    return None if first is None or first.reflection is None else first.reflection.text


def key(row: Episode) -> ProblemKey:
    """The row's problem, as compared runs pair it (`r3.reports.problems.problem_key`)."""
    return problem_key(row.index, row.example)


def fixed_only_by(candidate: Iterable[Episode], baseline: Iterable[Episode]) -> list[int]:
    """Indices of the examples that `candidate`'s retry fixed and `baseline` did not solve on either
    try, among the problems both runs hold (rows of other problems are never paired)."""
    base = {key(r): r for r in baseline}
    fixed = [row for row in candidate if not row.first_try_ok and row.second_try_ok]
    return sorted(row.index for row in fixed if key(row) in base and not base[key(row)].second_try_ok)
