"""How the R3 rollout samples: the trainer's own model, TRL's colocated vLLM, or a `trl vllm-serve`
server, each an adapter of `TokenSampler.sample_tokens`, so that training samples as eval and mine do.
Every process calls an engine the same number of times, even with no prompt: some are collectives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from r3.generation.base import (
    Completion,
    SamplingConfig,
    completion_from_ids,
    generate_from_tokens,
    request_seeds,
)
from r3.tasks.base import Prompt

#: engine(trainer, prompt_ids, sampling) -> one Completion per prompt
Engine = Callable[[Any, list[list[int]], SamplingConfig], list[Completion]]


def transformers_engine(
    trainer: Any, prompt_ids: list[list[int]], sampling: SamplingConfig
) -> list[Completion]:
    """Sample with the trainer's own model, in this process, without gradients (one batch). Where the
    forward pass is collective (ZeRO-3, FSDP) the token loop runs `synced` and a process with no prompt
    samples a dummy row."""
    from trl.models import unwrap_model_for_generation

    from r3.generation.transformers_backend import TransformersBackend

    tokenizer = trainer.processing_class
    with unwrap_model_for_generation(
        trainer.model_wrapped,
        trainer.accelerator,
        gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
        gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
    ) as model:
        synced = generation_is_collective(model)
        if not prompt_ids and not synced:
            return []
        pad = tokenizer.pad_token_id
        rows = prompt_ids or [[pad if pad is not None else 0]]
        backend = TransformersBackend(model, tokenizer, batch_size=len(rows))
        was_training = model.training
        model.eval()
        try:
            out = backend.sample_tokens(rows, sampling, synced=synced)
        finally:
            model.train(was_training)
    return out if prompt_ids else []


def generation_is_collective(model: Any) -> bool:
    """Whether `model.generate` is a collective here: transformers then runs it with `synced_gpus`
    (DeepSpeed ZeRO-3 or FSDP, more than one process), the same rule `generate` itself applies."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return False
    from transformers.integrations import is_deepspeed_zero3_enabled
    from transformers.integrations.fsdp import is_fsdp_managed_module

    return bool(is_deepspeed_zero3_enabled() or is_fsdp_managed_module(model))


def vllm_colocate_engine(
    trainer: Any, prompt_ids: list[list[int]], sampling: SamplingConfig
) -> list[Completion]:
    """Sample with TRL's colocated vLLM engine, a request per row with its seed (tensor parallel size 1,
    sleep mode off: `trainer.check_generation_setup`)."""
    from r3.generation.vllm_backend import VLLMBackend

    return VLLMBackend.over(trainer.vllm_generation.llm).sample_tokens(prompt_ids, sampling)


def server_request(prompt_ids: list[int], sampling: SamplingConfig, seed: int) -> dict[str, Any]:
    """The keyword arguments of `VLLMClient.generate` for one row, with its seed and stop strings in
    `generation_kwargs`. One row per request: the server applies a request's seed to all its prompts, so a
    GRPO group's identical prompts would all get the same completion."""
    greedy = sampling.temperature <= 0
    extra: dict[str, Any] = {"seed": seed}
    if sampling.stop:
        extra.update(stop=list(sampling.stop), include_stop_str_in_output=True)
    return {
        "prompts": [list(prompt_ids)],
        "n": 1,
        "temperature": 0.0 if greedy else sampling.temperature,
        "top_p": 1.0 if greedy else sampling.top_p,
        "top_k": 0 if greedy else (sampling.top_k or 0),
        "max_tokens": sampling.max_new_tokens,
        "logprobs": 0,
        "generation_kwargs": extra,
    }


#: Requests in flight at once from the main process (the server batches them as they arrive).
SERVER_CONCURRENCY = 64


def server_generate(
    client: Any, prompt_ids: list[list[int]], seeds: list[int], sampling: SamplingConfig
) -> tuple[list[list[int]], list[list[float | None] | None]]:
    """Every row through `client.generate`, a seeded request each, sent concurrently; returns the
    completion ids and the sampled tokens' logprobs, row by row."""
    from concurrent.futures import ThreadPoolExecutor

    def one(row: tuple[list[int], int]) -> tuple[list[int], list[float | None] | None]:
        output = client.generate(**server_request(row[0], sampling, row[1]))
        logprobs = top1_logprobs(output.get("logprobs"))
        return list(output["completion_ids"][0]), (logprobs[0] if logprobs else None)

    with ThreadPoolExecutor(max_workers=max(1, min(SERVER_CONCURRENCY, len(prompt_ids)))) as pool:
        rows = list(pool.map(one, zip(prompt_ids, seeds, strict=True)))
    return [ids for ids, _ in rows], [lp for _, lp in rows]


def top1_logprobs(logprobs: list[list[list[float | None]]] | None) -> list[list[float | None]] | None:
    """Per-token logprobs of the sampled tokens: the client gives (sequence, token, k), k = 1 here."""
    if logprobs is None:
        return None
    return [[entry[0] if entry else None for entry in seq] for seq in logprobs]


def scatter_slice(counts: Sequence[int], process_index: int) -> slice:
    """This process's rows in the concatenation of every process's rows (`counts` per process)."""
    start = sum(counts[:process_index])
    return slice(start, start + counts[process_index])


def vllm_server_engine(
    trainer: Any, prompt_ids: list[list[int]], sampling: SamplingConfig
) -> list[Completion]:
    """Sample through TRL's vLLM server: every process's prompts and seeds are gathered, the main
    process sends them (`server_generate`), and each process keeps its slice of the broadcast results."""
    from accelerate.utils import broadcast_object_list, gather_object

    accelerator = trainer.accelerator
    counts = gather_object([len(prompt_ids)])
    everything = gather_object(list(prompt_ids))
    seeds = gather_object(request_seeds(sampling, len(prompt_ids)))
    payload: tuple[list[list[int]], list[list[float | None] | None]] | None = None
    if accelerator.is_main_process:
        payload = server_generate(trainer.vllm_generation.vllm_client, everything, seeds, sampling)
    box = [payload]
    broadcast_object_list(box, from_process=0)
    completion_ids, logprobs = box[0]  # type: ignore[misc]
    mine = scatter_slice(counts, accelerator.process_index)
    rows = completion_ids[mine]
    row_logprobs = logprobs[mine] if sampling.logprobs else [None] * len(rows)
    return [
        completion_from_ids(trainer.processing_class, ids, sampling, logprobs=lp)
        for ids, lp in zip(rows, row_logprobs, strict=True)
    ]


class EngineSampler:
    """An engine bound to its trainer, as a token sampler (and so a `Generator`): what the rollout runs
    the episode's own steps on."""

    def __init__(self, engine: Engine, trainer: Any) -> None:
        self.engine = engine
        self.trainer = trainer
        self.tokenizer = trainer.processing_class

    def sample_tokens(
        self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingConfig
    ) -> list[Completion]:
        return self.engine(self.trainer, [list(p) for p in prompt_ids], sampling)

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        return generate_from_tokens(self, prompts, n, sampling)


def choose_engine(trainer: Any) -> Engine:
    """The engine for this trainer's settings: `use_vllm` and `vllm_mode`, else transformers."""
    args = trainer.args
    if not getattr(args, "use_vllm", False):
        return transformers_engine
    if getattr(args, "vllm_mode", "colocate") == "server":
        return vllm_server_engine
    return vllm_colocate_engine
