"""Reward functions with TRL's reward signature, and R3's per-step metrics (`r3/...`, docs/training.md).

TRL calls `f(prompts=, completions=, completion_ids=, **kwargs)`; kwargs hold the dataset columns, the
rollout's extra fields (`rollout.MODE_FIELDS`) and TRL's `log_metric` / `log_extra`.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence
from statistics import mean, stdev
from typing import Any

from r3.errors import R3Error
from r3.generation.base import derive_seed

RewardFunc = Callable[..., list[float | None]]


def retry_success_rewards(retry_success: Sequence[bool | None]) -> list[float | None]:
    """1.0 when the retry succeeded, 0.0 when it failed, None when there is nothing to score."""
    return [None if ok is None else float(bool(ok)) for ok in retry_success]


def group_signal(rewards: Sequence[float | None], num_generations: int) -> dict[str, float]:
    """Fractions of complete, scored groups (consecutive `num_generations` rewards) by kind of signal."""
    if num_generations < 1 or len(rewards) % num_generations:
        return {}
    groups = [rewards[i : i + num_generations] for i in range(0, len(rewards), num_generations)]
    scored = [g for g in groups if all(r is not None for r in g)]
    if not scored:
        return {}
    all_one = sum(1 for g in scored if all(r == 1.0 for r in g))
    all_zero = sum(1 for g in scored if all(r == 0.0 for r in g))
    no_signal = sum(1 for g in scored if len(set(g)) == 1)
    return {
        "groups_no_signal": no_signal / len(scored),
        "groups_with_signal": (len(scored) - no_signal) / len(scored),
        "groups_all_success": all_one / len(scored),
        "groups_all_failure": all_zero / len(scored),
    }


def advantage_token_balance(
    rewards: Sequence[float | None], lengths: Sequence[int], num_generations: int
) -> float | None:
    """Mean over groups with signal of sum(A_i * len_i) / sum(len_i), A normalised per group as TRL does
    (sample std); None when no group has signal. A token-level loss (TRL's default `dapo`) weights each
    advantage by its length: below 0, longer failures push the group's tokens down on balance."""
    if num_generations < 2 or len(rewards) % num_generations or len(lengths) != len(rewards):
        return None
    balances = []
    for start in range(0, len(rewards), num_generations):
        group = rewards[start : start + num_generations]
        if any(r is None for r in group) or len(set(group)) < 2:
            continue
        values = [float(r) for r in group]  # type: ignore[arg-type]
        mu, sd = mean(values), stdev(values)
        sizes = lengths[start : start + num_generations]
        advantages = [(v - mu) / (sd + 1e-4) for v in values]
        if sum(sizes):
            balances.append(sum(a * n for a, n in zip(advantages, sizes, strict=True)) / sum(sizes))
    return mean(balances) if balances else None


def rollout_metrics(
    rewards: Sequence[float | None], fields: dict[str, Any], num_generations: int, outcome: str
) -> dict[str, float]:
    """The `r3/...` metrics of one batch of rollouts (`outcome`: the name of what the reward scores)."""
    metrics: dict[str, float] = {}
    scored = [r for r in rewards if r is not None]
    if scored:
        metrics[outcome] = mean(scored)
    metrics.update(group_signal(rewards, num_generations))
    lengths = fields.get("reflection_length") or fields.get("attempt_length")
    if lengths:
        balance = advantage_token_balance(rewards, lengths, num_generations)
        if balance is not None:
            metrics["advantage_token_balance"] = balance
    drawn = fields.get("groups_drawn")
    if drawn:
        metrics["groups_drawn"] = float(drawn[0])
        if drawn[0] and fields.get("groups_drawn_with_signal"):
            metrics["groups_with_signal_drawn"] = fields["groups_drawn_with_signal"][0] / drawn[0]
    if fields.get("groups_resampled"):
        metrics["resampled_groups"] = float(fields["groups_resampled"][0])
    if fields.get("reflection_length"):
        metrics["reflection_length"] = mean(fields["reflection_length"])
    live = [i for i, r in enumerate(rewards) if r is not None]
    for name in ("retry_length", "retry_clipped"):  # over the scored rows only
        if live and fields.get(name):
            metrics[name] = mean(float(fields[name][i]) for i in live)
    if fields.get("first_attempt_solved"):
        metrics["first_attempt_solved"] = mean(float(x) for x in fields["first_attempt_solved"])
    return {f"r3/{k}": float(v) for k, v in metrics.items()}


def outcome_reward(outcome: str, num_generations: int, log_retries: bool = False) -> RewardFunc:
    """The reward named `outcome`: 1.0 where the rollout's `outcome` field is true, 0.0 where false, None
    where nothing was scored. It logs `rollout_metrics` (`combined_metrics` for `turn_success`) and, with
    `log_retries`, the retries beside TRL's completion logs."""

    def reward(completions: list[Any], **kwargs: Any) -> list[float | None]:
        rewards = retry_success_rewards(kwargs[outcome])
        log_metric = kwargs.get("log_metric")
        if log_metric is not None:
            if outcome == "turn_success":
                metrics = combined_metrics(rewards, kwargs, num_generations)
            else:
                metrics = rollout_metrics(rewards, kwargs, num_generations, outcome)
            for name, value in metrics.items():
                log_metric(name, value)
        log_extra = kwargs.get("log_extra")
        if log_retries and log_extra is not None and "retry_completion" in kwargs:
            log_extra("retry", list(kwargs["retry_completion"]))
        return rewards

    reward.__name__ = reward.__qualname__ = outcome  # TRL logs it as rewards/<outcome>/mean
    return reward


def make_retry_success_reward(num_generations: int, log_retries: bool = True) -> RewardFunc:
    """The R3 reward: 1 if the retry (generated with the reflection in context) succeeds, else 0."""
    return outcome_reward("retry_success", num_generations, log_retries)


#: The per-call counts the rollout repeats on every row (whole-batch numbers, not per-row values).
CALL_COUNTS = ("groups_drawn", "groups_drawn_with_signal", "groups_resampled")


def combined_metrics(
    rewards: Sequence[float | None], fields: dict[str, Any], num_generations: int
) -> dict[str, float]:
    """Combined mode's `r3/...` metrics: the group signal over all groups, and each kind's outcome,
    signal and lengths over its own (whole) groups."""
    kinds = fields.get("turn_kind") or []
    counts = {name: fields[name] for name in CALL_COUNTS if name in fields}
    metrics = rollout_metrics(rewards, counts, num_generations, "turn_success")
    for kind, outcome, length in (
        ("attempt", "attempt_success", "attempt_length"),
        ("reflection", "retry_success", "reflection_length"),
    ):
        rows = [i for i, k in enumerate(kinds) if k == kind]
        if not rows:
            continue
        own: dict[str, Any] = {
            name: [values[i] for i in rows]
            for name, values in fields.items()
            if name not in CALL_COUNTS and isinstance(values, list | tuple) and len(values) == len(rewards)
        }
        own[length] = own.pop("completion_length", [])
        if kind == "attempt":  # an attempt group has no retry: its empty retry fields are not lengths
            for name in ("retry_length", "retry_clipped", "first_attempt_solved"):
                own.pop(name, None)
        sub = rollout_metrics([rewards[i] for i in rows], own, num_generations, outcome)
        for name, value in sub.items():
            if name == "r3/groups_with_signal":
                metrics[f"r3/{kind}_groups_with_signal"] = value
            elif not name.startswith("r3/groups_") and name != "r3/advantage_token_balance":
                metrics[name] = value
    return metrics


def shuffle_within_groups(
    rewards: Sequence[float | None],
    num_generations: int,
    rng: random.Random | None = None,
    group_seeds: Sequence[int] | None = None,
) -> list[float | None]:
    """`rewards` with each group's scored values permuted, by `random.Random(group_seeds[first row])`
    when given, else by `rng`: the control, same rewards and compute but no link between a reflection
    and its own retry's outcome."""
    if num_generations < 1 or len(rewards) % num_generations:
        raise R3Error(
            f"cannot shuffle {len(rewards)} rewards in groups of {num_generations}: each process must hold "
            "whole groups (per_device_train_batch_size * steps_per_generation a multiple of num_generations)"
        )
    if rng is None and group_seeds is None:
        raise R3Error("shuffle_within_groups needs an rng or the groups' seeds")
    out = list(rewards)
    for start in range(0, len(out), num_generations):
        live = [i for i in range(start, start + num_generations) if out[i] is not None]
        values = [out[i] for i in live]
        (random.Random(group_seeds[start]) if group_seeds is not None else rng).shuffle(values)  # type: ignore[union-attr]
        for i, value in zip(live, values, strict=True):
            out[i] = value
    return out


def make_shuffled_retry_success_reward(num_generations: int, seed: int = 0) -> RewardFunc:
    """The control: retry-success rewards shuffled within each group by the rollout's `group_seed` (so
    a resumed or multi-process run is the same control), else by `seed` and the step. It logs the true
    retry success."""
    real = make_retry_success_reward(num_generations)

    def retry_success_shuffled(completions: list[Any], **kwargs: Any) -> list[float | None]:
        rewards = real(completions, **kwargs)
        seeds = kwargs.get("group_seed")
        if seeds is not None and len(seeds) == len(rewards):
            return shuffle_within_groups(rewards, num_generations, group_seeds=seeds)
        step = getattr(kwargs.get("trainer_state"), "global_step", 0)
        rng = random.Random(derive_seed(seed, "shuffle", step))
        return shuffle_within_groups(rewards, num_generations, rng)

    return retry_success_shuffled


#: Built-in rewards by name (`reward_funcs` in the training config): name -> factory(num_generations, seed).
BUILTIN_REWARDS: dict[str, Callable[[int, int], RewardFunc]] = {
    "retry_success": lambda num_generations, seed: make_retry_success_reward(num_generations),
    "retry_success_shuffled": make_shuffled_retry_success_reward,
    "attempt_success": lambda num_generations, seed: outcome_reward("attempt_success", num_generations),
    "turn_success": lambda num_generations, seed: outcome_reward("turn_success", num_generations),
}

#: The built-in rewards each training mode can use (`R3Config.mode`), its default first.
MODE_REWARDS = {
    "r3": ("retry_success", "retry_success_shuffled"),
    "grpo": ("attempt_success",),
    "combined": ("turn_success",),
}


def resolve_rewards(names: Sequence[str], num_generations: int, seed: int = 0) -> list[RewardFunc]:
    """Reward functions from names: a built-in (`BUILTIN_REWARDS`) or `pkg.module:function` with TRL's
    reward signature (it receives the rollout's fields, e.g. `retry_success`)."""
    funcs: list[RewardFunc] = []
    for name in names:
        if name in BUILTIN_REWARDS:
            funcs.append(BUILTIN_REWARDS[name](num_generations, seed))
            continue
        module_name, sep, attr = name.partition(":")
        if not sep or not module_name or not attr:
            known = ", ".join(BUILTIN_REWARDS)
            raise R3Error(f"unknown reward '{name}': use one of {known}, or pkg.module:function")
        try:
            func = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise R3Error(f"reward '{name}': cannot import it ({exc})") from None
        if not callable(func):
            raise R3Error(f"reward '{name}' is not a function")
        funcs.append(func)
    if not funcs:
        raise R3Error("reward_funcs is empty: name at least one reward")
    return funcs
