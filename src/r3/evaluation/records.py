"""What `r3 eval` hands to later stages, typed: a `samples.jsonl` row (`SampleRow`) and `results.json`
(`EvalResults`).

Why a module of its own, beside `evaluate.py` and not in it: the report (`r3.reports`) reads these files
long after, and possibly from older versions of r3. It needs their shape, not the sampling code, so the
shape lives here, once: `to_json` writes exactly what eval has always written (key for key, so resumed
logs stay byte-identical), and `from_json` reads it back, filling in the fields that older files lack
with what they meant (a results.json from before `--second-try` was a reflect run, one from before
`--rounds` had one round). A field a file must have and lacks is one `R3Error` naming the file, line
and field, not a `KeyError` in the middle of a report. (`r3 mine`'s row, `FailureRecord`, is in
`r3.mining.records`, with the reader `r3 train` uses.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r3.errors import R3Error
from r3.evaluation.stats import accuracy as accuracy_block
from r3.rundir import log_lines

Messages = list[dict[str, Any]]


def _need(row: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    """`row[key]`, which must be there and of `kinds` (None allowed only when `kinds` has NoneType)."""
    if key not in row:
        raise R3Error(f"{where}: no field '{key}' (is this a file written by `r3 eval`?)")
    return _typed(row, key, kinds, where)


def _may(
    row: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str, default: Any = None
) -> Any:
    """`row[key]` if the file has it (of `kinds`), `default` otherwise: a field older files lack."""
    return _typed(row, key, kinds, where) if key in row else default


def _typed(row: Mapping[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    value = row[key]
    wanted = kinds if isinstance(kinds, tuple) else (kinds,)
    # A bool is an int to Python; a count or a number that is true or false is a damaged file.
    ok = isinstance(value, wanted) and not (isinstance(value, bool) and bool not in wanted)
    if not ok and float in wanted and isinstance(value, int) and not isinstance(value, bool):
        ok = True  # JSON writes 1.0 as 1 in some tools
    if not ok:
        names = " or ".join("null" if k is type(None) else k.__name__ for k in wanted)
        raise R3Error(f"{where}: field '{key}' should be {names} (got {json.dumps(value)[:60]})")
    return value


NONE = type(None)


@dataclass(frozen=True)
class RoundRow:
    """One reflect-and-retry round of a sample row as written: round 1's fields sit in the row itself,
    rounds 2..K in its `rounds` list, each with its number."""

    reflection_prompt: Messages | None
    reflection: str | None
    reflection_tokens: int | None
    retry_prompt: Messages | None
    retry: str | None
    retry_ok: bool | None
    retry_reason: str | None
    #: The round's number (1 for the fields in the row itself).
    number: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "reflection_prompt": self.reflection_prompt,
            "reflection": self.reflection,
            "reflection_tokens": self.reflection_tokens,
            "retry_prompt": self.retry_prompt,
            "retry": self.retry,
            "retry_ok": self.retry_ok,
            "retry_reason": self.retry_reason,
        }

    @classmethod
    def from_json(cls, row: Mapping[str, Any], where: str, number: int = 1) -> RoundRow:
        """Round fields of `row`; the prompts are optional (rows written before they were kept)."""
        return cls(
            reflection_prompt=_may(row, "reflection_prompt", (list, NONE), where),
            reflection=_need(row, "reflection", (str, NONE), where),
            reflection_tokens=_need(row, "reflection_tokens", (int, NONE), where),
            retry_prompt=_may(row, "retry_prompt", (list, NONE), where),
            retry=_need(row, "retry", (str, NONE), where),
            retry_ok=_need(row, "retry_ok", (bool, NONE), where),
            retry_reason=_need(row, "retry_reason", (str, NONE), where),
            number=number,
        )


NO_ROUND = RoundRow(None, None, None, None, None, None, None)


@dataclass(frozen=True)
class SampleRow:
    """One example of an evaluation, as `samples.jsonl` holds it (`evaluate.sample_row` builds it).

    `first_round` is round 1, the paper's second try (every field None when the first attempt
    succeeded). `later_rounds` is None for a run of one round (its rows have no `rounds`,
    `solved_round`, `stopped`), else rounds 2..K as run, `solved_round` (0: the first attempt, k: round
    k's retry, None: unsolved) and `stopped` (why the episode ended early, or None)."""

    index: int
    example: dict[str, Any]
    prompt: Messages
    attempt: str
    attempt_ok: bool
    attempt_reason: str
    attempt_tokens: int
    first_round: RoundRow
    first_try_ok: bool
    second_try_ok: bool
    later_rounds: list[RoundRow] | None = None
    solved_round: int | None = None
    stopped: str | None = None

    # The round-1 fields under the names the file gives them, for the report's readers.
    @property
    def reflection(self) -> str | None:
        return self.first_round.reflection

    @property
    def reflection_tokens(self) -> int | None:
        return self.first_round.reflection_tokens

    @property
    def retry(self) -> str | None:
        return self.first_round.retry

    @property
    def retry_ok(self) -> bool | None:
        return self.first_round.retry_ok

    @property
    def retry_reason(self) -> str | None:
        return self.first_round.retry_reason

    @property
    def solved_at(self) -> int | None:
        """The round that solved the example (0: the first attempt), rows with or without `rounds`."""
        if self.later_rounds is not None:
            return self.solved_round
        if self.first_try_ok:
            return 0
        return 1 if self.second_try_ok else None

    def to_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {
            "index": self.index,
            "example": self.example,
            "prompt": self.prompt,
            "attempt": self.attempt,
            "attempt_ok": self.attempt_ok,
            "attempt_reason": self.attempt_reason,
            "attempt_tokens": self.attempt_tokens,
            **self.first_round.to_json(),
            "first_try_ok": self.first_try_ok,
            "second_try_ok": self.second_try_ok,
        }
        if self.later_rounds is not None:
            row["rounds"] = [{"round": r.number, **r.to_json()} for r in self.later_rounds]
            row["solved_round"] = self.solved_round
            row["stopped"] = self.stopped
        return row

    @classmethod
    def from_json(cls, row: Any, where: str) -> SampleRow:
        """A row of `samples.jsonl`; `where` names the file and line in errors."""
        if not isinstance(row, dict):
            raise R3Error(f"{where}: expected an object")
        later = None
        if row.get("rounds") is not None:
            raw = _need(row, "rounds", list, where)
            later = []
            for k, entry in enumerate(raw):
                at = f"{where}, rounds[{k}]"
                if not isinstance(entry, dict):
                    raise R3Error(f"{at}: expected an object")
                later.append(RoundRow.from_json(entry, at, _need(entry, "round", int, at)))
        return cls(
            index=_need(row, "index", int, where),
            example=_need(row, "example", dict, where),
            prompt=_need(row, "prompt", list, where),
            attempt=_need(row, "attempt", str, where),
            attempt_ok=_need(row, "attempt_ok", bool, where),
            attempt_reason=_need(row, "attempt_reason", str, where),
            attempt_tokens=_need(row, "attempt_tokens", int, where),
            first_round=RoundRow.from_json(row, where),
            first_try_ok=_need(row, "first_try_ok", bool, where),
            second_try_ok=_need(row, "second_try_ok", bool, where),
            later_rounds=later,
            solved_round=_may(row, "solved_round", (int, NONE), where),
            stopped=_may(row, "stopped", (str, NONE), where),
        )


def read_samples(path: Path) -> list[SampleRow]:
    """The rows of a `samples.jsonl` (the run folders' reader: a torn last line is left out)."""
    return [SampleRow.from_json(row, f"{path}, line {n}") for n, row in log_lines(path)]


@dataclass(frozen=True)
class Accuracy:
    """Examples solved of `n`, with the 95% Wilson interval: a block of results.json."""

    correct: int
    accuracy: float
    ci95: tuple[float, float]

    @classmethod
    def of(cls, correct: int, n: int) -> Accuracy:
        """`correct` of `n` with its interval (`stats.accuracy`)."""
        return cls.from_json(accuracy_block(correct, n), "accuracy")

    def to_json(self) -> dict[str, Any]:
        return {"correct": self.correct, "accuracy": self.accuracy, "ci95": list(self.ci95)}

    @classmethod
    def from_json(cls, block: Any, where: str) -> Accuracy:
        if not isinstance(block, dict):
            raise R3Error(f"{where}: expected {{correct, accuracy, ci95}} (got {json.dumps(block)[:60]})")
        ci95 = _need(block, "ci95", list, where)
        if len(ci95) != 2 or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in ci95):
            raise R3Error(f"{where}: field 'ci95' should be [low, high] (got {json.dumps(ci95)[:60]})")
        return cls(
            correct=_need(block, "correct", int, where),
            accuracy=float(_need(block, "accuracy", float, where)),
            ci95=(float(ci95[0]), float(ci95[1])),
        )


