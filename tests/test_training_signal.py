"""Training where there is signal: dynamic sampling, plain GRPO mode, the shuffled control's seeds,
and the learnable selection of screened failures.

A scripted engine decides each retry's outcome from the query and the row's own seed, so which groups
have signal is known in advance. Nothing is downloaded.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import pytest

from r3.errors import R3Error
from r3.generation.base import completion_from_ids, request_seeds
from r3.mining.records import FailedAttempt, FailureRecord, Screen
from r3.training.dataset import build_prompts
from r3.training.rewards import make_shuffled_retry_success_reward, shuffle_within_groups
from r3.training.rollout import R3Rollout, has_signal
from r3.training.trainer import build_trainer
from test_training_support import (
    QUERIES,
    ToyTask,
    make_model,
    make_tokenizer,
    records,
    tiny_config,
    toy_trainer,
)

GROUP = 4
#: The retry's outcome by query: always, never, or by the row's seed (mixed groups).
OUTCOME = {"q0": "always", "q1": "seed", "q2": "seed", "q3": "never"}


def scripted_engine(tokenizer, outcome=OUTCOME, calls=None):
    """Reflections 'A'; a retry succeeds by `outcome[query]` ('seed': by the parity of its row seed)."""
    eos = tokenizer.eos_token_id

    def engine(trainer, prompt_ids, sampling):
        if calls is not None:
            calls.append(len(prompt_ids))
        out = []
        for ids, seed in zip(prompt_ids, request_seeds(sampling, len(prompt_ids)), strict=True):
            words = tokenizer.convert_ids_to_tokens(ids)
            if words[-2] == "reflect":
                text = "A"
            else:
                rule = outcome[words[1]]
                good = rule == "always" or (rule == "seed" and seed % 2 == 0)
                text = "good end" if good else "fail end"
            out.append(
                completion_from_ids(
                    tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"] + [eos], sampling
                )
            )
        return out

    return engine


def fake_trainer(tokenizer, step=0, process=0, processes=1):
    return SimpleNamespace(
        processing_class=tokenizer,
        args=SimpleNamespace(seed=0, num_generations=GROUP, use_vllm=False),
        state=SimpleNamespace(global_step=step),
        accelerator=SimpleNamespace(process_index=process, num_processes=processes),
    )


def rollout_for(tokenizer, rounds, outcome=OUTCOME, calls=None):
    from r3.episode import EpisodeSampling
    from r3.generation.base import SamplingConfig

    rows, index = build_prompts(records(), ToyTask(), tokenizer)
    sampled = SamplingConfig(max_new_tokens=4, temperature=1.0)
    sampling = EpisodeSampling(sampled, sampled, sampled.with_(stop=ToyTask.stop))
    rollout = R3Rollout(
        ToyTask(),
        index,
        sampling,
        engine=scripted_engine(tokenizer, outcome, calls),
        dynamic_sampling_rounds=rounds,
    )
    prompts = [row["prompt"] for row in rows for _ in range(GROUP)]
    return rollout, prompts


def groups_of(values):
    return [values[i : i + GROUP] for i in range(0, len(values), GROUP)]


def test_dynamic_sampling_replaces_groups_without_signal():
    tokenizer = make_tokenizer()
    plain, prompts = rollout_for(tokenizer, rounds=0)
    out = plain(prompts, fake_trainer(tokenizer))
    signal = [has_signal(g) for g in groups_of(out["retry_success"])]
    assert signal.count(False) >= 2  # q0 (all succeed) and q3 (all fail) have none
    assert plain.last.resampled_groups == 0

    dynamic, prompts = rollout_for(tokenizer, rounds=10)
    out = dynamic(prompts, fake_trainer(tokenizer))
    assert all(has_signal(g) for g in groups_of(out["retry_success"]))
    assert dynamic.last.resampled_groups >= 2
    assert dynamic.last.drawn_groups == len(QUERIES) + dynamic.last.resampled_groups
    # A replacement is a whole group on one prompt from the pool, and its tokens are that prompt's.
    for group, ids in zip(groups_of(dynamic.last.prompts), groups_of(out["prompt_ids"]), strict=True):
        assert len(set(group)) == 1 and group[0].split()[1] in ("q1", "q2")
        assert ids[0] == tokenizer(group[0], add_special_tokens=False)["input_ids"]
    assert len(out["completion_ids"]) == len(prompts)


def test_dynamic_sampling_tries_are_bounded():
    tokenizer = make_tokenizer()
    calls: list[int] = []
    never = dict.fromkeys(QUERIES, "never")
    rollout, prompts = rollout_for(tokenizer, rounds=3, outcome=never, calls=calls)
    out = rollout(prompts, fake_trainer(tokenizer))
    assert len(calls) == 2 * (1 + 3)  # a reflection and a retry call, the first time and at each try
    assert rollout.last.resampled_groups == 3 * len(QUERIES)
    assert out["retry_success"] == [False] * len(prompts)  # trained as they are: zero advantage


def test_dynamic_sampling_draws_the_same_groups_on_resume_and_others_per_process():
    tokenizer = make_tokenizer()
    runs = []
    for process in (0, 0, 1):
        rollout, prompts = rollout_for(tokenizer, rounds=10)
        runs.append(rollout(prompts, fake_trainer(tokenizer, step=7, process=process)))
    assert runs[0] == runs[1]  # the same step and process: exactly the same groups and rows
    assert runs[0]["group_seed"] != runs[2]["group_seed"]


def test_only_groups_with_signal_reach_the_loss(tmp_path):
    """Through TRL: with dynamic sampling every row the loss sees has a nonzero advantage."""
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    config = tiny_config(
        tmp_path,
        num_generations=GROUP,
        per_device_train_batch_size=8,
        max_steps=2,
        dynamic_sampling_rounds=10,
    )
    trainer = build_trainer(
        config,
        model=model,
        tokenizer=tokenizer,
        task=ToyTask(),
        records=records(),
        engine=scripted_engine(tokenizer),
    )
    captured = []
    compute_loss = trainer.compute_loss

    def spy(model_, inputs, *args, **kwargs):
        captured.append(inputs["advantages"].clone())
        return compute_loss(model_, inputs, *args, **kwargs)

    trainer.compute_loss = spy
    trainer.train()
    assert len(captured) == 2
    assert all(bool((adv.abs() > 0).all()) for adv in captured)
    rows = [r for r in trainer.state.log_history if "r3/groups_with_signal" in r]
    assert rows and all(r["r3/groups_with_signal"] == 1.0 for r in rows)
    assert all("r3/resampled_groups" in r and "r3/groups_with_signal_drawn" in r for r in rows)


def test_grpo_mode_trains_first_attempts_rewarded_by_the_verifier(tmp_path):
    tokenizer = make_tokenizer()
    model = make_model(tokenizer)
    seen = []

    def attempt_success(completions, attempt_success, attempt_completion, **kwargs):
        seen.append((list(attempt_success), list(attempt_completion), list(kwargs["group_seed"])))
        return [float(ok) for ok in attempt_success]

    config = tiny_config(
        tmp_path, mode="grpo", num_generations=GROUP, per_device_train_batch_size=8, max_steps=1
    )
    assert config.reward_funcs == ["attempt_success"]
    trainer = build_trainer(
        config,
        model=model,
        tokenizer=tokenizer,
        task=ToyTask(),
        records=records(),
        reward_funcs=[attempt_success],
    )
    assert len(trainer.train_dataset) == len(QUERIES)  # one task prompt per query
    trainer.train()
    batch = trainer.rollout_func.last
    task = ToyTask()
    for prompt, ids in zip(batch.prompts, batch.reflection_prompt_ids, strict=True):
        # The prompt is the task prompt itself: no failed attempt, no reflection instruction.
        assert ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert "reflect" not in tokenizer.convert_ids_to_tokens(ids)
    success, texts, _ = seen[0]
    assert success == [
        task.verify({"q": p.split()[1]}, t).ok for p, t in zip(batch.prompts, texts, strict=True)
    ]
    assert texts == batch.reflections  # the completion trained on is the attempt itself
    assert batch.retry_prompts == [None] * len(texts)  # no reflection, no retry


def test_grpo_mode_refuses_r3_rewards(tmp_path):
    with pytest.raises(R3Error, match="does not score mode 'grpo'"):
        tiny_config(tmp_path, mode="grpo", reward_funcs=["retry_success_shuffled"])
    with pytest.raises(R3Error, match="does not score mode 'r3'"):
        tiny_config(tmp_path, reward_funcs=["attempt_success"])


def test_shuffled_control_is_seeded_by_step_process_and_group():
    tokenizer = make_tokenizer()
    control = make_shuffled_retry_success_reward(GROUP)
    outputs = {}
    for process in (0, 0, 1):
        rollout, prompts = rollout_for(tokenizer, rounds=0, outcome=dict.fromkeys(QUERIES, "seed"))
        out = rollout(prompts, fake_trainer(tokenizer, step=5, process=process))
        outputs.setdefault(process, []).append(out)
    first, again = outputs[0]
    kwargs = {k: v for k, v in first.items() if k not in ("prompt_ids", "completion_ids", "logprobs")}
    shuffled = control([None] * len(first["retry_success"]), **kwargs)
    # After a resume the same step and process give the same group seeds, hence the same permutation.
    assert again["group_seed"] == first["group_seed"]
    kwargs_again = {k: v for k, v in again.items() if k not in ("prompt_ids", "completion_ids", "logprobs")}
    assert control([None] * len(shuffled), **kwargs_again) == shuffled
    # Another process: other seeds. Each group keeps its multiset of rewards.
    assert outputs[1][0]["group_seed"] != first["group_seed"]
    real = [float(x) for x in first["retry_success"]]
    for before, after in zip(groups_of(real), groups_of(shuffled), strict=True):
        assert sorted(before) == sorted(after)
    # Permutations by group seed: equal seeds, equal permutations; over many seeds, rows do move.
    values = [1.0, 0.0, 0.0, 0.0]
    assert shuffle_within_groups(values, 4, group_seeds=[11] * 4) == shuffle_within_groups(
        values, 4, group_seeds=[11] * 4
    )
    moved = Counter(tuple(shuffle_within_groups(values, 4, group_seeds=[s] * 4)) for s in range(40))
    assert len(moved) == 4


def test_learnable_selection_keeps_attempts_with_mixed_screened_retries(tmp_path):
    from r3.tasks import get_task
    from r3.training.config import R3Config
    from r3.training.trainer import load_records

    task = get_task("countdown")
    path = tmp_path / "failures.jsonl"

    examples = [{"nums": [1, 2, n], "target": n + 3} for n in (3, 4, 5)]

    def attempt(query, successes, samples=4):
        return FailedAttempt.of(examples[query], "x", "r", screen=Screen(samples, successes, 0.0))

    rows = [
        FailureRecord("countdown", 0, examples[0], [attempt(0, 0), attempt(0, 2)], 8, 1),
        FailureRecord("countdown", 1, examples[1], [attempt(1, 4)], 8, 1),
        FailureRecord("countdown", 2, examples[2], [attempt(2, 1), attempt(2, 3)], 8, 1),
    ]
    path.write_text("".join(json.dumps(r.to_json(task)) + "\n" for r in rows))

    def config(**kw):
        return R3Config(output_dir=str(tmp_path / "o"), use_cpu=True, failures=str(path), **kw)

    kept = load_records(config(selection="learnable"), task)
    assert [(r.query_index, len(r.failed_attempts)) for r in kept] == [(0, 1), (2, 2)]
    assert [a.screen.successes for a in kept[0].failed_attempts if a.screen] == [2]
    assert len(load_records(config(), task)) == 3
    unscreened = tmp_path / "plain.jsonl"
    plain = FailureRecord("countdown", 0, examples[0], [FailedAttempt.of(examples[0], "x", "r")], 8, 1)
    unscreened.write_text(json.dumps(plain.to_json(task)) + "\n")
    with pytest.raises(R3Error, match="screen"):
        load_records(
            R3Config(
                output_dir=str(tmp_path / "o"), use_cpu=True, failures=str(unscreened), selection="learnable"
            ),
            task,
        )


def screened_toy_failures(path, retry_temperature):
    """The toy queries' failures, each attempt screened by 4 retries at `retry_temperature`: q1 and q2
    with mixed outcomes (learnable), q0 always and q3 never solved."""
    successes = {"q0": 4, "q1": 2, "q2": 1, "q3": 0}
    rows = []
    for r in records():
        screen = Screen(4, successes[r.example["q"]], retry_temperature)
        rows.append(
            FailureRecord(
                r.task, r.query_index, r.example, [replace(r.failed_attempts[0], screen=screen)], 4, 0
            )
        )
    path.write_text("".join(json.dumps(r.to_json(ToyTask())) + "\n" for r in rows))
    return path


def test_learnable_selection_trains_on_a_screen_at_its_retry_temperature(tmp_path):
    """Screened at training's retry temperature: the learnable attempts are selected and trained on."""
    tokenizer = make_tokenizer()
    failures = screened_toy_failures(tmp_path / "failures.jsonl", 0.5)
    config = tiny_config(
        tmp_path,
        num_generations=GROUP,
        per_device_train_batch_size=8,
        max_steps=1,
        failures=str(failures),
        selection="learnable",
        retry_temperature=0.5,
    )
    trainer = toy_trainer(config, tokenizer, records=None, engine=scripted_engine(tokenizer))
    trainer.train()
    assert trainer.state.global_step == 1
    assert {p.split()[1] for p in trainer.rollout_func.last.prompts} == {"q1", "q2"}


