"""Generation engines for the R3 rollout: how reflections, retries and online attempts are sampled.

An engine is `engine(trainer, prompt_ids, *, max_new_tokens, temperature, top_p, top_k, stop)` ->
`Sampled`, one generated sequence per prompt (prompt excluded). `choose_engine(trainer)` picks:

    transformers_engine  the trainer's own model (`model.generate`): CPU, or GPU without vLLM
    vllm_colocate_engine TRL's colocated engine, `trainer.vllm_generation.llm` (a `vllm.LLM`)
    vllm_server_engine   TRL's server client, `trainer.vllm_generation.vllm_client` (a `VLLMClient`,
                         main process only): prompts gathered from every process, one request,
                         results scattered back

TRL syncs the policy's weights into vLLM (either mode) before it calls the rollout, so every engine
samples from the current policy. The rollout calls an engine on every process the same number of
times, even with no prompt to sample, because some engines use collectives (the server engine's
gather and broadcast, the DeepSpeed ZeRO-3 weight gathering of `unwrap_model_for_generation`); a
process that skipped a call would leave the others waiting forever.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Sampled:
    """Generated token ids (prompt excluded) and, when the engine has them, per-token logprobs."""

    token_ids: list[list[int]]
    logprobs: list[list[float | None]] | None = None


#: engine(trainer, prompt_ids, max_new_tokens=, temperature=, top_p=, top_k=, stop=) -> Sampled
Engine = Callable[..., Sampled]


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every token that ends a turn: the generation config's EOS ids and the tokenizer's."""
    ids: list[int] = []
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(config_eos, int):
        ids.append(config_eos)
    elif config_eos:
        ids.extend(int(i) for i in config_eos)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def _clean(ids: Sequence[int], eos: Sequence[int], pad: int | None) -> list[int]:
    """Cut after the first EOS (kept) and drop trailing padding."""
    out: list[int] = []
    for token in ids:
        out.append(int(token))
        if token in eos:
            return out
    while out and pad is not None and out[-1] == pad:
        out.pop()
    return out


def transformers_engine(
    trainer: Any,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    top_k: int | None = None,
    stop: Sequence[str] = (),
) -> Sampled:
    """Sample with the trainer's own model (`model.generate`), in this process, without gradients.

    Uses TRL's public `unwrap_model_for_generation`, which unwraps DDP/DeepSpeed (gathering ZeRO-3
    weights, a collective: entered even with no prompt) and turns gradient checkpointing off meanwhile.
    Where `generate` itself is collective (ZeRO-3, FSDP) a process with no prompt generates from a
    dummy one, so that the others are not left waiting."""
    import torch
    from trl.models import unwrap_model_for_generation

    tokenizer = trainer.processing_class
    pad = tokenizer.pad_token_id
    with (
        unwrap_model_for_generation(
            trainer.model_wrapped,
            trainer.accelerator,
            gather_deepspeed3_params=trainer.args.ds3_gather_for_generation,
            gradient_checkpointing_kwargs=trainer.args.gradient_checkpointing_kwargs,
        ) as model,
        torch.no_grad(),
    ):
        real = bool(prompt_ids)
        if not real:
            if not generation_is_collective(model):
                return Sampled([])
            # ZeRO-3 / FSDP: `generate` runs in lock-step with the other processes (synced_gpus), so
            # a process with nothing to sample still generates, from a one-token dummy, and drops it.
            prompt_ids = [[pad if pad is not None else 0]]
        width = max(len(p) for p in prompt_ids)
        input_ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompt_ids])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompt_ids])
        eos = eos_token_ids(model, tokenizer)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "pad_token_id": pad,
            "eos_token_id": eos,
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k or 0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if stop:
            kwargs.update(stop_strings=list(stop), tokenizer=tokenizer)
        was_training = model.training
        model.eval()
        try:
            device = next(model.parameters()).device
            out = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), **kwargs
            )
        finally:
            model.train(was_training)
    if not real:
        return Sampled([])
    generated = out[:, width:].tolist()
    return Sampled([_clean(row, eos, pad) for row in generated])


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
    trainer: Any,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    top_k: int | None = None,
    stop: Sequence[str] = (),
) -> Sampled:
    """Sample with TRL's colocated vLLM engine (`trainer.vllm_generation.llm`, a public `vllm.LLM`).

    Supported: tensor parallel size 1, sleep mode off (checked in `build_trainer`). GPU only: the CPU
    tests cannot run it."""
    if not prompt_ids:
        return Sampled([], [])
    from vllm import SamplingParams

    params = SamplingParams(
        n=1,
        temperature=temperature,
        top_p=top_p if temperature > 0 else 1.0,
        top_k=(top_k or -1) if temperature > 0 else -1,
        max_tokens=max_new_tokens,
        stop=list(stop) or None,
        include_stop_str_in_output=True,
        logprobs=0,
    )
    llm = trainer.vllm_generation.llm
    outputs = llm.generate(
        [{"prompt_token_ids": ids} for ids in prompt_ids], sampling_params=params, use_tqdm=False
    )
    token_ids, logprobs = [], []
    for output in outputs:
        sample = output.outputs[0]
        token_ids.append(list(sample.token_ids))
        per_token: list[float | None] = []
        for token, entry in zip(sample.token_ids, sample.logprobs or [], strict=False):
            per_token.append(entry[token].logprob if token in entry else None)
        logprobs.append(per_token)
    return Sampled(token_ids, logprobs)