@dataclass(frozen=True)
class EvalResults:
    """`results.json`: one evaluation's accuracies and how they were obtained (`evaluate.summarise`).

    `rounds[k - 1]` is the accuracy up to round k; a file from before `--rounds` reads as one round
    (its second try), one from before `--second-try` as the `reflect` protocol."""

    task: str
    model: str
    n: int
    first_try: Accuracy
    second_try: Accuracy
    second_try_protocol: str
    rounds: list[Accuracy]
    second_try_note: str | None
    retries: int
    retry_fixed: int
    reflection_tokens_mean: float | None
    first_try_failure_reasons: dict[str, int]
    config: dict[str, Any]
    versions: dict[str, Any] = field(default_factory=dict)
    git: Any = None
    wall_seconds_this_run: float | None = None
    #: A server's token counts for this invocation's requests (`--backend openai`), else None.
    usage_this_run: dict[str, Any] | None = None

    def by_round(self) -> list[tuple[int, Accuracy]]:
        """Accuracy after round 0 (the first try), 1, ..., K."""
        return [(0, self.first_try), *((k, block) for k, block in enumerate(self.rounds, start=1))]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task": self.task,
            "model": self.model,
            "n": self.n,
            "first_try": self.first_try.to_json(),
            "second_try": self.second_try.to_json(),
            "second_try_protocol": self.second_try_protocol,
            "rounds": [{"round": k, **block.to_json()} for k, block in enumerate(self.rounds, start=1)],
            "second_try_note": self.second_try_note,
            "retries": self.retries,
            "retry_fixed": self.retry_fixed,
            "reflection_tokens_mean": self.reflection_tokens_mean,
            "first_try_failure_reasons": self.first_try_failure_reasons,
            "config": self.config,
            "versions": self.versions,
            "git": self.git,
        }
        if self.wall_seconds_this_run is not None:
            out["wall_seconds_this_run"] = self.wall_seconds_this_run
        if self.usage_this_run:
            out["usage_this_run"] = self.usage_this_run
        return out

    @classmethod
    def from_json(cls, payload: Any, where: str) -> EvalResults:
        """`results.json` of any version of `r3 eval`; `where` names the file in errors."""
        if not isinstance(payload, dict):
            raise R3Error(f"{where}: not a JSON object (is this an `r3 eval` results.json?)")
        config = _may(payload, "config", dict, where, {})
        first = Accuracy.from_json(_need(payload, "first_try", dict, where), f"{where}, first_try")
        second = Accuracy.from_json(_need(payload, "second_try", dict, where), f"{where}, second_try")
        raw_rounds = _may(payload, "rounds", list, where) or [{"round": 1, **second.to_json()}]
        rounds = [Accuracy.from_json(r, f"{where}, rounds[{k}]") for k, r in enumerate(raw_rounds)]
        protocol = _may(payload, "second_try_protocol", (str, NONE), where) or config.get("second_try")
        return cls(
            task=_need(payload, "task", str, where),
            model=_need(payload, "model", str, where),
            n=_need(payload, "n", int, where),
            first_try=first,
            second_try=second,
            second_try_protocol=str(protocol or "reflect"),
            rounds=rounds,
            second_try_note=_may(payload, "second_try_note", (str, NONE), where),
            retries=_may(payload, "retries", int, where, 0),
            retry_fixed=_may(payload, "retry_fixed", int, where, 0),
            reflection_tokens_mean=_may(payload, "reflection_tokens_mean", (float, NONE), where),
            first_try_failure_reasons=_may(payload, "first_try_failure_reasons", dict, where, {}),
            config=config,
            versions=_may(payload, "versions", dict, where, {}),
            git=payload.get("git"),
            wall_seconds_this_run=_may(payload, "wall_seconds_this_run", (float, NONE), where),
            usage_this_run=_may(payload, "usage_this_run", (dict, NONE), where),
        )


def read_results(path: Path) -> EvalResults:
    """A `results.json`, typed; one `R3Error` naming the file when it is unreadable or lacks a field."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise R3Error(f"{path}: cannot read it as JSON ({exc})") from None
    return EvalResults.from_json(payload, str(path))