def test_learnable_selection_refuses_a_screen_at_another_retry_temperature(tmp_path):
    """A screen's counts predict training's groups only at training's retry temperature: a mismatch is
    one line naming both values and the settings that fix it."""
    from r3.training.trainer import load_records

    failures = screened_toy_failures(tmp_path / "failures.jsonl", 1.0)
    config = tiny_config(tmp_path, failures=str(failures), selection="learnable", retry_temperature=0.0)
    with pytest.raises(R3Error) as refused:
        load_records(config, ToyTask())
    said = str(refused.value)
    assert "\n" not in said
    assert "temperature 1.0" in said and "retry_temperature 0.0" in said
    assert "--retry_temperature 1.0" in said and "--screen-retry-temperature 0.0" in said
    # `selection: all` reads the same file: the screen decides nothing there.
    assert len(load_records(tiny_config(tmp_path, failures=str(failures)), ToyTask())) == len(QUERIES)


def test_a_resumed_run_draws_the_groups_of_the_uninterrupted_one(tmp_path):
    """Train 3 steps with a checkpoint each step; resume a fresh trainer from step 1: its steps 2 and 3
    sample exactly the groups (replacements included) of the uninterrupted run."""
    tokenizer = make_tokenizer()

    def run(folder, max_steps, resume=None):
        config = tiny_config(
            folder,
            num_generations=GROUP,
            per_device_train_batch_size=8,
            max_steps=max_steps,
            dynamic_sampling_rounds=10,
            save_strategy="steps",
            save_steps=1,
        )
        trainer = toy_trainer(config, tokenizer, engine=scripted_engine(tokenizer))
        seen = []
        rollout = trainer.rollout_func

        def spy(prompts, trainer_):
            out = rollout(prompts, trainer_)
            seen.append((trainer_.state.global_step, list(rollout.last.prompts), list(out["retry_success"])))
            return out

        trainer.rollout_func = spy
        trainer.train(resume_from_checkpoint=resume)
        return seen

    whole = run(tmp_path / "a", 3)
    resumed = run(tmp_path / "a", 3, resume=str(tmp_path / "a" / "out" / "checkpoint-1"))
    assert [s[0] for s in whole] == [0, 1, 2] and [s[0] for s in resumed] == [1, 2]
    assert resumed == whole[1:]
    assert whole[1][1] != whole[2][1] or whole[1][2] != whole[2][2]  # the steps differ from each other


