"""What `r3 eval` hands to later stages, typed, for the reports to read without the sampling code:
`samples.jsonl`, one `Episode` a line (`read_samples`), and `results.json` (`EvalResults`). A field a
file lacks is one `R3Error` naming the file, line and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from r3.episode import NONE, Episode, json_field
from r3.errors import R3Error
from r3.evaluation.stats import accuracy as accuracy_block
from r3.rundir import log_lines
from r3.tasks.base import Task


def _need(row: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str) -> Any:
    if key not in row:
        raise R3Error(f"{where}: no field '{key}' (is this a file written by `r3 eval`?)")
    return json_field(row, key, kinds, where)


def _may(
    row: dict[str, Any], key: str, kinds: type | tuple[type, ...], where: str, default: Any = None
) -> Any:
    """`row[key]` if the file has it (of `kinds`), `default` otherwise: a field older files lack."""
    return json_field(row, key, kinds, where) if key in row else default


def read_samples(path: Path, task: Task | None = None) -> list[Episode]:
    """The episodes of a `samples.jsonl` (a torn last line left out), checked by `task` when given."""
    return [Episode.from_json(row, f"{path}, line {n}", task) for n, row in log_lines(path)]


@dataclass(frozen=True)
class Accuracy:
    """Examples solved, with the 95% Wilson interval: a block of results.json."""

    correct: int
    accuracy: float
    ci95: tuple[float, float]

    @classmethod
    def of(cls, correct: int, n: int) -> Accuracy:
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
    """`results.json`: one evaluation's accuracies and how they were obtained. `rounds[k - 1]` is the
    accuracy up to round k; a file without `rounds` reads as one round, one without a protocol as
    `reflect`."""

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
    #: A server's token counts for this invocation's requests (`--backend openai`).
    usage_this_run: dict[str, Any] | None = None

    def by_round(self) -> list[tuple[int, Accuracy]]:
        """Accuracy after round 0 (the first try), 1, ..., K."""
        return [(0, self.first_try), *((k, block) for k, block in enumerate(self.rounds, start=1))]

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(
            first_try=self.first_try.to_json(),
            second_try=self.second_try.to_json(),
            rounds=[{"round": k, **block.to_json()} for k, block in enumerate(self.rounds, start=1)],
        )
        if self.wall_seconds_this_run is None:
            del out["wall_seconds_this_run"]
        if not self.usage_this_run:
            del out["usage_this_run"]
        return out

    @classmethod
    def from_json(cls, payload: Any, where: str) -> EvalResults:
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
    """A `results.json`, typed; one `R3Error` naming the file when it is unreadable."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise R3Error(f"{path}: cannot read it as JSON ({exc})") from None
    return EvalResults.from_json(payload, str(path))
