"""Generation engines of the rollout: which one is chosen, the vLLM server engine's request and
scatter, and the rule that every process calls the engine, even with nothing to sample.

The vLLM engines need a GPU; the server engine is tested here with a stand-in for TRL's `VLLMClient`
(same `generate` keywords and return shape), in one process and (slow) in two gloo processes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from r3.errors import R3Error
from r3.generation.base import SamplingConfig, completion_from_ids, request_seeds
from r3.training.engines import (
    choose_engine,
    scatter_slice,
    server_request,
    top1_logprobs,
    transformers_engine,
    vllm_colocate_engine,
    vllm_server_engine,
)
from r3.training.trainer import build_trainer, check_generation_setup
from servers import torchrun
from test_training_support import ToyTask, make_model, make_tokenizer, records, tiny_config, toy_trainer

HERE = Path(__file__).resolve().parent


class EchoClient:
    """Stands in for `VLLMClient`: each completion is its prompt reversed; logprobs -i per token.
    Safe to call from the engine's request threads (a list append is atomic)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def generate(self, **request):
        self.requests.append(request)
        completions = [list(reversed(ids)) for ids in request["prompts"]]
        return {
            "prompt_ids": request["prompts"],
            "completion_ids": completions,
            "logprobs": [[[-float(t)] for t in ids] for ids in completions],
            "logprob_token_ids": [[[t] for t in ids] for ids in completions],
        }

    def sent(self) -> dict[tuple[int, ...], int]:
        """Each request's one prompt and its seed (requests go out concurrently, in any order)."""
        assert all(len(r["prompts"]) == 1 for r in self.requests)
        return {tuple(r["prompts"][0]): r["generation_kwargs"]["seed"] for r in self.requests}


def args(**kw):
    return SimpleNamespace(**kw)


def test_choose_engine_follows_use_vllm_and_mode():
    assert choose_engine(SimpleNamespace(args=args(use_vllm=False))) is transformers_engine
    assert (
        choose_engine(SimpleNamespace(args=args(use_vllm=True, vllm_mode="colocate"))) is vllm_colocate_engine
    )
    assert choose_engine(SimpleNamespace(args=args(use_vllm=True, vllm_mode="server"))) is vllm_server_engine


def test_server_request_greedy_and_sampled():
    greedy = server_request(
        [1, 2], SamplingConfig(max_new_tokens=7, temperature=0.0, top_p=0.9, top_k=5, stop=("</answer>",)), 11
    )
    assert greedy == {
        "prompts": [[1, 2]],
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 0,
        "max_tokens": 7,
        "logprobs": 0,
        "generation_kwargs": {"seed": 11, "stop": ["</answer>"], "include_stop_str_in_output": True},
    }
    sampled = server_request([3], SamplingConfig(max_new_tokens=4, temperature=0.7, top_p=0.9), 12)
    assert (sampled["temperature"], sampled["top_p"], sampled["top_k"]) == (0.7, 0.9, 0)
    assert sampled["generation_kwargs"] == {"seed": 12}  # no stop strings: only the row's seed


def test_scatter_slice_and_top1_logprobs():
    counts = [2, 0, 3]
    rows = ["a", "b", "c", "d", "e"]
    assert [rows[scatter_slice(counts, i)] for i in range(3)] == [["a", "b"], [], ["c", "d", "e"]]
    assert top1_logprobs([[[-0.5], [-1.0]], [[-2.0]]]) == [[-0.5, -1.0], [-2.0]]
    assert top1_logprobs([[[], [-1.0]]]) == [[None, -1.0]]
    assert top1_logprobs(None) is None


def fake_trainer(client, process_index=0, main=True):
    return SimpleNamespace(
        accelerator=SimpleNamespace(is_main_process=main, process_index=process_index),
        vllm_generation=SimpleNamespace(vllm_client=client),
        processing_class=make_tokenizer(),
    )


def test_server_engine_one_process():
    """A seeded request per row, the seeds every engine gives those rows (`request_seeds`): identical
    prompts (a GRPO group) get different seeds, so the server samples them independently."""
    client = EchoClient()
    sampling = SamplingConfig(max_new_tokens=8, temperature=1.0, stop=("end",), logprobs=True, seed=5)
    out = vllm_server_engine(fake_trainer(client), [[1, 2, 3], [4]], sampling)
    assert [c.token_ids for c in out] == [(3, 2, 1), (4,)]
    assert [c.logprobs for c in out] == [(-3.0, -2.0, -1.0), (-4.0,)]
    tokenizer = make_tokenizer()
    assert out[0].text == tokenizer.decode([3, 2, 1], skip_special_tokens=True)
    without = vllm_server_engine(fake_trainer(EchoClient()), [[1, 2]], sampling.with_(logprobs=False))
    assert without[0].logprobs is None  # only asked-for logprobs reach TRL
    assert client.sent() == dict(zip([(1, 2, 3), (4,)], request_seeds(sampling, 2), strict=True))
    assert all(r["max_tokens"] == 8 and r["generation_kwargs"]["stop"] == ["end"] for r in client.requests)
    group = EchoClient()
    vllm_server_engine(fake_trainer(group), [[7, 7]] * 4, sampling)
    seeds = [r["generation_kwargs"]["seed"] for r in group.requests]
    assert len(seeds) == 4 and sorted(seeds) == sorted(request_seeds(sampling, 4)) and len(set(seeds)) == 4