def combined_rollout(tokenizer, rounds=0, outcome=OUTCOME):
    """A combined-mode rollout on the task prompts (online first attempts), one group per query."""
    from r3.episode import EpisodeSampling
    from r3.generation.base import SamplingConfig

    rows, index = build_prompts(records(), ToyTask(), tokenizer, "online")
    sampled = SamplingConfig(max_new_tokens=4, temperature=1.0)
    stopped = sampled.with_(stop=ToyTask.stop)
    rollout = R3Rollout(
        ToyTask(),
        index,
        EpisodeSampling(stopped, sampled, stopped),
        "online",
        engine=scripted_engine(tokenizer, outcome),
        mode="combined",
        dynamic_sampling_rounds=rounds,
    )
    return rollout, [row["prompt"] for row in rows for _ in range(GROUP)]


def test_combined_mode_trains_attempts_and_reflections_group_by_group():
    from r3.training.rollout import group_kind

    tokenizer = make_tokenizer()
    task = ToyTask()
    reflected = 0
    for step in (0, 1):
        rollout, prompts = combined_rollout(tokenizer, outcome=dict.fromkeys(QUERIES, "seed"))
        out = rollout(prompts, fake_trainer(tokenizer, step=step))
        batch = rollout.last
        kinds = [group_kind(step, g) for g in range(len(QUERIES))]
        assert kinds[0] != kinds[1]  # both kinds in one call, and they swap with the step
        assert groups_of(out["turn_kind"]) == [[k] * GROUP for k in kinds]
        for g, kind in enumerate(kinds):
            rows = range(g * GROUP, (g + 1) * GROUP)
            for i in rows:
                words = tokenizer.convert_ids_to_tokens(out["prompt_ids"][i])
                query = {"q": batch.prompts[i].split()[1]}
                if kind == "attempt":  # plain GRPO: the task prompt, the attempt, the verifier's verdict
                    assert "reflect" not in words and batch.retry_prompts[i] is None
                    assert out["turn_success"][i] == task.verify(query, batch.reflections[i]).ok
                elif out["first_attempt_solved"][i]:  # nothing to reflect on: unscorable, as online
                    assert out["turn_success"][i] is None and batch.reflections[i] == ""
                else:  # R3 on a fresh failed attempt: the reflection prompt, rewarded by the retry
                    assert words[-2] == "reflect" and batch.reflections[i] == "A"
                    assert out["turn_success"][i] == task.verify(query, out["retry_completion"][i]).ok
                    reflected += 1
            # One shared first attempt per reflection group, as online mode's.
            if kind == "reflection":
                assert len({out["first_attempt_text"][i] for i in rows}) == 1
    assert reflected > 0
    # Resumed at the same step: the same kinds and rows.
    again, prompts = combined_rollout(tokenizer, outcome=dict.fromkeys(QUERIES, "seed"))
    assert again(prompts, fake_trainer(tokenizer, step=1)) == out


