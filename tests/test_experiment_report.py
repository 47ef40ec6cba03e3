"""The learning experiment's report (`experiments/experiment_report.py`), on hand-made evaluation folders
with known outcomes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from r3.episode import Episode, Round
from r3.evaluation.stats import accuracy
from r3.generation.base import Completion
from r3.tasks import get_task
from r3.tasks.base import Prompt, Verdict
from test_experiment_driver import load_experiment

experiment = load_experiment("experiment_report")
LABELS, compare = experiment.LABELS, experiment.compare
write_experiment_report = experiment.write_experiment_report
TASK = get_task("countdown")


def episode(index: int, first: bool, second: bool, seed: int = 0) -> Episode:
    """Problem `index` (of the evaluation seed `seed`: runs of another seed evaluated other problems),
    solved on the first try, on the retry of round 1, or not at all."""
    example = {"nums": [seed, index], "target": 10}
    attempt = Verdict(first, "" if first else "wrong")
    rounds = (
        []
        if first
        else [Round(1, Prompt([]), Completion("retry", 1), Verdict(second, "" if second else "wrong"))]
    )
    return Episode(index, example, Completion("attempt", 1), attempt, rounds)


def fake_eval(folder: Path, first: list[bool], second: list[bool], seed: int = 0) -> None:
    """An evaluation's files, as `r3 eval` writes them."""
    folder.mkdir(parents=True)
    rows = [episode(i, f, s, seed).to_json(TASK) for i, (f, s) in enumerate(zip(first, second, strict=True))]
    (folder / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    n = len(rows)
    results = {
        "task": "countdown",
        "model": "m",
        "n": n,
        "first_try": accuracy(sum(first), n),
        "second_try": accuracy(sum(second), n),
    }
    (folder / "results.json").write_text(json.dumps(results))


def fake_training(folder: Path, success: list[float], updates_per_rollout: int = 1) -> None:
    """A training summary with one logged rollout per entry of `success`, each serving
    `updates_per_rollout` optimizer steps (TRL's `num_iterations`)."""
    folder.mkdir(parents=True)
    history = [
        {
            "step": i * updates_per_rollout + 1,
            "r3/retry_success": s,
            "r3/groups_no_signal": 0.5,
            "r3/reflection_length": 20.0,
        }
        for i, s in enumerate(success)
    ]
    summary = {"log_history": history, "global_step": len(success) * updates_per_rollout}
    (folder / "r3_training.json").write_text(json.dumps(summary))


def build(tmp_path: Path, r3_second: int) -> str:
    n = 200
    base = [i < 60 for i in range(n)]  # 30% first try everywhere
    fake_eval(tmp_path / "eval-warmstart", base, [i < 70 for i in range(n)])
    fake_eval(tmp_path / "eval-shuffled", base, [i < 72 for i in range(n)])
    fake_eval(tmp_path / "eval-trained", base, [i < r3_second for i in range(n)])
    fake_training(tmp_path / "trained", [0.2, 0.3, 0.4])
    fake_training(tmp_path / "trained-shuffled", [0.2, 0.2, 0.2])
    return write_experiment_report(tmp_path, tmp_path / "report", seed=4000)


def test_a_clear_win_is_reported_with_its_tests(tmp_path: Path) -> None:
    text = build(tmp_path, r3_second=110)  # 55% against 35% and 36%
    assert "R3 beat both controls on the second try by at least 10%" in text
    assert "55.0% (110/200)" in text
    assert (tmp_path / "report" / "training_curves.png").stat().st_size > 1000
    assert (tmp_path / "report" / "experiment.md").read_text() == text


def test_no_gain_is_said_plainly(tmp_path: Path) -> None:
    text = build(tmp_path, r3_second=72)
    assert "This run showed no significant gain" in text
    assert "R3 beat" not in text


def test_a_significant_loss_is_not_called_no_gain(tmp_path: Path) -> None:
    text = build(tmp_path, r3_second=30)  # 15% against 35% and 36%
    assert "R3 was significantly worse than the warm-start and the shuffled control on the second try" in text
    assert "no significant gain" not in text and "R3 beat" not in text


def test_the_verdict_is_paired(tmp_path: Path) -> None:
    """The goal is stated with the exact McNemar test: 14 problems lost against 3 gained is a
    significant loss (p = 0.013) although the unpaired two-proportion test sees none (p = 0.27)."""
    n = 200
    base = [i < 100 for i in range(n)]
    fake_eval(tmp_path / "eval-warmstart", base, [i < 105 for i in range(n)])
    lost = [i < 91 or 105 <= i < 108 for i in range(n)]  # a first try lost is a second try lost
    fake_eval(tmp_path / "eval-trained", [i < 91 for i in range(n)], lost)
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "| 3 / 14 | 0.0127 |" in text
    assert "R3 was significantly worse than the warm-start on the second try" in text


def test_compare_pairs_problems_by_index() -> None:
    a = {i: episode(i, False, i < 10) for i in range(20)}
    b = {i: episode(i, False, 5 <= i < 12) for i in range(20)}
    got = compare(a, b, "second_try_ok")
    assert (got["n"], got["only_a"], got["only_b"]) == (20, 5, 2)
    assert got["diff"] == pytest.approx((10 - 7) / 20)


def test_without_a_control_the_verdict_says_so(tmp_path: Path) -> None:
    """The demo trains no shuffled control: the verdict compares with the warm-start only, and says it."""
    n = 100
    base = [i < 30 for i in range(n)]
    fake_eval(tmp_path / "eval-warmstart", base, [i < 35 for i in range(n)])
    fake_eval(tmp_path / "eval-trained", base, [i < 36 for i in range(n)])
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "R3 vs shuffled control" not in text and "| shuffled control |" not in text
    assert "no significant gain of R3 over the warm-start (this run has no shuffled control)" in text


def test_control_gate_and_plain_grpo_bar(tmp_path: Path) -> None:
    """The shuffled control's gate (within 3 points of the warm-start) and plain GRPO as the bar."""
    n = 200
    base = [i < 60 for i in range(n)]
    fake_eval(tmp_path / "eval-warmstart", base, [i < 70 for i in range(n)])  # 35%
    worse = [i < 40 for i in range(n)]
    fake_eval(tmp_path / "eval-shuffled", worse, worse)  # 20%: the gate fails
    fake_eval(tmp_path / "eval-trained", base, [i < 72 for i in range(n)])  # 36%
    fake_eval(tmp_path / "eval-grpo", [i < 80 for i in range(n)], [i < 100 for i in range(n)])  # 50%
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "Control gate: the shuffled control is -15.0% from the warm-start" in text
    assert "**failed**" in text
    assert "| plain GRPO |" in text
    assert "| plain GRPO vs warm-start | 2nd try | +15.0% |" in text
    assert "| R3 vs plain GRPO | 2nd try | -14.0% |" in text
    assert "R3 is below plain GRPO on the second try" in text

    fake_eval(tmp_path / "eval-shuffled2", base, [i < 68 for i in range(n)])
    (tmp_path / "eval-shuffled").rename(tmp_path / "eval-shuffled-failed")
    (tmp_path / "eval-shuffled2").rename(tmp_path / "eval-shuffled")
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "Control gate: the shuffled control is -1.0% from the warm-start" in text and ": passed." in text


def test_the_steps_column_counts_optimizer_steps_and_rollouts(tmp_path: Path) -> None:
    """With `num_iterations: 2` each rollout serves two optimizer steps: the table says both."""
    n = 200
    base = [i < 60 for i in range(n)]
    fake_eval(tmp_path / "eval-warmstart", base, base)
    fake_eval(tmp_path / "eval-trained", base, base)
    fake_eval(tmp_path / "eval-shuffled", base, base)
    fake_training(tmp_path / "trained", [0.2, 0.3, 0.4], updates_per_rollout=2)
    fake_training(tmp_path / "trained-shuffled", [0.2, 0.2, 0.2])
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "| R3 | 6 (3 rollouts) | 0.300 |" in text
    assert "| shuffled control | 3 | 0.200 |" in text


def test_the_combined_variant_is_compared_as_plain_grpo_is(tmp_path: Path) -> None:
    """A run with a `trained-combined` folder: its row, its comparisons, its training curve."""
    n = 200
    base = [i < 60 for i in range(n)]
    fake_eval(tmp_path / "eval-warmstart", base, [i < 70 for i in range(n)])  # 35%
    fake_eval(tmp_path / "eval-trained", base, [i < 72 for i in range(n)])  # 36%
    fake_eval(tmp_path / "eval-combined", [i < 70 for i in range(n)], [i < 90 for i in range(n)])  # 45%
    fake_training(tmp_path / "trained", [0.2, 0.3])
    folder = tmp_path / "trained-combined"
    folder.mkdir()
    history = [
        {"step": i + 1, "r3/turn_success": s, "r3/retry_success": 0.1, "r3/groups_drawn": 1}
        for i, s in enumerate([0.4, 0.6])
    ]
    history.append({"step": 3, "r3/groups_drawn": 3})  # every reward unscorable: no success logged
    (folder / "r3_training.json").write_text(json.dumps({"log_history": history, "global_step": 3}))
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "| combined | 35.0% (70/200)" in text
    assert "| combined vs warm-start | 2nd try | +10.0% |" in text
    assert "| R3 vs combined | 2nd try | -9.0% |" in text
    assert "R3 is below combined on the second try" in text
    assert "| combined | 3 | 0.500 |" in text  # 3 rollouts; the mean of its own reward, the turn's success

    # A run without R3 (`r3: false`): the combined variant against the warm-start only.
    (tmp_path / "eval-trained").rename(tmp_path / "eval-trained-elsewhere")
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "This run trained no R3 model" in text
    assert "| combined vs warm-start | 2nd try | +10.0% |" in text and "R3 vs" not in text


def test_models_of_different_sizes_are_said_not_comparable(tmp_path: Path) -> None:
    """The warm-start evaluated 200 problems, R3 the first 100: one sentence says so instead of "same
    problems", and the paired test pairs the 100 problems both hold."""
    fake_eval(tmp_path / "eval-warmstart", [i < 60 for i in range(200)], [i < 70 for i in range(200)])
    fake_eval(tmp_path / "eval-trained", [i < 60 for i in range(100)], [i < 80 for i in range(100)])
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "Not comparable row by row: warm-start has 200 problems, R3 100 (100 in common)" in text
    assert "Same problems for every model" not in text
    # Of the 100 shared problems, R3 solved 80 on the second try and the warm-start 70: +10.0%, 10 / 0.
    assert "| R3 vs warm-start | 2nd try | +10.0% |" in text and "| 10 / 0 |" in text


def test_models_of_different_problems_are_not_paired(tmp_path: Path) -> None:
    """Same size and indices, other problems (another data seed): the sentence, and no paired test
    across them (nothing in common: no discordant pair is counted)."""
    fake_eval(tmp_path / "eval-warmstart", [i < 60 for i in range(100)], [i < 70 for i in range(100)], seed=1)
    fake_eval(tmp_path / "eval-trained", [i < 60 for i in range(100)], [i < 90 for i in range(100)], seed=2)
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "Not comparable row by row: the runs evaluated different problems (none in common)" in text
    assert "| 20 / 0 |" not in text and "| 0 / 0 |" in text
    # With the same problems, the same rows are paired as ever.
    (tmp_path / "eval-trained").rename(tmp_path / "eval-trained-2")
    fake_eval(tmp_path / "eval-trained", [i < 60 for i in range(100)], [i < 90 for i in range(100)], seed=1)
    text = write_experiment_report(tmp_path, tmp_path / "report")
    assert "Same problems for every model." in text and "| 20 / 0 |" in text


def test_the_report_names_each_model_one_way_and_no_absolute_path(tmp_path: Path) -> None:
    n = 100
    base = [i < 30 for i in range(n)]
    for name in ("warmstart", "trained", "shuffled", "grpo", "combined"):
        fake_eval(tmp_path / f"eval-{name}", base, [i < 35 for i in range(n)])
    config = {"output": str(tmp_path), "mine": {"reuse": str(tmp_path / "older")}, "recipe": "recipes/x.yaml"}
    text = write_experiment_report(tmp_path, tmp_path / "report", config=config)
    assert str(tmp_path) not in text
    assert '"output": ".."' in text and '"reuse": "../older"' in text and '"recipes/x.yaml"' in text
    assert "```json" in text and "```yaml" not in text  # the settings block says what it holds
    names = set(LABELS.values())
    compared = re.findall(r"^\| ([^|]+?) vs ([^|]+?) \|", text, flags=re.MULTILINE)
    assert compared and all(a in names and b in names for a, b in compared), compared
    models = re.findall(r"^\| ([^|]+?) \| \d+\.\d%", text, flags=re.MULTILINE)  # the accuracy table's rows
    assert set(models) == names
