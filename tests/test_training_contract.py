"""R3 on TRL 1.16's GRPOTrainer: the rollout_func contract, credit assignment, metrics, online mode, data.

All offline, tiny models built from random weights in the test (see test_training_support).
"""

from __future__ import annotations

import inspect
from collections import Counter

import pytest
import torch
import trl

from r3.errors import R3Error
from r3.generation.base import completion_from_ids
from r3.generation.chat import render_prompt
from r3.mining.records import FailedAttempt
from r3.training.dataset import build_prompts
from r3.training.rewards import group_signal, make_retry_success_reward, retry_success_rewards
from r3.training.rollout import ROLLOUT_FIELDS, R3Rollout
from r3.training.trainer import build_trainer
from test_training_support import (
    QUERIES,
    ToyTask,
    make_model,
    make_tokenizer,
    pretrain,
    records,
    reflection_text,
    tiny_config,
)

RETRY_ONLY_WORDS = ("good", "fail", "end", "retry")


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    pretrain(model, tokenizer)
    return tokenizer, {k: v.clone() for k, v in model.state_dict().items()}


def fresh(tiny):
    tokenizer, state = tiny
    model = make_model(tokenizer)
    model.load_state_dict(state)
    return model, tokenizer


# ----------------------------------------------------------------------------- pinned TRL surface


def test_pinned_trl_has_the_public_hooks_we_use():
    """If this fails after a TRL upgrade, re-read grpo_trainer.py: rollout_func and reward kwargs changed."""
    assert trl.__version__ == "1.16.0"
    params = inspect.signature(trl.GRPOTrainer.__init__).parameters
    assert "rollout_func" in params
    from trl.models import unwrap_model_for_generation  # noqa: F401  (used by the transformers engine)


# ----------------------------------------------------------------------------- rollout contract


def test_rollout_contract_prompts_repeated_one_completion_each_extras_reach_reward(tmp_path, tiny):
    model, tokenizer = fresh(tiny)
    seen_prompts: list[list[str]] = []
    seen_kwargs: list[dict] = []
    real_reward = make_retry_success_reward(4)

    def retry_success(completions, **kwargs):
        seen_kwargs.append(kwargs)
        return real_reward(completions, **kwargs)

    config = tiny_config(tmp_path, num_generations=4, per_device_train_batch_size=8, max_steps=2)
    trainer = build_trainer(
        config,
        model=model,
        tokenizer=tokenizer,
        task=ToyTask(),
        records=records(),
        reward_funcs=[retry_success],
    )
    rollout = trainer.rollout_func
    assert isinstance(rollout, R3Rollout)

    def spy(prompts, trainer_):
        seen_prompts.append(list(prompts))
        out = rollout(prompts, trainer_)
        assert len(out["prompt_ids"]) == len(out["completion_ids"]) == len(prompts)
        assert out["logprobs"] is None  # transformers engine: TRL recomputes them
        return out

    trainer.rollout_func = spy
    trainer.train()

    assert len(seen_prompts) == 2
    for prompts in seen_prompts:
        assert len(prompts) == config.generation_batch_size == 8
        groups = [prompts[i : i + 4] for i in range(0, 8, 4)]
        assert all(len(set(g)) == 1 for g in groups)  # each prompt arrives num_generations times, in a row
    # The rollout's extra fields reach the reward function as keyword arguments, one value per completion.
    kwargs = seen_kwargs[-1]
    for name in ROLLOUT_FIELDS:
        assert name in kwargs and len(kwargs[name]) == 8
    assert kwargs["retry_success"] == rollout.last.retry_success
    assert kwargs["retry_completion"] == rollout.last.retries
    assert {"query_index", "attempt_index", "log_metric", "trainer_state"} <= set(kwargs)
    # Metrics logged every step: TRL's and ours.
    rows = [r for r in trainer.state.log_history if "loss" in r]
    assert len(rows) == 2
    for key in (
        "reward",
        "rewards/retry_success/mean",
        "frac_reward_zero_std",
        "completions/mean_length",
        "r3/retry_success",
        "r3/groups_no_signal",
        "r3/reflection_length",
        "r3/retry_length",
    ):
        assert all(key in r for r in rows), key