def test_combined_mode_replaces_a_silent_group_by_one_of_its_kind():
    tokenizer = make_tokenizer()
    plain, prompts = combined_rollout(tokenizer)
    before = sum(has_signal(g) for g in groups_of(plain(prompts, fake_trainer(tokenizer))["turn_success"]))
    rollout, prompts = combined_rollout(tokenizer, rounds=10)
    out = rollout(prompts, fake_trainer(tokenizer, step=0))
    assert rollout.last.resampled_groups >= 2  # q0 and q3 have no signal as either kind
    after = [has_signal(g) for g in groups_of(out["turn_success"])]
    assert sum(after) > before
    # Each group is one kind, in its place: a replacement trains the turn of the group it replaced.
    for kinds in groups_of(out["turn_kind"]):
        assert len(set(kinds)) == 1
    assert [g[0] for g in groups_of(out["turn_kind"])] == ["attempt", "reflection"] * 2


def test_combined_metrics_are_per_kind_and_over_all_groups():
    from r3.training.rewards import combined_metrics

    rewards = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    fields = {
        "turn_kind": ["attempt"] * 4 + ["reflection"] * 4,
        "completion_length": [3, 3, 3, 3, 5, 5, 5, 5],
        "retry_length": [0, 0, 0, 0, 2, 2, 4, 4],
        "retry_clipped": [False] * 8,
        "first_attempt_solved": [True, False, True, True, False, False, False, False],
        "groups_drawn": [2] * 8,
        "groups_drawn_with_signal": [2] * 8,
        "groups_resampled": [0] * 8,
    }
    metrics = combined_metrics(rewards, fields, 2)
    assert metrics["r3/turn_success"] == 0.5
    assert metrics["r3/attempt_success"] == 0.75 and metrics["r3/retry_success"] == 0.25
    assert metrics["r3/groups_with_signal"] == 0.5  # [1,0] and [0,1] of four groups
    assert metrics["r3/attempt_groups_with_signal"] == 0.5
    assert metrics["r3/reflection_groups_with_signal"] == 0.5
    assert metrics["r3/reflection_length"] == 5 and metrics["r3/retry_length"] == 3
    assert metrics["r3/first_attempt_solved"] == 0.0  # over reflection groups only
    assert metrics["r3/groups_drawn"] == 2 and metrics["r3/groups_with_signal_drawn"] == 1.0


