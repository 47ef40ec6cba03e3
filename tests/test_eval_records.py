"""`r3.evaluation.records`: what `r3 eval` hands to the report, typed. Rows and results round-trip to
the very bytes eval writes, files of older versions read with what their missing fields meant, and a
file missing a field the report needs is one clear error, not a `KeyError` traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from r3.errors import R3Error
from r3.evaluation.evaluate import EvalConfig, evaluate
from r3.evaluation.records import EvalResults, read_results, read_samples
from r3.generation.scripted import ScriptedGenerator
from r3.reports.compare import load_run, write_report
from r3.tasks import get_task

TASK = get_task("countdown")
EXAMPLES = [
    {"nums": [1, 2, 3], "target": 6},
    {"nums": [2, 5, 7], "target": 14},
    {"nums": [3, 4, 9], "target": 3},
]


def script(prompt, sampling, i):
    """Example 0 right at once; example 1 right on the retry; example 2 never."""
    if prompt.messages[-1]["content"] == TASK.reflection_instruction:
        return "Use every number exactly once."
    if "equals 14" in prompt.messages[1]["content"]:
        return "<answer> 7 + 5 + 2 </answer>" if len(prompt.messages) > 2 else "<answer> 7 * 7 </answer>"
    return "<answer> 1 + 2 + 3 </answer>"


def run_eval(folder: Path, rounds: int = 1) -> None:
    evaluate(EvalConfig(batch_size=2, rounds=rounds), TASK, EXAMPLES, ScriptedGenerator(script), folder)


@pytest.mark.parametrize("rounds", [1, 3])
def test_rows_and_results_read_back_to_the_bytes_eval_wrote(tmp_path: Path, rounds: int) -> None:
    run_eval(tmp_path, rounds)
    lines = (tmp_path / "samples.jsonl").read_text().splitlines()
    rows = read_samples(tmp_path / "samples.jsonl")
    assert [json.dumps(row.to_json(TASK), ensure_ascii=False) for row in rows] == lines
    assert [row.solved_round for row in rows] == [0, 1, None]
    assert [[r.number for r in row.rounds] for row in rows] == [[], [1], list(range(1, rounds + 1))]
    payload = json.loads((tmp_path / "results.json").read_text())
    results = read_results(tmp_path / "results.json")
    assert results.to_json() == payload
    assert [k for k, _ in results.by_round()] == list(range(rounds + 1))
    assert (results.first_try.correct, results.second_try.correct, results.n) == (1, 2, 3)


def test_a_results_file_of_an_older_r3_reads_with_what_it_meant(tmp_path: Path) -> None:
    """Before `--second-try` (no protocol: reflect) and `--rounds` (one round: the second try)."""
    run_eval(tmp_path)
    payload = json.loads((tmp_path / "results.json").read_text())
    for key in ("second_try_protocol", "second_try_note", "rounds", "wall_seconds_this_run"):
        del payload[key]
    del payload["config"]["second_try"]
    old = EvalResults.from_json(payload, "old")
    assert old.second_try_protocol == "reflect" and old.second_try_note is None
    assert old.by_round() == [(0, old.first_try), (1, old.second_try)]
    payload["config"]["second_try"] = "resample"
    assert EvalResults.from_json(payload, "old").second_try_protocol == "resample"


def test_an_older_samples_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rows that keep round 1 in the row itself (and rounds 2..K under `rounds`) are not read as
    episodes: the report names the line and says how to redo it."""
    run_eval(tmp_path / "a")
    samples = tmp_path / "a" / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    first = rows[1].pop("rounds")[0]
    rows[1].update({k: v for k, v in first.items() if k not in ("round", "retry_tokens")})
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(R3Error) as info:
        load_run(tmp_path / "a")
    assert str(info.value) == (
        f"{samples}, line 2: written by an older r3 (round 1 outside `rounds`); run it again with --overwrite"
    )
    assert r3_main(["report", str(tmp_path / "a"), "--output-dir", str(tmp_path / "rep")]) == 2
    assert capsys.readouterr().err.strip() == f"r3: error: {info.value}"


def test_a_results_file_missing_a_field_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_eval(tmp_path / "a")
    results = tmp_path / "a" / "results.json"
    payload = json.loads(results.read_text())
    del payload["first_try"]
    results.write_text(json.dumps(payload))
    with pytest.raises(R3Error) as info:
        write_report([str(tmp_path / "a")], tmp_path / "rep")
    assert str(info.value) == f"{results}: no field 'first_try' (is this a file written by `r3 eval`?)"
    assert r3_main(["report", str(tmp_path / "a"), "--output-dir", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"r3: error: {info.value}"  # one line, no traceback
    # A damaged block and a wrong type are named as precisely.
    payload["first_try"] = {"correct": 1, "accuracy": 0.5}
    results.write_text(json.dumps(payload))
    with pytest.raises(R3Error, match=r"results.json, first_try: no field 'ci95'"):
        load_run(tmp_path / "a")
    payload["first_try"], payload["n"] = {"correct": 1, "accuracy": 0.5, "ci95": [0.1, 0.9]}, "3"
    results.write_text(json.dumps(payload))
    with pytest.raises(R3Error, match=r"results.json: field 'n' should be int \(got \"3\"\)"):
        load_run(tmp_path / "a")
    results.write_text("{not json")
    with pytest.raises(R3Error, match=r"results.json: cannot read it as JSON"):
        load_run(tmp_path / "a")


def test_a_sample_row_missing_a_field_is_named_with_its_line(tmp_path: Path) -> None:
    run_eval(tmp_path)
    samples = tmp_path / "samples.jsonl"
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    del rows[1]["attempt"]
    rows[2]["attempt_ok"] = "no"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(R3Error, match=rf"^{samples}, line 2: no field 'attempt' \(is this a file"):
        load_run(tmp_path)
    rows[1]["attempt"] = "x"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(
        R3Error, match=rf"^{samples}, line 3: field 'attempt_ok' should be bool \(got \"no\"\)"
    ):
        load_run(tmp_path)


def test_the_report_reads_samples_with_the_logs_reader(tmp_path: Path) -> None:
    """A torn last row (an eval killed mid-write) is left out, as every reader of a log does."""
    run_eval(tmp_path)
    samples = tmp_path / "samples.jsonl"
    lines = samples.read_text().splitlines()
    samples.write_text("\n".join(lines[:2]) + "\n" + lines[2][:30])
    assert [row.index for row in load_run(tmp_path).samples] == [0, 1]