def test_reflection_keeps_eos_and_retry_stops_at_the_task_stop_string(tmp_path, tiny):
    model, tokenizer = fresh(tiny)
    config = tiny_config(
        tmp_path, num_generations=4, per_device_train_batch_size=8, max_steps=1, retry_max_new_tokens=8
    )
    trainer = build_trainer(config, model=model, tokenizer=tokenizer, task=ToyTask(), records=records())
    trainer.train()
    batch = trainer.rollout_func.last
    eos = tokenizer.eos_token_id
    ended = [ids for ids in batch.reflection_ids if ids[-1] == eos]
    assert ended, "the pre-trained toy model ends its reflections with EOS"
    assert all(eos not in ids[:-1] for ids in batch.reflection_ids)
    for retry, ok, reflection in zip(batch.retries, batch.retry_success, batch.reflections, strict=True):
        assert retry.endswith("end") and retry.count("end") == 1  # cut at the stop string
        assert ok == (retry.split()[:1] == ["good"])
        assert reflection.strip() in ("A", "B")
    # The retry prompt is the task's retry chat with the sampled reflection in it.
    first = batch.retry_prompts[0]
    assert first == render_prompt(
        tokenizer,
        ToyTask().retry_prompt({"q": first.split()[1]}, batch.first_attempts[0], batch.reflections[0]),
    )


# ----------------------------------------------------------------------------- credit assignment


def test_loss_is_computed_on_reflection_tokens_only(tmp_path, tiny):
    """Capture the batch GRPOTrainer computes its loss on and show the retry never reaches it, the loss
    mask is exactly the reflection, and only reflection tokens are prediction targets (gradients)."""
    model, tokenizer = fresh(tiny)
    config = tiny_config(tmp_path, num_generations=4, per_device_train_batch_size=8, max_steps=1)
    trainer = build_trainer(config, model=model, tokenizer=tokenizer, task=ToyTask(), records=records())
    captured = []
    compute_loss = trainer.compute_loss

    def spy(model_, inputs, *args, **kwargs):
        captured.append({k: (v.clone() if torch.is_tensor(v) else v) for k, v in inputs.items()})
        return compute_loss(model_, inputs, *args, **kwargs)

    trainer.compute_loss = spy
    trainer.train()
    batch = trainer.rollout_func.last
    inputs = captured[0]
    prompt_ids, completion_ids = inputs["prompt_ids"], inputs["completion_ids"]
    mask = inputs["completion_mask"]

    # 1. The retry (and its instruction) never reaches the trainer's loss inputs.
    retry_ids = set(tokenizer.convert_tokens_to_ids(list(RETRY_ONLY_WORDS)))
    assert not retry_ids & set(prompt_ids.flatten().tolist())
    assert not retry_ids & set(completion_ids.flatten().tolist())
    # 2. The loss mask covers exactly the reflection tokens (TRL shuffles rows, so compare multisets).
    assert "tool_mask" not in inputs  # no env_mask: the whole completion is the reflection
    rows = [tuple(completion_ids[b][mask[b].bool()].tolist()) for b in range(len(mask))]
    assert Counter(rows) == Counter(tuple(ids) for ids in batch.reflection_ids)
    # 3. The first attempt sits in the prompt: each row's prompt is the reflection chat.
    prompts = [tuple(t for t in row.tolist() if t != tokenizer.pad_token_id) for row in prompt_ids]
    assert Counter(prompts) == Counter(tuple(p) for p in batch.reflection_prompt_ids)

    # 4. Gradients: only positions that predict a reflection token receive any gradient from the loss.
    inputs["advantages"] = torch.ones_like(inputs["advantages"])  # make every reflection token count
    hidden = {}

    def keep(module, args, output):
        output.retain_grad()
        hidden["h"] = output

    handle = model.model.norm.register_forward_hook(keep)
    try:
        model.zero_grad()
        loss = compute_loss(model, inputs)
        loss.backward()
    finally:
        handle.remove()
    grad = hidden["h"].grad.abs().sum(-1)  # (B, P + C)
    width = prompt_ids.size(1)
    expected = torch.zeros_like(grad, dtype=torch.bool)
    expected[:, width - 1 : width - 1 + mask.size(1)] = mask.bool()  # position t predicts token t + 1
    assert torch.equal(grad > 0, expected)


# ----------------------------------------------------------------------------- online first attempts


