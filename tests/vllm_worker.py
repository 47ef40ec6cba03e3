"""Run inside the CPU vLLM environment (`make vllm-env`) by `test_vllm_real.py`: R3's training engines
against a real vLLM, writing what they returned to a JSON file for the test to check.

    python tests/vllm_worker.py server BASE_URL MODEL_DIR OUT.json     # `trl vllm-serve` at BASE_URL
    python tests/vllm_worker.py colocate - MODEL_DIR OUT.json          # an in-process vllm.LLM
    python tests/vllm_worker.py batch - MODEL_DIR OUT.json             # R3's VLLMBackend, CPU defaults

`server`: R3's server engine (`vllm_server_engine`) through TRL's real `VLLMClient`, inside a stand-in
trainer that holds only what the engine reads (the accelerator state, the client, the tokenizer); whole
R3 episodes (attempt, reflection, retry) are run through it twice, then one sampled completion with
logprobs. `colocate`: the colocated engine's adapter (`VLLMBackend.over`) on an engine built with the
logprobs mode TRL's colocated engine uses (`processed_logprobs`), one sampled completion with logprobs.
TRL's weight sync into the server (`init_communicator`, NCCL) needs CUDA and is not run here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from r3.episode import EpisodeSamplingOptions, run_episodes
from r3.generation.base import SamplingConfig
from r3.tasks import get_task

#: The completion whose logprobs the test recomputes as TRL does: sampled at a temperature other
#: than 1, where raw and temperature-scaled logprobs differ.
LOGPROB_TEMPERATURE = 0.7
LOGPROB_PROMPT = [{"role": "user", "content": "Write one sentence about the sea."}]


def episodes_record(task: Any, sampler: Any) -> list[dict[str, Any]]:
    """Four episodes of the same Countdown problem (seeded by their index), sampled at T = 1."""
    example = task.load(None, limit=1, seed=11)[0]
    options = EpisodeSamplingOptions(
        max_new_tokens=24, temperature=1.0, reflection_max_new_tokens=24, seed=123
    )
    sampling = options.build(task)
    done = run_episodes(task, sampler, [example] * 4, sampling)
    return [
        {
            "attempt": e.attempt.text,
            "attempt_ids": list(e.attempt.token_ids or ()),
            "reflection": r.reflection.text if r and r.reflection else None,
            "reflection_ids": list(r.reflection.token_ids or ()) if r and r.reflection else None,
            "retry": r.retry.text if r else None,
            "retry_ids": list(r.retry.token_ids or ()) if r else None,
        }
        for e, r in ((e, e.first_round) for e in done)
    ]


def single_rows(sampler: Any, tokenizer: Any) -> dict[str, list[int]]:
    """One prompt sent alone (the server batches nothing else with it), at T = 1: seed 7 twice and seed
    8 once."""
    prompt = tokenizer.apply_chat_template(LOGPROB_PROMPT, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = {}
    for name, seed in (("seed7", 7), ("seed7_again", 7), ("seed8", 8)):
        sampling = SamplingConfig(max_new_tokens=24, temperature=1.0, seed=seed)
        (completion,) = sampler.sample_tokens([prompt_ids], sampling)
        out[name] = list(completion.token_ids or ())
    return out


def logprob_record(sampler: Any, tokenizer: Any) -> dict[str, Any]:
    """One completion sampled at `LOGPROB_TEMPERATURE` with the sampled tokens' logprobs."""
    prompt = tokenizer.apply_chat_template(LOGPROB_PROMPT, add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    sampling = SamplingConfig(max_new_tokens=24, temperature=LOGPROB_TEMPERATURE, seed=7, logprobs=True)
    (completion,) = sampler.sample_tokens([prompt_ids], sampling)
    return {
        "prompt_ids": list(prompt_ids),
        "completion_ids": list(completion.token_ids or ()),
        "logprobs": list(completion.logprobs or ()),
        "temperature": LOGPROB_TEMPERATURE,
    }


def server(base_url: str, model: str) -> dict[str, Any]:
    from accelerate import PartialState
    from transformers import AutoTokenizer
    from trl.generation.vllm_client import VLLMClient

    from r3.training.engines import EngineSampler, vllm_server_engine

    client = VLLMClient(base_url=base_url, connection_timeout=120)
    tokenizer = AutoTokenizer.from_pretrained(model)
    trainer = SimpleNamespace(
        accelerator=PartialState(cpu=True),
        vllm_generation=SimpleNamespace(vllm_client=client),
        processing_class=tokenizer,
    )
    sampler = EngineSampler(vllm_server_engine, trainer)
    task = get_task("countdown", min_nums=3, max_nums=3)
    return {
        "episodes": episodes_record(task, sampler),
        "episodes_again": episodes_record(task, sampler),
        "single": single_rows(sampler, tokenizer),
        "logprobs": logprob_record(sampler, tokenizer),
        "server_logprobs_mode": client.get_server_info()["model_config"]["logprobs_mode"],
    }


def colocate(model: str) -> dict[str, Any]:
    from vllm import LLM

    from r3.generation.vllm_backend import VLLMBackend

    llm = LLM(model=model, dtype="bfloat16", enforce_eager=True, logprobs_mode="processed_logprobs")
    backend = VLLMBackend.over(llm)
    return {"logprobs": logprob_record(backend, backend.tokenizer)}


def batch(model: str) -> dict[str, Any]:
    """64 distinct seeded prompts of about 180 tokens in one call of R3's own backend with its CPU
    defaults: more prompt tokens than one engine step takes, so vLLM must schedule them over steps."""
    from r3.generation.vllm_backend import VLLMBackend
    from r3.tasks.base import Prompt

    backend = VLLMBackend(model)
    prompts = [
        Prompt([{"role": "user", "content": f"Using the numbers [{i}, 66, 63], make {i + 3}. " * 8}])
        for i in range(64)
    ]
    sampling = SamplingConfig(max_new_tokens=8, temperature=1.0, seed=5)
    out = backend.generate(prompts, 1, sampling)
    return {"completions": [group[0].text for group in out]}


def main() -> None:
    mode, base_url, model, out = sys.argv[1:5]
    modes = {"server": lambda: server(base_url, model), "colocate": lambda: colocate(model)}
    modes["batch"] = lambda: batch(model)
    result = modes[mode]()
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
