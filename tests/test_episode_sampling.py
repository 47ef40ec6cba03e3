"""One construction of the episode's settings (`episode.EpisodeSamplingOptions`) for eval, mining's
chains and screen, and training in both modes, and the rollout's re-seeding of them.

Each expected value is written out from the rules every command had before they shared the builder
(the attempt's budget, temperature and stop strings; a reflection with its own budget and no stop
string; a retry like the attempt unless told otherwise), so that a change of the rules, or of what a
command passes them, shows here as the setting it changed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from r3.episode import EpisodeSampling, EpisodeSamplingOptions
from r3.evaluation.evaluate import EvalConfig
from r3.generation.base import SamplingConfig, completion_from_ids, derive_seed
from r3.mining.mine import MineConfig, chain_sampling, screen_sampling
from r3.tasks import get_task
from r3.training.dataset import build_prompts
from r3.training.rollout import R3Rollout, call_seed
from test_training_support import ToyTask, make_tokenizer, records, tiny_config

TASK = get_task("countdown")
STOP = ("</answer>",)


def test_the_task_has_a_stop_string() -> None:
    # The checks below tell the steps apart by their stop strings.
    assert TASK.stop == STOP


def test_the_options_default_to_the_attempt() -> None:
    built = EpisodeSamplingOptions(max_new_tokens=12, temperature=0.4, reflection_max_new_tokens=34).build(
        TASK
    )
    assert built == EpisodeSampling(
        attempt=SamplingConfig(max_new_tokens=12, temperature=0.4, stop=STOP),
        reflection=SamplingConfig(max_new_tokens=34, temperature=0.4, stop=()),
        retry=SamplingConfig(max_new_tokens=12, temperature=0.4, stop=STOP),
    )


def test_the_options_given_apply_to_their_step_only() -> None:
    built = EpisodeSamplingOptions(
        max_new_tokens=12,
        temperature=0.4,
        reflection_max_new_tokens=34,
        top_p=0.9,
        top_k=5,
        reflection_temperature=0.8,
        retry_temperature=0.0,
        retry_max_new_tokens=56,
        seed=7,
    ).build(TASK)
    shared = {"top_p": 0.9, "top_k": 5, "seed": 7}
    assert built == EpisodeSampling(
        attempt=SamplingConfig(max_new_tokens=12, temperature=0.4, stop=STOP, **shared),
        reflection=SamplingConfig(max_new_tokens=34, temperature=0.8, stop=(), **shared),
        retry=SamplingConfig(max_new_tokens=56, temperature=0.0, stop=STOP, **shared),
    )


def test_with_seed_reseeds_every_step_and_nothing_else() -> None:
    sampling = EpisodeSampling(
        attempt=SamplingConfig(max_new_tokens=1, seed=1),
        reflection=SamplingConfig(max_new_tokens=2, seed=2, logprobs=True),
        retry=SamplingConfig(max_new_tokens=3, seed=3, temperature=0.0),
    )
    assert sampling.with_seed(99) == EpisodeSampling(
        attempt=SamplingConfig(max_new_tokens=1, seed=99),
        reflection=SamplingConfig(max_new_tokens=2, seed=99, logprobs=True),
        retry=SamplingConfig(max_new_tokens=3, seed=99, temperature=0.0),
    )


@pytest.mark.parametrize(
    ("fields", "settings"),
    [
        ({}, dict(max_new_tokens=256, reflection=256, temperature=0.0, top_p=1.0, seed=0)),
        (
            dict(max_new_tokens=33, reflection_max_new_tokens=44, temperature=0.7, top_p=0.9, seed=5),
            dict(max_new_tokens=33, reflection=44, temperature=0.7, top_p=0.9, seed=5),
        ),
    ],
)
def test_eval_retries_like_its_attempt(fields: dict, settings: dict) -> None:
    # The paper's protocol: the second try is drawn like the first (greedy by default).
    s = settings
    attempt = SamplingConfig(s["max_new_tokens"], s["temperature"], s["top_p"], STOP, s["seed"])
    assert EvalConfig(**fields).sampling(TASK) == EpisodeSampling(
        attempt=attempt,
        reflection=SamplingConfig(s["reflection"], s["temperature"], s["top_p"], (), s["seed"]),
        retry=attempt,
    )


MINING = dict(
    max_new_tokens=33,
    reflection_max_new_tokens=44,
    temperature=0.7,
    top_p=0.9,
    seed=5,
    screen=3,
    screen_retry_temperature=0.2,
)


def test_mining_attempts_are_unseeded_until_their_query_round() -> None:
    # Each query's round gives its own seeds (`query_seed`); the parent seed stays 0.
    assert MineConfig(**MINING).sampling(TASK) == SamplingConfig(33, 0.7, 0.9, STOP, 0)


def test_mining_chains_retry_at_the_mining_temperature() -> None:
    seed = derive_seed(5, "mine-chain")
    # The chains never sample an attempt (`reflect_and_retry` reads the reflection and the retry only):
    # its parent seed, 0 before the shared builder, is now the chain seed with the other two steps'.
    assert chain_sampling(TASK, MineConfig(**MINING)) == EpisodeSampling(
        attempt=SamplingConfig(33, 0.7, 0.9, STOP, seed),
        reflection=SamplingConfig(44, 0.7, 0.9, (), seed),
        retry=SamplingConfig(33, 0.7, 0.9, STOP, seed),
    )


def test_the_screen_retries_at_its_own_temperature() -> None:
    seed = derive_seed(5, "mine-screen")
    # As for the chains, the attempt's settings are never sampled by the screen.
    assert screen_sampling(TASK, MineConfig(**MINING)) == EpisodeSampling(
        attempt=SamplingConfig(33, 0.7, 0.9, STOP, seed),
        reflection=SamplingConfig(44, 0.7, 0.9, (), seed),
        retry=SamplingConfig(33, 0.2, 0.9, STOP, seed),
    )


TRAINING = dict(
    attempt_max_new_tokens=11,
    attempt_temperature=0.3,
    retry_max_new_tokens=22,
    retry_temperature=0.5,
    temperature=0.8,
    top_p=0.95,
    top_k=7,
    max_completion_length=5,
)


def expected_training(mode: str) -> EpisodeSampling:
    """R3's reflection takes TRL's fields; grpo's attempt is TRL's completion, so takes them too."""
    stop = ToyTask.stop
    attempt = (5, 0.8) if mode == "grpo" else (11, 0.3)
    return EpisodeSampling(
        attempt=SamplingConfig(*attempt, 0.95, stop, 0, top_k=7),
        reflection=SamplingConfig(5, 0.8, 0.95, (), 0, top_k=7),
        retry=SamplingConfig(22, 0.5, 0.95, stop, 0, top_k=7),
    )


@pytest.mark.parametrize("mode", ["r3", "grpo"])
def test_training_retries_at_its_recipe_temperature(tmp_path: Path, mode: str) -> None:
    config = tiny_config(tmp_path, mode=mode, **TRAINING)
    assert config.episode_sampling(ToyTask()) == expected_training(mode)


def test_training_defaults(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, max_completion_length=4, retry_max_new_tokens=4, retry_temperature=0.0)
    assert config.episode_sampling(ToyTask()) == EpisodeSampling(
        attempt=SamplingConfig(256, 1.0, 1.0, ToyTask.stop, 0),
        reflection=SamplingConfig(4, 1.0, 1.0, (), 0),
        retry=SamplingConfig(4, 0.0, 1.0, ToyTask.stop, 0),
    )


@pytest.mark.parametrize("mode", ["r3", "grpo"])
def test_the_rollout_seeds_each_call_and_asks_logprobs_for_what_is_trained(tmp_path: Path, mode: str) -> None:
    tokenizer = make_tokenizer()
    seen: list[SamplingConfig] = []

    def engine(trainer, prompt_ids, sampling):
        seen.append(sampling.with_(seeds=None))  # the rows' own seeds are `episode.seeded`'s
        ids = tokenizer("A" if sampling.stop == () else "fail end", add_special_tokens=False)["input_ids"]
        return [completion_from_ids(tokenizer, ids, sampling) for _ in prompt_ids]

    first = "online" if mode == "grpo" else "stored"
    rows, index = build_prompts(records(), ToyTask(), tokenizer, first_attempt=first)
    sampling = tiny_config(tmp_path, mode=mode, **TRAINING).episode_sampling(ToyTask())
    rollout = R3Rollout(ToyTask(), index, sampling, engine=engine, mode=mode)
    trainer = SimpleNamespace(
        processing_class=tokenizer,
        args=SimpleNamespace(seed=3, num_generations=2, use_vllm=True),
        state=SimpleNamespace(global_step=4),
        accelerator=SimpleNamespace(process_index=0, num_processes=1),
    )
    rollout([row["prompt"] for row in rows[:2] for _ in range(2)], trainer)
    expected = expected_training(mode).with_seed(call_seed(3, 4, 0))
    if mode == "grpo":
        assert seen == [expected.attempt.with_(logprobs=True)]
    else:
        assert seen == [expected.reflection.with_(logprobs=True), expected.retry]
