"""`r3 forgetting`: lm-evaluation-harness run for real (its HF model class, the shipped local task) on a
tiny model and a LoRA adapter of it; the table's arithmetic checked on hand-written results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3.cli import main as r3_main
from r3.forgetting.harness import BUILTIN_TASKS_DIR, scores_of
from r3.forgetting.report import change, forgetting_table

LM_EVAL_RESULTS = {  # the shape of lm-eval's `results` entry, values written by hand
    "results": {
        "r3_basics": {
            "alias": "r3_basics",
            "acc,none": 0.5,
            "acc_stderr,none": 0.1,
            "acc_norm,none": 0.25,
            "acc_norm_stderr,none": "N/A",
        },
        "gsm8k": {"exact_match,strict-match": 0.2, "exact_match_stderr,strict-match": 0.05},
    }
}


def test_scores_of_reads_every_metric_with_its_stderr() -> None:
    assert scores_of(LM_EVAL_RESULTS) == {
        "r3_basics": {
            "acc": {"value": 0.5, "stderr": 0.1},
            "acc_norm": {"value": 0.25, "stderr": None},
        },
        "gsm8k": {"exact_match (strict-match)": {"value": 0.2, "stderr": 0.05}},
    }


def test_change_combines_standard_errors_as_independent() -> None:
    delta, err = change({"value": 0.5, "stderr": 0.3}, {"value": 0.4, "stderr": 0.4})
    assert delta == pytest.approx(-0.1) and err == pytest.approx(0.5)
    assert change({"value": 0.5, "stderr": None}, {"value": 0.75, "stderr": 0.1}) == (0.25, None)


def test_forgetting_table_shows_scores_and_changes() -> None:
    after = {"r3_basics": {"acc": {"value": 0.4, "stderr": 0.1}}}
    summary = {
        "order": ["before", "after"],
        "models": {"before": {"scores": scores_of(LM_EVAL_RESULTS)}, "after": {"scores": after}},
    }
    table = forgetting_table(summary).splitlines()
    assert table[0] == "| task | metric | before | after | after - before |"
    assert "| r3_basics | acc | 0.500 ± 0.100 | 0.400 ± 0.100 | -0.100 ± 0.141 |" in table
    assert "| gsm8k | exact_match (strict-match) | 0.200 ± 0.050 | - | - |" in table


def test_the_shipped_task_is_well_formed() -> None:
    rows = [json.loads(line) for line in (BUILTIN_TASKS_DIR / "r3_basics" / "r3_basics.jsonl").open()]
    assert len(rows) >= 30
    assert all(len(r["choices"]) == 4 and 0 <= r["answer"] < 4 for r in rows)
    assert len({r["question"] for r in rows}) == len(rows)
    assert len({r["answer"] for r in rows}) == 4  # the right answer is not always in one place


def lora_adapter(base: Path, folder: Path) -> Path:
    """A LoRA adapter of `base` with non-zero weights (so that it changes the model), as PEFT saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(folder)
    return folder


