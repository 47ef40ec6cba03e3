"""The output folder's guarantees as a user meets them through `r3 eval` (found by trying, issue 9):
`--overwrite` starts afresh, a changed data file is not resumed into, and what decides the seeds is
part of the fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main

ROWS = [{"nums": [3, 5, 7], "target": t} for t in (11, 13, 17, 19)]


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def eval_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    budgets = ["--max-new-tokens", "4", "--reflection-max-new-tokens", "4", "--device", "cpu"]
    return [
        "eval",
        "--model",
        str(model),
        "--data",
        str(data),
        *budgets,
        "--no-progress",
        "--output-dir",
        str(out),
        *extra,
    ]


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "samples.jsonl").open()]


def test_eval_overwrite_starts_afresh(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    out = tmp_path / "out"
    assert r3_main(eval_argv(tiny_model_dir, data, out, "--limit", "2")) == 0
    # Other settings into the same folder: refused without --overwrite ...
    assert r3_main(eval_argv(tiny_model_dir, data, out, "--limit", "3")) == 2
    assert "holds another run's output" in capsys.readouterr().err
    # ... and with it, the folder holds the new run only.
    assert r3_main(eval_argv(tiny_model_dir, data, out, "--limit", "3", "--overwrite")) == 0
    assert [r["index"] for r in rows_of(out)] == [0, 1, 2]
    assert json.loads((out / "run.json").read_text())["limit"] == 3
    # Same settings and --overwrite: evaluated again from nothing, not resumed.
    (out / "samples.jsonl").write_text(json.dumps({**rows_of(out)[0], "attempt": "stale"}) + "\n")
    assert r3_main(eval_argv(tiny_model_dir, data, out, "--limit", "3", "--overwrite")) == 0
    assert len(rows_of(out)) == 3 and all(r["attempt"] != "stale" for r in rows_of(out))


def test_eval_does_not_resume_into_a_changed_data_file(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_rows(tmp_path / "rows.jsonl", ROWS[:2])
    out = tmp_path / "out"
    assert r3_main(eval_argv(tiny_model_dir, data, out)) == 0
    write_rows(data, ROWS[2:])  # same path, other rows
    assert r3_main(eval_argv(tiny_model_dir, data, out)) == 2
    err = capsys.readouterr().err
    assert "holds another run's output (examples_sha256" in err
    assert [r["example"]["target"] for r in rows_of(out)] == [11, 13]  # nothing appended


def test_sampled_eval_fingerprints_the_batch_size_that_decides_its_seeds(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    out = tmp_path / "out"
    sampled = ["--temperature", "0.7", "--batch-size", "2"]
    assert r3_main(eval_argv(tiny_model_dir, data, out, *sampled)) == 0
    other = ["--temperature", "0.7", "--batch-size", "4"]
    assert r3_main(eval_argv(tiny_model_dir, data, out, *other)) == 2
    assert "chunk_size: 2 -> 4" in capsys.readouterr().err
    # Greedy decoding: the batch size changes no seed, so a resume with another one is allowed.
    greedy = tmp_path / "greedy"
    assert r3_main(eval_argv(tiny_model_dir, data, greedy, "--batch-size", "2", "--limit", "2")) == 0
    assert r3_main(eval_argv(tiny_model_dir, data, greedy, "--batch-size", "4", "--limit", "2")) == 0
