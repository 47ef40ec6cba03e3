"""`r3 sft --primed_fraction`: whole episodes as warm-start rows, token for token what inference sees,
the loss on the reflection and the corrected answer only; fraction 0 changes nothing."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from r3.cli.sft_cmd import main as sft_main
from r3.errors import R3Error
from r3.generation.chat import render_prompt
from r3.tasks import get_task
from r3.tasks.base import Example, Task
from r3.training.priming import Priming, failed_attempt, primed_indices
from r3.training.sft import SFTRunConfig, build_sft_examples, build_sft_trainer, train_sft

SMALL = {"min_nums": 3, "max_nums": 3, "max_number": 20, "max_target": 60}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path) -> Any:
    """The embedded SmolLM2 tokenizer (chat template included), as the tiny model ships it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def encode(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def runs(mask: list[int]) -> list[tuple[int, int]]:
    """The (start, end) of each stretch of 1s in a loss mask."""
    found, start = [], None
    for i, bit in enumerate([*mask, 0]):
        if bit and start is None:
            start = i
        elif not bit and start is not None:
            found.append((start, i))
            start = None
    return found


def old_rows(task: Task, examples: list[Example], tokenizer: Any) -> tuple[list[list[int]], list[list[int]]]:
    """The first-attempt rows as `r3 sft` built them before priming: prompt, answer, EOS."""
    ids, masks = [], []
    for example in examples:
        answer = task.reference_answer(example)
        if not answer:
            continue
        prompt = encode(tokenizer, render_prompt(tokenizer, task.prompt(example)))
        completion = [*encode(tokenizer, answer), tokenizer.eos_token_id]
        ids.append(prompt + completion)
        masks.append([0] * len(prompt) + [1] * len(completion))
    return ids, masks


def tasks_and_examples() -> list[tuple[Task, list[Example]]]:
    countdown = get_task("countdown", **SMALL)
    calls = get_task("function_calling")
    return [(countdown, countdown.load(None, limit=24, seed=3)), (calls, calls.load(None, limit=24))]


@pytest.mark.parametrize("which", [0, 1], ids=["countdown", "function_calling"])
def test_primed_rows_are_the_episode_inference_sees(tokenizer: Any, which: int) -> None:
    """Each primed row: the reflection chat's tokens (what the reflection is sampled after), then the
    reflection and EOS, then the rest of the retry chat (what the retry is sampled after), then the
    reference answer and EOS; the loss on exactly the reflection + EOS and the answer + EOS."""
    task, examples = tasks_and_examples()[which]
    priming = Priming(0.5, seed=11)
    rows = build_sft_examples(task, examples, tokenizer, priming=priming)
    chosen = primed_indices(len(examples), 0.5, 11)
    assert rows.used == len(examples) and rows.skipped == 0
    assert rows.primed == len(chosen) == 12 and rows.unprimed == 0 and rows.first_attempts == 12
    eos = tokenizer.eos_token_id
    for index, (example, ids, mask) in enumerate(
        zip(examples, rows.input_ids, rows.completion_mask, strict=True)
    ):
        answer = task.reference_answer(example)
        assert answer is not None
        if index not in chosen:
            assert len(runs(mask)) == 1
            continue
        found = failed_attempt(task, example, index, priming)
        assert found is not None
        attempt, reflection = found
        assert not task.verify(example, attempt).ok
        assert reflection == task.diagnose(example, attempt)
        assert task.verify(example, answer).ok  # the corrected answer verifies
        head = encode(tokenizer, render_prompt(tokenizer, task.reflection_prompt(example, attempt)))
        retry = encode(tokenizer, render_prompt(tokenizer, task.retry_prompt(example, attempt, reflection)))
        assert ids[: len(head)] == head and ids[: len(retry)] == retry
        assert ids == retry + encode(tokenizer, answer) + [eos]
        (a, b), (c, d) = runs(mask)
        assert (a, d) == (len(head), len(ids))
        assert ids[a:b] == encode(tokenizer, reflection) + [eos] and ids[c:d] == encode(tokenizer, answer) + [
            eos
        ]
        assert tokenizer.decode(ids[a:b]) == reflection + tokenizer.eos_token
        assert tokenizer.decode(ids[c:d]) == answer + tokenizer.eos_token
        masked = tokenizer.decode([t for t, bit in zip(ids, mask, strict=True) if not bit])
        for text in (
            attempt,
            task.reflection_instruction,
            task.retry_instruction,
            task.prompt(example).messages[-1]["content"],
        ):
            assert text in masked
        trained = tokenizer.decode([t for t, bit in zip(ids, mask, strict=True) if bit])
        assert attempt not in trained and task.reflection_instruction not in trained


def test_primed_fraction_zero_gives_the_rows_of_before(tokenizer: Any) -> None:
    for task, examples in tasks_and_examples():
        before = old_rows(task, examples, tokenizer)
        for priming in (None, Priming(0.0, seed=5)):
            rows = build_sft_examples(task, examples, tokenizer, priming=priming)
            assert (rows.input_ids, rows.completion_mask) == before
            assert (rows.primed, rows.unprimed, rows.first_attempts) == (0, 0, len(examples))


def test_which_rows_are_primed_is_fixed_by_the_seed(tokenizer: Any) -> None:
    task, examples = tasks_and_examples()[0]
    first = build_sft_examples(task, examples, tokenizer, priming=Priming(0.25, seed=1))
    again = build_sft_examples(task, examples, tokenizer, priming=Priming(0.25, seed=1))
    other = build_sft_examples(task, examples, tokenizer, priming=Priming(0.25, seed=2))
    assert first.input_ids == again.input_ids and first.completion_mask == again.completion_mask
    assert first.input_ids != other.input_ids
    assert first.primed == other.primed == 6
    assert primed_indices(10, 0.25, 1) <= primed_indices(10, 0.6, 1)  # more priming keeps these
    assert primed_indices(10, 1.0, 1) == set(range(10)) and not primed_indices(10, 0.0, 1)


def test_an_example_that_cannot_be_primed_stays_a_first_attempt(tokenizer: Any) -> None:
    """No perturbation (a task without the hooks), a template whose turns do not end with EOS, or a
    row too long: each such example is a first-attempt row, counted as unprimed."""
    custom = get_task("custom", verifier="examples.custom_task.verifier:verify")
    rows = [
        {"prompt": "2 + 2? Answer as <answer>N</answer>.", "answer": 4, "reference": "<answer>4</answer>"}
    ]
    built = build_sft_examples(custom, rows, tokenizer, priming=Priming(1.0))
    assert (built.primed, built.unprimed, built.used) == (0, 1, 1)
    assert (built.input_ids, built.completion_mask) == old_rows(custom, rows, tokenizer)

    task, examples = tasks_and_examples()[0]
    plain = type(tokenizer).from_pretrained(tokenizer.name_or_path)
    plain.chat_template = None  # the plain format ends a turn with a newline, never with EOS
    built = build_sft_examples(task, examples, plain, priming=Priming(1.0))
    assert (built.primed, built.unprimed) == (0, len(examples))
    assert (built.input_ids, built.completion_mask) == old_rows(task, examples, plain)

    first = old_rows(task, examples[:1], tokenizer)[0][0]
    primed = build_sft_examples(task, examples[:1], tokenizer, priming=Priming(1.0)).input_ids[0]
    assert len(primed) > len(first)
    built = build_sft_examples(task, examples[:1], tokenizer, max_length=len(first), priming=Priming(1.0))
    assert (built.primed, built.unprimed, built.input_ids) == (0, 1, [first])


def write_failures(path: Path, task: Task, examples: list[Example], attempts: list[list[str]]) -> None:
    lines = []
    for index, (example, tried) in enumerate(zip(examples, attempts, strict=True)):
        row = {**task.to_record(example), "task": task.name, "query_index": index, "samples_drawn": 4}
        row.update(successes=0, failed_attempts=[{"completion": c, "reason": "wrong"} for c in tried])
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")


def test_primed_failures_show_the_models_own_attempts(tmp_path: Path, tiny_model_dir: Path) -> None:
    """Mined attempts are the failed attempts of primed rows; one the verifier accepts, or one that
    cannot be diagnosed, is passed over; a query with no usable attempt stays a first attempt."""
    task = get_task("countdown", **SMALL)
    examples = [
        {"nums": [3, 5, 8], "target": 16},
        {"nums": [2, 7, 9], "target": 23},
        {"nums": [4, 6, 10], "target": 20},
        {"nums": [1, 1, 1], "target": 100},  # no reference answer: skipped
    ]
    attempts = [
        ["<answer> 3 + 5 + 8 </answer>", "<answer> 3 * 5 + 8 </answer>"],  # the first one is right
        ["<answer> 2 * 7 + 9 + 2 </answer>"],
        ["<answer> 4 + 6 + 10 </answer>"],  # correct: nothing to prime with
        ["<answer> 1 + 1 + 1 </answer>"],
    ]
    failures = tmp_path / "failures.jsonl"
    write_failures(failures, task, examples, attempts)
    config = SFTRunConfig(
        output_dir=str(tmp_path / "out"),
        model=str(tiny_model_dir),
        task="countdown",
        task_args=SMALL,
        primed_failures=str(failures),
        primed_fraction=1.0,
        use_cpu=True,
        report_to="none",
    )
    _, rows = build_sft_trainer(config)
    assert (rows.used, rows.primed, rows.unprimed, rows.skipped) == (3, 2, 1, 1)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = [tokenizer.decode(ids) for ids in rows.input_ids]
    assert "<answer> 3 * 5 + 8 </answer>" in texts[0] and "3 * 5 + 8 evaluates to 23, not 16" in texts[0]
    assert "uses 2 twice" in texts[1]
    assert len(runs(rows.completion_mask[2])) == 1  # the third stayed a first attempt


def test_priming_settings_are_checked(tmp_path: Path) -> None:
    base = {"output_dir": str(tmp_path), "use_cpu": True, "report_to": "none"}
    with pytest.raises(R3Error, match="between 0 and 1"):
        SFTRunConfig(**base, primed_fraction=1.5)  # type: ignore[arg-type]
    with pytest.raises(R3Error, match="needs primed_fraction"):
        SFTRunConfig(**base, primed_failures="f.jsonl")  # type: ignore[arg-type]
    with pytest.raises(R3Error, match="not both"):
        SFTRunConfig(**base, primed_failures="f.jsonl", primed_fraction=0.5, data="d.jsonl")  # type: ignore[arg-type]


def test_a_primed_warm_start_trains_on_the_tiny_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`r3 sft --primed_fraction 0.5` end to end: half the rows are episodes, TRL's labels follow the
    two-part mask, the loss is finite, and `r3_sft.json` records the counts."""
    out = tmp_path / "primed"
    code = sft_main(
        [
            "--model", str(tiny_model_dir), "--output_dir", str(out), "--task", "countdown",
            "--task_args", json.dumps(SMALL), "--limit", "8", "--primed_fraction", "0.5", "--seed", "3",
            "--use_cpu", "true", "--max_steps", "2", "--per_device_train_batch_size", "4",
            "--report_to", "none", "--save_strategy", "no", "--logging_steps", "1",
        ]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "r3_sft.json").read_text())
    assert summary["examples_primed"] == 4 and summary["examples_first_attempt"] == 4
    assert summary["examples_used"] == 8 and summary["primed_fraction"] == 0.5 and summary["seed"] == 3
    assert summary["global_step"] == 2
    losses = [row["loss"] for row in summary["log_history"] if "loss" in row]
    assert losses and all(math.isfinite(loss) for loss in losses)

    config = SFTRunConfig(
        output_dir=str(tmp_path / "check"), model=str(tiny_model_dir), task="countdown", task_args=SMALL,
        limit=8, primed_fraction=0.5, seed=3, use_cpu=True, report_to="none",
    )  # fmt: skip
    trainer, rows = build_sft_trainer(config)
    episode = next(i for i, mask in enumerate(rows.completion_mask) if len(runs(mask)) == 2)
    batch = trainer.data_collator([trainer.train_dataset[episode]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    mask = rows.completion_mask[episode]
    assert ids == rows.input_ids[episode]
    assert labels == [token if bit else -100 for token, bit in zip(ids, mask, strict=True)]


def test_train_sft_reports_priming(tmp_path: Path, tiny_model_dir: Path) -> None:
    result = train_sft(
        SFTRunConfig(
            output_dir=str(tmp_path / "o"),
            model=str(tiny_model_dir),
            task="countdown",
            task_args=SMALL,
            limit=4,
            primed_fraction=1.0,
            use_cpu=True,
            max_steps=1,
            report_to="none",
            save_strategy="no",
        )  # fmt: skip
    )
    assert (result.used, result.primed, result.unprimed) == (4, 4, 0)