def scripted_engine(tokenizer):
    """A fake generator: first attempts for q0 succeed, reflections are 'A', retries 'good end'."""
    eos = tokenizer.eos_token_id

    def engine(trainer, prompt_ids, sampling):
        out = []
        for ids in prompt_ids:
            words = tokenizer.convert_ids_to_tokens(ids)
            if words[-2] == "retry":
                text = "good end"
            elif words[-2] == "reflect":
                text = "A"
            else:
                text = "good end" if words[1] == "q0" else "x"
            ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [eos]
            out.append(completion_from_ids(tokenizer, ids, sampling))
        return out

    return engine


def test_online_first_attempt_solved_groups_carry_no_gradient(tmp_path, tiny):
    model, tokenizer = fresh(tiny)
    config = tiny_config(
        tmp_path, num_generations=4, per_device_train_batch_size=16, max_steps=1, first_attempt="online"
    )
    trainer = build_trainer(
        config,
        model=model,
        tokenizer=tokenizer,
        task=ToyTask(),
        records=records(),
        engine=scripted_engine(tokenizer),
    )
    assert len(trainer.train_dataset) == len(QUERIES)  # online: one prompt per query
    trainer.train()
    batch = trainer.rollout_func.last
    eos = tokenizer.eos_token_id
    for prompt, solved, ids, ok, attempt in zip(
        batch.prompts,
        batch.first_attempt_solved,
        batch.reflection_ids,
        batch.retry_success,
        batch.first_attempts,
        strict=True,
    ):
        is_q0 = prompt.split()[1] == "q0"
        assert solved == is_q0
        if solved:  # nothing to reflect on: a one-token completion and an unscorable reward
            assert ids == [eos] and ok is None and attempt == "good end"
        else:
            assert ok is True and attempt == "x"
    row = next(r for r in trainer.state.log_history if "reward" in r)
    assert row["r3/first_attempt_solved"] == pytest.approx(0.25)
    assert row["reward"] == pytest.approx(1.0)  # solved groups are left out, not counted as failures


# ----------------------------------------------------------------------------- data and rewards


def test_one_prompt_per_failed_attempt_rendered_like_eval():
    tokenizer = make_tokenizer()
    recs = records()
    recs[0].failed_attempts.append(FailedAttempt.of(recs[0].example, "y", "again"))
    rows, index = build_prompts(recs, ToyTask(), tokenizer)
    assert len(rows) == len(QUERIES) + 1
    assert rows[0]["prompt"] == reflection_text(tokenizer, "q0", "x")
    assert rows[1]["prompt"] == reflection_text(tokenizer, "q0", "y")
    assert (rows[1]["query_index"], rows[1]["attempt_index"]) == (0, 1)
    assert index[rows[1]["prompt"]].attempt == "y"
    rows, _ = build_prompts(recs, ToyTask(), tokenizer, max_attempts_per_query=1)
    assert len(rows) == len(QUERIES)
    with pytest.raises(R3Error):
        index["never seen"]


def test_reward_values_and_group_signal():
    assert retry_success_rewards([True, False, None]) == [1.0, 0.0, None]
    signal = group_signal([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, None, None], 2)
    assert signal == {
        "groups_no_signal": 2 / 3,
        "groups_with_signal": 1 / 3,
        "groups_all_success": 1 / 3,
        "groups_all_failure": 1 / 3,
    }
    logged = {}
    reward = make_retry_success_reward(2)
    out = reward(
        [None] * 4,
        retry_success=[True, False, True, True],
        reflection_length=[3, 5, 2, 2],
        retry_length=[4, 4, 4, 4],
        retry_clipped=[False] * 4,
        first_attempt_solved=[False] * 4,
        log_metric=logged.__setitem__,
    )
    assert out == [1.0, 0.0, 1.0, 1.0]
    assert logged["r3/retry_success"] == 0.75 and logged["r3/groups_no_signal"] == 0.5
    assert logged["r3/reflection_length"] == 3.0
    # The mixed group [1, 0] with lengths [3, 5]: advantages +-0.5 / (sample std 0.707 + 1e-4); the longer
    # failure outweighs the success token by token: A * (3 - 5) / 8 on balance.
    advantage = 0.5 / (0.5**0.5 + 1e-4)
    assert logged["r3/advantage_token_balance"] == pytest.approx(advantage * (3 - 5) / 8)
    assert reward.__name__ == "retry_success"  # TRL logs it as rewards/retry_success/mean
