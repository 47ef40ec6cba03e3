"""K rounds in mining and training: `r3 mine --rounds K` continues each kept attempt's episode by its
rounds, `r3 train` turns every failed retry into one more context whose prompt is the whole history,
built exactly as `r3 eval --rounds` builds it, and whose reward is that round's retry."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from r3.episode import EpisodeSampling, run_episodes
from r3.errors import R3Error
from r3.generation.base import SamplingConfig, completion_from_ids
from r3.generation.chat import render_prompt
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, mine
from r3.mining.records import read_failures
from r3.tasks import get_task
from r3.training.dataset import build_prompts
from r3.training.rollout import R3Rollout

TASK = get_task("countdown")
EXAMPLES = [{"nums": [1, 2, 3], "target": 6}, {"nums": [2, 5, 7], "target": 14}]
WRONG = "<answer> 1 + 1 </answer>"


def reflections_in(prompt) -> int:
    return sum(m["content"].startswith(TASK.reflection_instruction) for m in prompt.messages)


def script(prompt, sampling, i):
    """Attempts are wrong; reflection k reads "idea k"; target 6's retry is right after 2 reflections,
    target 14's never is."""
    done = reflections_in(prompt)
    if prompt.messages[-1]["content"].startswith(TASK.reflection_instruction):
        return f"idea {done}"
    if done == 0:
        return WRONG
    if "equals 6" in prompt.messages[1]["content"] and done >= 2:
        return "<answer> 1 + 2 + 3 </answer>"
    return f"<answer> 1 + {done} </answer>"


def mine_rounds(folder: Path, rounds: int = 3, window: int = 16, generator=None) -> list[dict]:
    config = MineConfig(
        budget=2, round_size=2, keep=1, rounds=rounds, reflection_max_new_tokens=8, window=window
    )
    mine(
        TASK,
        EXAMPLES,
        generator or ScriptedGenerator(script),
        folder,
        config,
        identity={"model": "scripted"},
        progress=False,
    )
    return [json.loads(line) for line in (folder / "failures.jsonl").open()]


def test_mining_keeps_the_chain_of_rounds(tmp_path: Path) -> None:
    rows = mine_rounds(tmp_path / "a")
    six, fourteen = (row["failed_attempts"][0] for row in rows)
    # Target 6: round 1's retry failed, round 2's succeeded (nothing more to reflect on).
    assert six["attempt"] == WRONG
    assert [(r["reflection"], r["retry"], r["retry_ok"]) for r in six["rounds"]] == [
        ("idea 1", "<answer> 1 + 1 </answer>", False),
        ("idea 2", "<answer> 1 + 2 + 3 </answer>", True),
    ]
    assert six["solved_round"] == 2 and six["stopped"] is None
    # Target 14: every retry fails, the chain stops at K-1 = 2 rounds.
    assert [step["reflection"] for step in fourteen["rounds"]] == ["idea 1", "idea 2"]
    assert [step["retry"] for step in fourteen["rounds"]] == [
        "<answer> 1 + 1 </answer>",
        "<answer> 1 + 2 </answer>",
    ]
    # Seeded per query and attempt: a second run writes the same bytes.
    mine_rounds(tmp_path / "b")
    assert (tmp_path / "a" / "failures.jsonl").read_bytes() == (
        tmp_path / "b" / "failures.jsonl"
    ).read_bytes()
    # One round (the default) runs no chain at all.
    assert all(row["failed_attempts"][0]["rounds"] == [] for row in mine_rounds(tmp_path / "c", rounds=1))


def test_chains_are_the_episodes_rounds_batched_across_a_window(tmp_path: Path) -> None:
    """Every chain of a window takes one generate call per step, and each chain's samples come from its
    own seeds: mined one query per window or both together, the bytes are the same."""

    def seeded_script(prompt, sampling, i):
        text = script(prompt, sampling, i)
        return f"{text} {sampling.seed % 997}" if text.startswith("idea") else text

    alone, together = ScriptedGenerator(seeded_script), ScriptedGenerator(seeded_script)
    mine_rounds(tmp_path / "alone", window=1, generator=alone)
    rows = mine_rounds(tmp_path / "together", window=2, generator=together)
    assert (tmp_path / "alone" / "failures.jsonl").read_bytes() == (
        tmp_path / "together" / "failures.jsonl"
    ).read_bytes()
    # Two queries: attempts 1 call per window; chains: (reflection + retry) x 2 steps per window.
    assert (alone.calls, together.calls) == (2 * (1 + 4), 1 + 4)
    reflections = [r["reflection"] for row in rows for r in row["failed_attempts"][0]["rounds"]]
    assert len(set(reflections)) == len(reflections)  # every chain and round drew from its own seed