def server_request(
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    top_k: int | None,
    stop: Sequence[str],
) -> dict[str, Any]:
    """The keyword arguments of `VLLMClient.generate` for one sampling step (one sequence per prompt).

    The stop strings go through `generation_kwargs`, which the client adds to the body of its
    OpenAI-style completions request, where vLLM reads `stop` and `include_stop_str_in_output`."""
    greedy = temperature <= 0
    request: dict[str, Any] = {
        "prompts": prompt_ids,
        "n": 1,
        "temperature": 0.0 if greedy else temperature,
        "top_p": 1.0 if greedy else top_p,
        "top_k": 0 if greedy else (top_k or 0),
        "max_tokens": max_new_tokens,
        "logprobs": 0,
    }
    if stop:
        request["generation_kwargs"] = {"stop": list(stop), "include_stop_str_in_output": True}
    return request


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
    trainer: Any,
    prompt_ids: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    top_k: int | None = None,
    stop: Sequence[str] = (),
) -> Sampled:
    """Sample through TRL's vLLM server (`trl vllm-serve`), in one request from the main process.

    Every process's prompts are gathered (they may hold different numbers of prompts), the main
    process sends them with `trainer.vllm_generation.vllm_client.generate`, and the results are
    broadcast and each process keeps its own slice. Collective: every process must call it."""
    from accelerate.utils import broadcast_object_list, gather_object

    accelerator = trainer.accelerator
    counts = gather_object([len(prompt_ids)])
    everything = gather_object(list(prompt_ids))
    payload: tuple[list[list[int]], Any] | None = None
    if accelerator.is_main_process:
        if everything:
            request = server_request(
                everything,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                stop=stop,
            )
            output = trainer.vllm_generation.vllm_client.generate(**request)
            payload = (output["completion_ids"], top1_logprobs(output.get("logprobs")))
        else:
            payload = ([], None)
    box = [payload]
    broadcast_object_list(box, from_process=0)
    completion_ids, logprobs = box[0]  # type: ignore[misc]
    mine = scatter_slice(counts, accelerator.process_index)
    return Sampled(
        [list(ids) for ids in completion_ids[mine]],
        logprobs[mine] if logprobs is not None else None,
    )


def choose_engine(trainer: Any) -> Engine:
    """The engine for this trainer's settings: `use_vllm` and `vllm_mode`, else transformers."""
    args = trainer.args
    if not getattr(args, "use_vllm", False):
        return transformers_engine
    if getattr(args, "vllm_mode", "colocate") == "server":
        return vllm_server_engine
    return vllm_colocate_engine
