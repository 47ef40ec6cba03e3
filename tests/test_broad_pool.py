"""A broad pool trained on once (`replacements: unseen`): training takes prompts from the front of a
seeded order, dynamic sampling's replacements from the back, so no query is drawn twice, and runs of
one seed (R3, its control, plain GRPO) take the same queries in the same order."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from r3.errors import R3Error
from r3.mining.records import FailedAttempt, FailureRecord
from r3.training.rollout import replacement_slot
from r3.training.trainer import build_trainer
from test_training_signal import GROUP, scripted_engine
from test_training_support import QUERIES, ToyTask, make_model, make_tokenizer, records, tiny_config


def two_attempts_each() -> list[FailureRecord]:
    """8 training prompts: each query with both failed attempts."""
    return [
        FailureRecord("toy", i, {"q": q}, [FailedAttempt.of({"q": q}, a, "not good") for a in "xy"], 4, 0)
        for i, q in enumerate(QUERIES)
    ]


def recording_engine(tokenizer, drawn: list[str]):
    """The scripted engine, recording the prompt of every group it samples (a group's rows come in a
    run of `GROUP` identical prompts: reflections in R3, first attempts in plain GRPO)."""
    engine = scripted_engine(tokenizer)

    def sample(trainer, prompt_ids, sampling):
        texts = [" ".join(tokenizer.convert_ids_to_tokens(ids)) for ids in prompt_ids]
        drawn.extend(t for t in texts[::GROUP] if t.split()[-2] != "retry")
        return engine(trainer, prompt_ids, sampling)

    return sample


def trained_groups(tmp_path: Path, pool: list[FailureRecord], steps: int, **overrides) -> tuple[list, list]:
    """Train `steps` steps of one group with one replacement try; the prompts TRL handed the rollout,
    and every group's prompt the engine sampled (replacements included)."""
    tokenizer = make_tokenizer()
    drawn: list[str] = []
    config = tiny_config(
        tmp_path,
        num_generations=GROUP,
        per_device_train_batch_size=GROUP,
        max_steps=steps,
        dynamic_sampling_rounds=1,
        replacements="unseen",
        **overrides,
    )
    trainer = build_trainer(
        config,
        model=make_model(tokenizer),
        tokenizer=tokenizer,
        task=ToyTask(),
        records=pool,
        engine=recording_engine(tokenizer, drawn),
    )
    handed: list[str] = []
    rollout = trainer.rollout_func

    def spy(prompts, trainer_):
        handed.extend(prompts[::GROUP])
        return rollout(prompts, trainer_)

    trainer.rollout_func = spy
    trainer.train()
    return handed, drawn


def test_every_prompt_of_the_pool_is_drawn_at_most_once(tmp_path: Path) -> None:
    handed, drawn = trained_groups(tmp_path, two_attempts_each(), steps=4)
    assert len(handed) == 4 and len(set(handed)) == 4
    counts = Counter(drawn)
    assert len(drawn) > 4, "the toy's always- and never-solved queries must have been replaced"
    assert max(counts.values()) == 1, counts


def test_runs_of_one_seed_take_the_same_queries_whatever_the_mode(tmp_path: Path) -> None:
    def queries(prompts: list[str]) -> list[str]:
        return [next(w for w in p.split() if w in QUERIES) for p in prompts]

    r3, _ = trained_groups(tmp_path / "r3", records(), steps=2)
    grpo, _ = trained_groups(
        tmp_path / "grpo", records(), steps=2, mode="grpo", reward_funcs=["attempt_success"]
    )
    shuffled, _ = trained_groups(
        tmp_path / "control", records(), steps=2, reward_funcs=["retry_success_shuffled"]
    )
    assert queries(r3) == queries(grpo) == queries(shuffled)


def test_replacement_slots_are_distinct() -> None:
    shape = (2, 3, 2, 4)  # calls per step, processes, tries, groups per call
    slots = [
        replacement_slot(step, call, process, attempt, group, shape)
        for step, call, process, attempt, group in itertools.product(
            range(5), range(2), range(3), (1, 2), range(4)
        )
    ]
    assert sorted(slots) == list(range(len(slots)))


def test_a_pool_too_small_for_the_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(R3Error, match="4 steps take up to 4 prompts for training and 4 for replacements"):
        trained_groups(tmp_path, records(), steps=4)


def test_the_broad_pool_experiment_trains_every_variant_on_the_same_pool_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """experiments/countdown_broad.yaml: R3, its control and plain GRPO read one failures file with one
    seed and `replacements: unseen`, and the pool its mining keeps (about 2,000 failures of 2,500
    queries at the warm-start's 18% first-try success) holds each variant's whole run."""
    import yaml

    from r3.cli.train_cmd import parse
    from r3.training.trainer import check_unseen_pool
    from test_experiment_driver import ROOT, load_driver

    driver = load_driver()
    cfg = yaml.safe_load((ROOT / "experiments" / "countdown_broad.yaml").read_text())
    calls: list[list[str]] = []
    monkeypatch.setattr(driver, "r3", lambda *args, log: calls.append(list(args)))
    for name in ("trained", "shuffled", "grpo"):
        driver.train(
            cfg, tmp_path / "warmstart", tmp_path / "failures.jsonl", name, tmp_path, tmp_path / "log"
        )
    monkeypatch.chdir(ROOT)  # the recipes' paths are the repository's
    configs = [parse(args[1:]) for args in calls]
    assert [c.mode for c in configs] == ["r3", "r3", "grpo"]
    assert {(c.failures, c.seed, c.replacements, c.selection, c.max_steps) for c in configs} == {
        (str(tmp_path / "failures.jsonl"), 0, "unseen", "all", 120)
    }
    assert cfg["mine"]["limit"] >= 2000 and cfg["mine"]["budget"] == 1
    for config in configs:
        check_unseen_pool(config, 1500)
    with pytest.raises(R3Error, match="take up to 360 prompts for training and 720 for replacements"):
        check_unseen_pool(configs[2], 1000)