def test_training_prompts_of_later_rounds_are_evals_history(tmp_path: Path, tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    mine_rounds(tmp_path)
    records = read_failures(tmp_path / "failures.jsonl", TASK)
    rows, index = build_prompts(records, TASK, tokenizer)
    assert [(r["query_index"], r["round"]) for r in rows] == [(0, 1), (0, 2), (1, 1), (1, 2), (1, 3)]
    # `r3 eval --rounds 3` on the same model (same texts) asks round 2 and 3 with the very same chats.
    sampling = EpisodeSampling(*(SamplingConfig(max_new_tokens=8, temperature=0.0),) * 3)
    (episode,) = run_episodes(TASK, ScriptedGenerator(script), EXAMPLES[1:], sampling, rounds=3)
    eval_prompts = [render_prompt(tokenizer, r.reflection_prompt) for r in episode.rounds[1:]]
    assert eval_prompts == [rows[3]["prompt"], rows[4]["prompt"]]
    item = index[rows[4]["prompt"]]
    assert item.round == 3 and item.attempt == WRONG and item.chat is not None

    # The rollout retries a later round with the whole history, and rewards that retry.
    eos = tokenizer.eos_token_id

    def engine(trainer, prompt_ids, sampling):
        text = "idea 3" if sampling.max_new_tokens == 8 else "<answer> 2 + 5 + 7 </answer>"
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
        return [completion_from_ids(tokenizer, ids, sampling) for _ in prompt_ids]

    settings = EpisodeSampling(
        attempt=SamplingConfig(),
        reflection=SamplingConfig(max_new_tokens=8),
        retry=SamplingConfig(max_new_tokens=16, temperature=0.0, stop=TASK.stop),
    )
    rollout = R3Rollout(TASK, index, settings, engine=engine)
    out = rollout([rows[4]["prompt"]] * 2, SimpleNamespace(processing_class=tokenizer))
    assert out["retry_success"] == [True, True]
    expected = render_prompt(
        tokenizer, TASK.retry_prompt_after(item.example, item.chat, rollout.last.reflections[0])
    )
    assert rollout.last.retry_prompts[0] == expected
    assistant = [m["content"] for m in item.chat.messages if m["role"] == "assistant"]
    assert assistant == [WRONG, "idea 1", "<answer> 1 + 1 </answer>", "idea 2", "<answer> 1 + 2 </answer>"]


def test_a_malformed_chain_is_named(tmp_path: Path) -> None:
    mine_rounds(tmp_path / "a")
    path = tmp_path / "a" / "failures.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1]["failed_attempts"][0]["rounds"][1]["reflection"] = 3
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(R3Error) as info:
        read_failures(path, TASK)
    assert str(info.value) == (
        f"{path}, row 2, failed_attempts[0], rounds[1]: field 'reflection' should be str or null (got 3)"
    )


@pytest.mark.slow
def test_mine_then_train_with_rounds_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    """`r3 mine --rounds 2` on the tiny model, then one `r3 train` step over both rounds' contexts."""
    from r3.cli import main as r3_main

    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"nums": [3, 5, 7], "target": t}) + "\n" for t in (11, 13, 17, 19)))
    mine_argv = [
        "mine",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        "--rounds",
        "2",
        "--budget",
        "2",
    ]
    mine_argv += [
        "--round-size",
        "2",
        "--max-new-tokens",
        "8",
        "--reflection-max-new-tokens",
        "8",
        "--device",
        "cpu",
    ]
    assert r3_main([*mine_argv, "--no-progress", "--output-dir", str(tmp_path / "mine")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "mine" / "failures.jsonl").open()]
    assert len(rows) == 4 and all(len(r["failed_attempts"][0]["rounds"]) == 1 for r in rows)  # nothing solved
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "smollm2_countdown_cpu.yaml"
    train_argv = ["train", "--config", str(recipe), "--model", str(tiny_model_dir), "--failures"]
    train_argv += [str(tmp_path / "mine" / "failures.jsonl"), "--output_dir", str(tmp_path / "trained")]
    train_argv += ["--max_steps", "1", "--max_completion_length", "8", "--retry_max_new_tokens", "8"]
    assert r3_main([*train_argv, "--num_generations", "2", "--per_device_train_batch_size", "16"]) == 0
    summary = json.loads((tmp_path / "trained" / "r3_training.json").read_text())
    assert summary["num_prompts"] == 8  # 4 queries x (round 1 + round 2)


def test_the_rollout_runs_evals_round_on_the_same_chats(tmp_path: Path, tiny_model_dir: Path) -> None:
    """One episode: a stored first attempt given to the rollout gets, on a deterministic model, the
    very reflection, retry chat, retry and verdict that `r3 eval` gets after the same attempt."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r3.generation.transformers_backend import TransformersBackend
    from r3.mining.records import FailedAttempt, FailureRecord

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    backend = TransformersBackend(model, tokenizer, batch_size=8)
    greedy = SamplingConfig(max_new_tokens=6, temperature=0.0)
    sampling = EpisodeSampling(greedy, greedy, greedy.with_(stop=TASK.stop))
    (episode,) = run_episodes(TASK, backend, EXAMPLES[:1], sampling)
    first = episode.first_round
    assert not episode.first_try_ok and first is not None and first.reflection is not None

    # The evaluated episode's first attempt is the stored failed attempt.
    attempt = FailedAttempt(replace(episode, rounds=[]))
    record = FailureRecord(TASK.name, 0, EXAMPLES[0], [attempt], samples_drawn=1, successes=0)
    rows, index = build_prompts([record], TASK, tokenizer)

    def engine(trainer, prompt_ids, sampling):
        return backend.sample_tokens(prompt_ids, sampling)

    rollout = R3Rollout(TASK, index, sampling, engine=engine)
    out = rollout([rows[0]["prompt"]] * 2, SimpleNamespace(processing_class=tokenizer))
    last = rollout.last
    assert last.reflections == [first.reflection.text] * 2
    assert last.retry_prompts == [render_prompt(tokenizer, first.retry_prompt)] * 2
    assert last.retries == [first.retry.text] * 2
    assert out["retry_success"] == [first.retry_verdict.ok] * 2
    assert out["completion_ids"][0] == list(first.reflection.token_ids)
