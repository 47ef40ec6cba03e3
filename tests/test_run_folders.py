"""The output folder's guarantees as a user meets them through `r3 eval` (found by trying, issue 9):
`--overwrite` starts afresh, a changed data file is not resumed into, and what decides the seeds is
part of the fingerprint (every example seeded by its index, so the batch size is not)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from r3.rundir import FINGERPRINT_VERSION

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
    assert "holds another run's output (examples_sha256: the examples differ" in err
    assert [r["example"]["target"] for r in rows_of(out)] == [11, 13]  # nothing appended


def test_sampled_eval_rows_do_not_depend_on_the_batch_size_or_on_resuming(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each example is seeded by its index, so `--batch-size` decides nothing about the rows and is not
    in the fingerprint: a run resumed with another batch size writes what one uninterrupted run does."""
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    sampled = ["--temperature", "1.0"]
    whole = tmp_path / "whole"
    assert r3_main(eval_argv(tiny_model_dir, data, whole, *sampled, "--batch-size", "4")) == 0
    resumed = tmp_path / "resumed"
    assert r3_main(eval_argv(tiny_model_dir, data, resumed, *sampled, "--batch-size", "1")) == 0
    # As if killed after its first example: one row kept, then resumed with another batch size.
    first = (resumed / "samples.jsonl").read_text().splitlines()[0]
    (resumed / "samples.jsonl").write_text(first + "\n")
    (resumed / "results.json").unlink()
    assert r3_main(eval_argv(tiny_model_dir, data, resumed, *sampled, "--batch-size", "3")) == 0
    assert rows_of(resumed) == rows_of(whole)
    assert len({r["attempt"] for r in rows_of(whole)}) > 1  # really sampled: the rows differ
    # A folder written by an earlier r3 (which may have sampled another way) is refused in one line,
    # not mixed: one of the shared number before, and one from before it (a sampler number, no version).
    capsys.readouterr()
    run = json.loads((whole / "run.json").read_text())
    before = {**run, "version": FINGERPRINT_VERSION - 1}
    older = {k: v for k, v in run.items() if k not in ("version", "command")} | {"sampler": 2}
    for stored, named in ((before, FINGERPRINT_VERSION - 1), (older, None)):
        (whole / "run.json").write_text(json.dumps(stored))
        assert r3_main(eval_argv(tiny_model_dir, data, whole, *sampled)) == 2
        err = capsys.readouterr().err.strip()
        assert f"written by an earlier version of r3 (run.json version {named}, this r3 writes " in err
        assert len(err.splitlines()) == 1
    assert rows_of(whole) == rows_of(resumed)  # nothing appended


def test_where_rows_depend_on_the_batch_the_batch_size_is_part_of_the_run(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In bfloat16 (or on a GPU, or through a server) a row's samples change with its batch (measured:
    mining in bfloat16 wrote other rows with another window), so there a resume with another
    `--batch-size` is refused rather than mixing rows of two batchings."""
    from r3.models import batch_invariant

    assert batch_invariant("transformers", "float32", "cpu") and batch_invariant(
        "transformers", "auto", "cpu"
    )
    assert not batch_invariant("transformers", "bfloat16", "cpu")
    assert not batch_invariant("openai", "float32", "cpu") and not batch_invariant("vllm", "auto", "cpu")
    data = write_rows(tmp_path / "rows.jsonl", ROWS)
    out = tmp_path / "bf16"
    bf16 = ["--dtype", "bfloat16", "--temperature", "1.0"]
    assert r3_main(eval_argv(tiny_model_dir, data, out, *bf16, "--batch-size", "4", "--limit", "2")) == 0
    assert json.loads((out / "run.json").read_text())["chunk_size"] == 4
    assert r3_main(eval_argv(tiny_model_dir, data, out, *bf16, "--batch-size", "2", "--limit", "2")) == 2
    assert "chunk_size" in capsys.readouterr().err