def test_combined_mode_through_trl_logs_both_turns(tmp_path):
    tokenizer = make_tokenizer()
    config = tiny_config(
        tmp_path, mode="combined", num_generations=GROUP, per_device_train_batch_size=8, max_steps=2
    )
    assert config.reward_funcs == ["turn_success"]
    trainer = toy_trainer(
        config, tokenizer, engine=scripted_engine(tokenizer, dict.fromkeys(QUERIES, "seed"))
    )
    assert len(trainer.train_dataset) == len(QUERIES)  # the task prompts, as plain GRPO's
    trainer.train()
    rows = [r for r in trainer.state.log_history if "r3/turn_success" in r]
    assert len(rows) == 2
    # Each step holds an attempt group and a reflection group (whose fresh attempt may have succeeded,
    # leaving no retry to score).
    assert all("r3/attempt_success" in r for r in rows)
    assert all("r3/retry_success" in r or r["r3/first_attempt_solved"] == 1.0 for r in rows)
    assert any("r3/retry_success" in r for r in rows)
    assert sorted(trainer.rollout_func.last.extra["turn_kind"]) == ["attempt"] * 4 + ["reflection"] * 4


def test_combined_mode_takes_only_its_reward(tmp_path):
    with pytest.raises(R3Error, match="does not score mode 'combined'"):
        tiny_config(tmp_path, mode="combined", reward_funcs=["retry_success_shuffled"])
    with pytest.raises(R3Error, match="does not score mode 'r3'"):
        tiny_config(tmp_path, reward_funcs=["turn_success"])
