"""The failures file, the contract between `r3 mine` and `r3 train`: a format number on every row, rows
of an older format refused in one line that says to mine again, and a torn last line read by training
as the run folders' logs are."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

from r3.errors import DataError, R3Error
from r3.mining.mine import MineConfig, mine
from r3.mining.records import FAILURES_FORMAT, FORMAT_KEY, FailedAttempt, FailureRecord, read_failures
from r3.rundir import read_log
from r3.tasks import get_task
from test_mining_fakes import CoinTask, coin_generator

COUNTDOWN = get_task("countdown")


def countdown_rows(count: int) -> list[dict]:
    examples = [{"nums": [1, 2, 3], "target": 7 + i} for i in range(count)]
    return [
        FailureRecord("countdown", i, example, [FailedAttempt.of(example, "x", "r")], 8, 1).to_json(COUNTDOWN)
        for i, example in enumerate(examples)
    ]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def test_every_mined_row_carries_the_format_and_older_rows_are_refused(tmp_path: Path) -> None:
    task = CoinTask()
    mine(task, task.load(None, limit=20, seed=1), coin_generator(), tmp_path / "m", MineConfig(budget=4))
    path = tmp_path / "m" / "failures.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and all(row[FORMAT_KEY] == FAILURES_FORMAT for row in rows)
    import datasets

    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded[FORMAT_KEY] == [FAILURES_FORMAT] * len(rows)
    # Rows of an older format: without the number (format 1), null as `datasets` writes it back, or 2
    # (failed attempts as {completion, reason, rounds}): one line that says to mine again.
    older = [{"completion": a["attempt"], "reason": a["attempt_reason"]} for a in rows[0]["failed_attempts"]]
    for value, named in ((None, 1), (2, 2)):
        old = tmp_path / f"old{value}.jsonl"
        old.write_text(jsonl([{**row, "failed_attempts": older, FORMAT_KEY: value} for row in rows]))
        with pytest.raises(DataError) as info:
            read_failures(old, task)
        assert str(info.value) == (
            f"{old}, row 1, field '{FORMAT_KEY}': format {named} was written by an older r3; "
            "mine it again (`r3 mine --overwrite`)"
        )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            FAILURES_FORMAT + 1,
            f"format {FAILURES_FORMAT + 1} was written by a newer r3; "
            f"this one reads format {FAILURES_FORMAT}",
        ),
        ("2", "expected a format number (got '2')"),
        (0, "expected a format number (got 0)"),
    ],
)
def test_a_format_this_r3_does_not_know_is_one_line(tmp_path: Path, value: object, problem: str) -> None:
    rows = countdown_rows(2)
    rows[1][FORMAT_KEY] = value
    path = tmp_path / "failures.jsonl"
    path.write_text(jsonl(rows))
    with pytest.raises(DataError) as info:
        read_failures(path, COUNTDOWN)
    assert str(info.value) == f"{path}, row 2, field '{FORMAT_KEY}': {problem}"


def test_the_format_field_is_reserved_before_mining() -> None:
    from r3.mining.records import check_reserved_fields

    with pytest.raises(DataError, match=f"row 1, field '{FORMAT_KEY}'"):
        check_reserved_fields([{"nums": [1], "target": 1, FORMAT_KEY: "x"}], "rows.jsonl")


def test_training_reads_a_torn_last_line_as_the_logs_do(tmp_path: Path) -> None:
    """`r3 mine` killed mid-write leaves a last line without its end. Training leaves it out, with a
    warning (every line before it is a whole query; the torn one is mined again by a resumed
    `r3 mine`), exactly as the logs' reader does, and never changes the file."""
    from r3.training.config import R3Config
    from r3.training.trainer import load_records

    rows = countdown_rows(4)
    whole = jsonl(rows[:3])
    torn = whole + json.dumps(rows[3])[:40]
    path = tmp_path / "failures.jsonl"
    path.write_text(torn)
    config = R3Config(output_dir=str(tmp_path / "o"), use_cpu=True, failures=str(path))
    with pytest.warns(
        UserWarning, match=r"failures.jsonl: the last line is incomplete \(`r3 mine` was stopped"
    ):
        records = load_records(config, COUNTDOWN)
    assert [r.query_index for r in records] == [0, 1, 2]
    assert [row["query_index"] for row in read_log(path)] == [0, 1, 2]  # the logs' reader: the same
    assert path.read_text() == torn  # read only
    # A whole file: the same records, and no warning.
    path.write_text(whole)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_records(config, COUNTDOWN) == records


def test_a_damaged_line_before_good_ones_is_refused_in_one_line(tmp_path: Path) -> None:
    rows = countdown_rows(3)
    path = tmp_path / "failures.jsonl"
    path.write_text(jsonl(rows).replace(json.dumps(rows[1]), '{"nums": [1, 2', 1))
    with pytest.raises(R3Error) as info:
        read_failures(path, COUNTDOWN)
    assert str(info.value) == (
        f"{path}: line 2 is not a JSON object but later lines are; the file was changed by hand or "
        "corrupted. Fix it, or mine it again (`r3 mine --overwrite`)"
    )


def test_a_wrong_count_is_named(tmp_path: Path) -> None:
    rows = countdown_rows(1)
    rows[0]["successes"] = "1"
    path = tmp_path / "failures.jsonl"
    path.write_text(jsonl(rows))
    with pytest.raises(DataError, match=r"row 1, field 'successes': expected a whole number \(got '1'\)"):
        read_failures(path, COUNTDOWN)