def test_server_engine_with_no_prompt_sends_no_request():
    client = EchoClient()
    out = vllm_server_engine(fake_trainer(client), [], SamplingConfig(max_new_tokens=8))
    assert out == [] and client.requests == []


def test_check_generation_setup():
    base = dict(use_vllm=True, vllm_tensor_parallel_size=1, vllm_enable_sleep_mode=False)
    check_generation_setup(args(**base, vllm_mode="colocate"))
    check_generation_setup(args(**{**base, "vllm_tensor_parallel_size": 4}, vllm_mode="server"))
    check_generation_setup(args(use_vllm=False))
    with pytest.raises(R3Error, match="vllm_tensor_parallel_size 1"):
        check_generation_setup(args(**{**base, "vllm_tensor_parallel_size": 2}, vllm_mode="colocate"))
    with pytest.raises(R3Error, match="unknown vllm_mode"):
        check_generation_setup(args(**base, vllm_mode="remote"))


def test_engine_is_called_even_when_every_first_attempt_is_solved(tmp_path):
    """Online mode, a batch where every fresh first attempt succeeds: nothing to reflect on or retry,
    yet the reflection and retry engine calls still happen (with no prompt), so that processes which
    do have work are not left waiting in a collective."""
    tokenizer = make_tokenizer()
    eos = tokenizer.eos_token_id
    calls: list[int] = []

    def engine(trainer, prompt_ids, sampling):
        calls.append(len(prompt_ids))
        good = tokenizer("good end", add_special_tokens=False)["input_ids"] + [eos]
        return [completion_from_ids(tokenizer, good, sampling) for _ in prompt_ids]

    config = tiny_config(tmp_path, num_generations=4, per_device_train_batch_size=8, first_attempt="online")
    trainer = toy_trainer(config, tokenizer, engine=engine)
    prompts = [p for p in trainer.train_dataset["prompt"][:2] for _ in range(4)]
    out = trainer.rollout_func(prompts, trainer)
    assert calls == [2, 0, 0]  # one first attempt per group, then empty reflection and retry calls
    assert out["completion_ids"] == [[eos]] * 8
    assert out["retry_success"] == [None] * 8


@pytest.mark.slow
def test_server_engine_in_two_processes(tmp_path):
    """Rank 0 has two prompts, rank 1 one (then none): the main process sends every rank's rows, each
    seeded as its own rank seeded it, and each rank gets back exactly its own completions."""
    command = torchrun(str(HERE / "server_engine_worker.py"), str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["world"] == 2 and rank1["world"] == 2
    assert rank0["first"] == [[3, 2, 1], [5, 4]] and rank1["first"] == [[9, 8, 7, 6]]
    assert rank0["first_logprobs"] == [[-3.0, -2.0, -1.0], [-5.0, -4.0]]
    assert rank0["second"] == [[11, 10]] and rank1["second"] == []  # rank 1 had nothing to sample
    # From the main process only: a request per row of every rank, with the seed its rank gave it.
    first, second = SamplingConfig(max_new_tokens=4), SamplingConfig(max_new_tokens=4, temperature=0.0)
    s0, s1 = request_seeds(first, 2), request_seeds(first, 1)
    assert rank0["requests"] == sorted(
        [[[1, 2, 3], s0[0]], [[4, 5], s0[1]], [[6, 7, 8, 9], s1[0]], [[10, 11], request_seeds(second, 1)[0]]]
    )
    assert rank1["requests"] == []


def test_transformers_engine_with_no_prompt_joins_a_collective_forward(tmp_path, monkeypatch):
    """Under ZeRO-3 or FSDP the forward pass is a collective: a process with nothing to sample must
    still run the token loop (from a dummy prompt) and return nothing; elsewhere it just returns."""
    from r3.training import engines

    tokenizer = make_tokenizer()
    trainer = build_trainer(
        tiny_config(tmp_path),
        model=make_model(tokenizer),
        tokenizer=tokenizer,
        task=ToyTask(),
        records=records(),
    )
    calls = []
    hook = trainer.model.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    greedy = SamplingConfig(max_new_tokens=3, temperature=0.0)
    assert engines.transformers_engine(trainer, [], greedy) == []
    assert calls == []
    monkeypatch.setattr(engines, "generation_is_collective", lambda model: True)
    assert engines.transformers_engine(trainer, [], greedy) == []
    assert calls and tuple(calls[0]) == (1, 1)  # the dummy prompt's prefill, then its steps
    monkeypatch.undo()
    hook.remove()
    assert engines.generation_is_collective(trainer.model) is False  # one process, no process group


@pytest.mark.slow
def test_synced_token_loop_keeps_processes_in_step(tmp_path):
    """Two gloo processes, one with rows that stop at different steps and one with a dummy row: in
    synced mode both make the same number of forward calls (none is left waiting in a collective),
    and the real rows are those an unsynced run gives."""
    command = torchrun(str(HERE / "synced_decode_worker.py"), str(tmp_path))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["forwards"] == rank1["forwards"] > 1
    assert rank0["synced"] == rank0["alone"]
    assert rank1["synced"] == rank1["alone"]