def test_forgetting_runs_lm_eval_on_a_model_and_an_adapter(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = lora_adapter(tiny_model_dir, tmp_path / "adapter")
    out = tmp_path / "forgetting"
    argv = [
        "forgetting", "--models", str(tiny_model_dir), str(adapter), "--labels", "before", "after",
        "--limit", "8", "--device", "cpu", "--output_dir", str(out),
    ]  # fmt: skip
    assert r3_main(argv) == 0
    printed = capsys.readouterr().out
    assert "| task | metric | before | after | after - before |" in printed
    summary = json.loads((out / "forgetting.json").read_text())
    assert summary["order"] == ["before", "after"]
    for label in ("before", "after"):
        acc = summary["models"][label]["scores"]["r3_basics"]["acc"]
        assert 0.0 <= acc["value"] <= 1.0 and acc["stderr"] > 0
        # lm-eval's own files: aggregated results and the per-example samples (8 of them, --limit).
        (results_file,) = (out / "lm_eval" / label).rglob("results_*.json")
        assert json.loads(results_file.read_text())["results"]["r3_basics"]["acc,none"] == acc["value"]
        (samples_file,) = (out / "lm_eval" / label).rglob("samples_r3_basics_*.jsonl")
        assert len(samples_file.read_text().splitlines()) == 8
    # The adapter changed the model: its per-example log-likelihoods differ from the base model's.
    loglik = {
        label: [
            json.loads(line)["filtered_resps"]
            for line in next((out / "lm_eval" / label).rglob("samples_*.jsonl")).open()
        ]
        for label in ("before", "after")
    }
    assert loglik["before"] != loglik["after"]
    assert (out / "forgetting.png").stat().st_size > 1000
    assert "after - before" in (out / "forgetting.md").read_text()
    # Run again: both models' results are stored with the same settings, nothing is evaluated again.
    assert r3_main(argv) == 0
    assert printed.count("lm-eval on") == 2 and capsys.readouterr().out.count("not evaluated again") == 2


def test_forgetting_errors_are_one_line(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    assert r3_main(["forgetting", "--output_dir", str(tmp_path)]) == 2
    assert "give at least one model" in capsys.readouterr().err
    argv = ["forgetting", "--models", str(tiny_model_dir), "--tasks", "no_such_task", "--device", "cpu"]
    assert r3_main([*argv, "--output_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lm-eval knows no task 'no_such_task'" in err and "Traceback" not in err
    assert r3_main(["forgetting", "--models", str(tmp_path / "missing"), "--output_dir", str(tmp_path)]) == 2
    assert "no such model folder" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the run folder

SCORES = {"r3_basics": {"acc": {"value": 0.5, "stderr": 0.1}}}

#: A second `r3 forgetting` in its own process, into the folder given as argv[1] (lm-eval left out).
SECOND_PROCESS = """
import sys
from r3.errors import R3Error
from r3.forgetting import harness as forgetting
forgetting.task_manager = lambda config: None
forgetting.evaluate_model = lambda *args: {}
config = forgetting.ForgettingConfig(models=["before", "after"], output_dir=sys.argv[1])
try:
    forgetting.run_forgetting(config)
except R3Error as exc:
    print(exc)
    sys.exit(2)
"""


def no_lm_eval(monkeypatch: pytest.MonkeyPatch, evaluate_model) -> None:
    from r3.forgetting import harness as forgetting

    monkeypatch.setattr(forgetting, "task_manager", lambda config: None)
    monkeypatch.setattr(forgetting, "evaluate_model", evaluate_model)


def test_a_second_forgetting_into_the_folder_is_refused_while_one_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary is written under the folder's lock: another process running `r3 forgetting` into
    the same folder meanwhile is refused at once, and runs (resuming) once the first is done."""
    import os
    import subprocess
    import sys

    from r3.forgetting import ForgettingConfig, run_forgetting

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), *sys.path])}
    out = tmp_path / "out"
    second = [sys.executable, "-c", SECOND_PROCESS, str(out)]
    during: list[subprocess.CompletedProcess[str]] = []

    def evaluate_model(config, model, label, folder, manager=None):
        if not during:  # while the first model is evaluated, the folder is locked
            during.append(subprocess.run(second, capture_output=True, text=True, env=env, timeout=120))
        return SCORES

    no_lm_eval(monkeypatch, evaluate_model)
    run_forgetting(ForgettingConfig(models=["before", "after"], output_dir=str(out)), progress=False)
    (refused,) = during
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert (
        refused.stdout.strip()
        == f"another `r3 forgetting` is writing into {out}; wait for it or use another --output-dir"
    )
    after = subprocess.run(second, capture_output=True, text=True, env=env, timeout=120)
    assert after.returncode == 0, after.stdout + after.stderr[-2000:]
    assert after.stdout.count("results stored, not evaluated again") == 2


def test_the_summary_is_replaced_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write of `forgetting.json` that dies half-way (disk full, a kill) leaves the previous summary
    whole, and the next run goes on from it."""
    from r3 import rundir
    from r3.forgetting import ForgettingConfig, run_forgetting

    def dies_half_way(handle, data: bytes) -> None:
        """`rundir`'s write, writing half of the bytes and then failing."""
        handle.write(data[: len(data) // 2])
        raise OSError("no space left on device")

    evaluated: list[str] = []
    write = rundir._write_synced

    def evaluate_model(config, model, label, folder, manager=None):
        evaluated.append(label)
        if evaluated == ["before", "after"]:
            monkeypatch.setattr(rundir, "_write_synced", dies_half_way)  # the summary's next write dies
        return SCORES

    no_lm_eval(monkeypatch, evaluate_model)
    config = ForgettingConfig(models=["before", "after"], output_dir=str(tmp_path))
    with pytest.raises(OSError, match="no space left"):
        run_forgetting(config, progress=False)
    summary = json.loads((tmp_path / "forgetting.json").read_text())  # whole, and the first model's
    assert list(summary["models"]) == ["before"] and summary["models"]["before"]["scores"] == SCORES
    monkeypatch.setattr(rundir, "_write_synced", write)
    run_forgetting(config, progress=False)
    assert evaluated == ["before", "after", "after"]  # the first model's result was kept
    assert list(json.loads((tmp_path / "forgetting.json").read_text())["models"]) == ["before", "after"]


def test_a_folder_of_an_earlier_forgetting_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Folders written before `r3 forgetting` had a run.json: refused (never guessed at); --overwrite
    starts afresh."""
    from r3.errors import R3Error
    from r3.forgetting import ForgettingConfig, run_forgetting

    no_lm_eval(monkeypatch, lambda *args: SCORES)
    (tmp_path / "forgetting.json").write_text(
        json.dumps({"models": {"before": {"settings": {}, "scores": {}}}})
    )
    config = ForgettingConfig(models=["before"], output_dir=str(tmp_path))
    with pytest.raises(R3Error, match=r"holds forgetting.json but no run.json, so it cannot be resumed"):
        run_forgetting(config, progress=False)
    run_forgetting(
        ForgettingConfig(models=["before"], output_dir=str(tmp_path), overwrite=True), progress=False
    )
    assert json.loads((tmp_path / "forgetting.json").read_text())["models"]["before"]["scores"] == SCORES
