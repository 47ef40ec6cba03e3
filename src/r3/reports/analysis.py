"""What the reflections of an evaluation did: pure functions over `samples.jsonl` rows (`r3 eval`).

Each row is one example's `Episode` (`r3.evaluation.records.read_samples`); what is read here is its
first attempt and round 1, the paper's second try (`Episode.first_round`: None when the first try
succeeded; its `reflection` is None under `resample`).

- Failure reasons are grouped into categories by `reason_category`: numbers become `N` and quoted
  text becomes `'…'`, so "number 7 used twice" and "number 3 used twice" are one category, whatever
  the task.
- A reflection "contains an answer" (`contains_answer`) when the evaluated task reads one in it
  (`Task.answer_text`: Countdown's `<answer>` tag, function calling's tool-call JSON). The reflection
  was asked for advice, not for the answer itself. The task is built from `results.json` as `r3 eval`
  built it (`evaluated_task`); where it cannot be built here, that count is left out.
- A retry "repeats the failed attempt" (`repeats_attempt`) when both texts are equal once runs of
  whitespace are collapsed.
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

Row = Episode

#: Categories shown in the fix-rate table; the rest are summed up as `OTHER`.
TOP_REASONS = 8
OTHER = "other"
NO_REASON = "(no reason given)"

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_NUMBER = re.compile(r"-?\d+(?:[./]\d+)*")
_MAX_CATEGORY_CHARS = 80


def reason_category(reason: str | None) -> str:
    """A failure reason with its specifics removed: quoted text -> `'…'`, numbers -> `N`.

    "evaluates to 12, not 30" -> "evaluates to N, not N"; "missing argument 'city' in call 1" ->
    "missing argument '…' in call N". Long reasons are cut at 80 characters."""
    if not reason or not reason.strip():
        return NO_REASON
    text = _QUOTED.sub("'…'", " ".join(reason.split()))
    text = _NUMBER.sub("N", text)
    return text if len(text) <= _MAX_CATEGORY_CHARS else text[: _MAX_CATEGORY_CHARS - 3] + "..."


def retried(rows: Iterable[Row]) -> list[tuple[Row, Round]]:
    """Rows whose first attempt failed and that have a verified retry, each with its round 1."""
    return [(r, r.first_round) for r in rows if not r.first_try_ok and r.first_round is not None]


def fix_rates_by_reason(
    runs: Sequence[Sequence[Row]], top: int = TOP_REASONS
) -> list[tuple[str, list[tuple[int, int]]]]:
    """For each category of the first attempt's failure reason: (fixed, retried) per run.

    Categories are ordered by how many retries all runs made for them; the `top` most frequent are
    kept and the rest are summed up in a last `other` row (only when there is a rest)."""
    counts: list[dict[str, list[int]]] = []
    total: Counter[str] = Counter()
    for rows in runs:
        per: dict[str, list[int]] = {}
        for row, first in retried(rows):
            category = reason_category(row.attempt_verdict.reason)
            cell = per.setdefault(category, [0, 0])
            cell[0] += first.retry_verdict.ok
            cell[1] += 1
            total[category] += 1
        counts.append(per)
    ordered = [c for c, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))]
    kept, rest = ordered[:top], ordered[top:]
    table = [(c, [tuple(per.get(c, (0, 0))) for per in counts]) for c in kept]
    if rest:
        others = [
            (sum(per.get(c, (0, 0))[0] for c in rest), sum(per.get(c, (0, 0))[1] for c in rest))
            for per in counts
        ]
        table.append((OTHER, others))
    return table  # type: ignore[return-value]


def reflection_lengths(rows: Iterable[Row]) -> list[int]:
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
    return {
        "n": len(ordered),
        "mean": sum(ordered) / len(ordered),
        "min": ordered[0],
        "p25": _quantile(ordered, 0.25),
        "median": _quantile(ordered, 0.5),
        "p75": _quantile(ordered, 0.75),
        "p90": _quantile(ordered, 0.9),
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


def repeats_attempt(row: Row) -> bool:
    """Whether the retry is the failed attempt again (equal once whitespace runs are collapsed)."""
    if row.first_round is None:
        return False
    return _squash(row.attempt.text) == _squash(row.first_round.retry.text)


def reflection_behaviour(rows: Iterable[Row], task: Task | None) -> dict[str, int | None]:
    """Counts: reflections written and how many contain an answer of `task` (None without a task);
    retries of failed attempts, how many were fixed and how many repeat the failed attempt."""
    rows = list(rows)
    reflections = [reflection_text(r) for r in rows]
    written = [t for t in reflections if t is not None]
    tries = retried(rows)
    return {
        "reflections": len(written),
        "with_answer": None if task is None else sum(contains_answer(task, t) for t in written),
        "retries": len(tries),
        "fixed": sum(first.retry_verdict.ok for _, first in tries),
        "repeats": sum(repeats_attempt(r) for r, _ in tries),
    }


def reflection_text(row: Row) -> str | None:
    """Round 1's reflection, None when none was written."""
    first = row.first_round
    return None if first is None or first.reflection is None else first.reflection.text


def key(row: Row) -> ProblemKey:
    """The row's problem, as compared runs pair it (`r3.reports.problems.problem_key`)."""
    return problem_key(row.index, row.example)


def fixed_only_by(candidate: Iterable[Row], baseline: Iterable[Row]) -> list[int]:
    """Indices of the examples that `candidate`'s retry fixed (first try failed, second try right)
    and `baseline` did not solve on either try, among the problems both runs hold (the same problem
    at the same index: rows of other problems are never paired)."""
    base = {key(r): r for r in baseline}
    out = []
    for row in candidate:
        other = base.get(key(row))
        if other is None:
            continue
        if not row.first_try_ok and row.second_try_ok and not other.second_try_ok:
            out.append(row.index)
    return sorted(out)
