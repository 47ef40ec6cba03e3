"""Rewards by name: the R3 reward, the shuffled control, user functions, and bad names."""

from __future__ import annotations

import random
import sys
import types

import pytest

from r3.errors import R3Error
from r3.training.rewards import resolve_rewards, shuffle_within_groups


def test_shuffle_keeps_each_groups_values_and_moves_them_within_the_group() -> None:
    rewards = [1.0, 0.0, 0.0, 0.0] + [1.0, 1.0, 0.0, 0.0] + [None, 1.0, 0.0, 1.0]
    rng = random.Random(0)
    seen_moved = False
    for _ in range(50):
        out = shuffle_within_groups(rewards, 4, rng)
        for start in range(0, 12, 4):
            before, after = rewards[start : start + 4], out[start : start + 4]
            assert sorted(after, key=str) == sorted(before, key=str)  # same multiset per group
        assert out[8] is None  # unscored rollouts stay unscored
        seen_moved |= out[:4] != rewards[:4]
    assert seen_moved  # the link between a rollout and its reward is broken


def test_shuffle_refuses_partial_groups() -> None:
    with pytest.raises(R3Error, match="whole groups"):
        shuffle_within_groups([1.0, 0.0, 1.0], 2, random.Random(0))


def test_resolve_builtin_and_user_rewards(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("my_rewards")
    module.short = lambda completions, **kw: [1.0 / (1 + len(c)) for c in completions]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_rewards", module)
    real, control, user = resolve_rewards(["retry_success", "retry_success_shuffled", "my_rewards:short"], 2)
    success = [True, False, False, True]
    assert real(["a"] * 4, retry_success=success) == [1.0, 0.0, 0.0, 1.0]
    shuffled = control(["a"] * 4, retry_success=success)
    assert sorted(shuffled[:2]) == [0.0, 1.0] and sorted(shuffled[2:]) == [0.0, 1.0]
    assert user(["ab"], retry_success=[True]) == [1.0 / 3]


@pytest.mark.parametrize("name", ["nope", "no_such_module_xyz:f", "r3.training.rewards:NOPE"])
def test_bad_reward_names_are_clear_errors(name: str) -> None:
    with pytest.raises(R3Error, match="reward"):
        resolve_rewards([name], 2)


def test_config_checks_names_and_defaults_to_r3s_reward(tmp_path) -> None:
    from r3.training.config import R3Config

    assert R3Config(output_dir=str(tmp_path), use_cpu=True).reward_funcs == ["retry_success"]
    with pytest.raises(R3Error, match="unknown reward"):
        R3Config(output_dir=str(tmp_path), use_cpu=True, reward_funcs=["retry_succes"])


def test_min_successes_keeps_queries_the_model_sometimes_solves(tmp_path) -> None:
    """Training-set selection: a group on a query never solved while mining rarely has signal."""
    import json

    from r3.mining.records import FailedAttempt, FailureRecord
    from r3.tasks import get_task
    from r3.training.config import R3Config
    from r3.training.trainer import load_records

    task = get_task("countdown")
    path = tmp_path / "failures.jsonl"
    example = {"nums": [1, 2, 3], "target": 6}
    rows = [
        FailureRecord("countdown", i, example, [FailedAttempt.of(example, "x", "r")], 8, s)
        for i, s in enumerate([0, 3, 1, 0])
    ]
    path.write_text("".join(json.dumps(r.to_json(task)) + "\n" for r in rows))

    def config(**kw):
        return R3Config(output_dir=str(tmp_path / "o"), use_cpu=True, failures=str(path), **kw)

    assert [r.query_index for r in load_records(config(), task)] == [0, 1, 2, 3]
    assert [r.query_index for r in load_records(config(min_successes=1), task)] == [1, 2]
    assert [r.query_index for r in load_records(config(min_successes=2), task)] == [1]
    with pytest.raises(R3Error, match="min_successes"):
        load_records(config(min_successes=4), task)
