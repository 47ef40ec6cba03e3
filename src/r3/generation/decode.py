"""The token loop of the transformers backend. Unlike `model.generate`, it prefills once per distinct
prompt (R3 samples each many times), drops finished rows, and draws each row from its own seeded
generator, so a row's tokens depend on its seed and logits only. `synced=True` is for models whose
forward pass is a collective (ZeRO-3, FSDP): every process steps while any has a running row.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

#: Finished rows leave the batch once they are at least 1/COMPACT_FRACTION of it (compacting copies
#: the KV cache).
COMPACT_FRACTION = 8


@dataclass
class Decoded:
    """One row's new tokens (EOS kept when the row ended on it) and how the row ended."""

    token_ids: list[int]
    ended: bool  # EOS or a stop string; False: the token budget ran out
    logprobs: list[float] | None = None


@dataclass(frozen=True)
class TokenChoice:
    """How the next token is picked: `temperature <= 0` is greedy (argmax)."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None


def pick_tokens(
    logits: torch.Tensor, choice: TokenChoice, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """The next token of each row of `logits` (rows, vocab): argmax, or a draw from row i's
    distribution (temperature, then top-k, then top-p) using one uniform from `generators[i]`."""
    if choice.temperature <= 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / choice.temperature
    if choice.top_k is not None and 0 < choice.top_k < scores.shape[-1]:
        kth = torch.topk(scores, choice.top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    if choice.top_p < 1.0:
        ordered, order = torch.sort(probs, descending=True, dim=-1)
        before = ordered.cumsum(dim=-1) - ordered  # mass of the more likely tokens
        ordered = ordered.masked_fill(before >= choice.top_p, 0.0)  # keeps the token that crosses top_p
        probs = torch.zeros_like(probs).scatter(-1, order, ordered)
    cdf = probs.cumsum(dim=-1)
    uniform = torch.cat([torch.rand(1, generator=g) for g in generators]).to(cdf.device)
    target = (uniform * cdf[:, -1]).unsqueeze(-1)
    picked = torch.searchsorted(cdf, target, right=True).squeeze(-1)
    return picked.clamp_(max=cdf.shape[-1] - 1)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input ids and attention mask of `prompts`, padded on the left."""
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[pad_id] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
    return ids, mask


@torch.inference_mode()
def decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    *,
    seeds: Sequence[int],
    max_new_tokens: int,
    choice: TokenChoice,
    eos_ids: Sequence[int],
    pad_id: int,
    stopped: Callable[[list[int]], bool] | None = None,
    logprobs: bool = False,
    synced: bool = False,
) -> list[Decoded]:
    """Sample one continuation per prompt (row) from `model`. `stopped(ids)`: whether a row's tokens so
    far end with a stop string; `logprobs`: each token's log-probability (before temperature)."""
    rows = [list(p) for p in prompts]
    if not rows:
        return []
    device = next(model.parameters()).device
    distinct = list(dict.fromkeys(tuple(p) for p in rows))
    where = {p: i for i, p in enumerate(distinct)}
    expand = torch.tensor([where[tuple(p)] for p in rows], device=device)

    input_ids, mask = left_pad(distinct, pad_id)
    input_ids, mask = input_ids.to(device), mask.to(device)
    positions = (mask.cumsum(dim=-1) - 1).clamp_(min=0)
    kwargs: dict[str, Any] = {"use_cache": True}
    # Asked of `model` itself: a PEFT-wrapped policy keeps every position's logits, whose float rounding
    # the recorded experiments' tokens depend on.
    if _takes(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1
    out = model(input_ids=input_ids, attention_mask=mask, position_ids=positions, **kwargs)
    # Asked of the transformers model under any wrapper: PEFT's forward lists neither name.
    cache_name = "cache" if _takes(unwrapped(model), "cache") else "past_key_values"
    cache = returned_cache(out)
    cache.batch_select_indices(expand)  # one copy of its prompt's cache per row
    logits = out.logits[:, -1, :][expand]
    mask = mask[expand]
    next_position = positions[:, -1][expand] + 1

    generators = [torch.Generator(device="cpu").manual_seed(mix_seed(int(s))) for s in seeds]
    eos = torch.tensor(list(eos_ids), dtype=torch.long, device=device)
    results = [Decoded([], False, [] if logprobs else None) for _ in rows]
    active = list(range(len(rows)))  # result index of each batch row
    for step in range(max_new_tokens):
        tokens = pick_tokens(logits, choice, [generators[i] for i in active])
        if logprobs:
            chosen = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
            chosen_list = chosen.tolist()
        ends = torch.isin(tokens, eos).tolist() if eos.numel() else [False] * len(active)
        picked = tokens.tolist()
        running: list[int] = []
        for b, i in enumerate(active):
            result = results[i]
            if result.ended:  # carried along until the batch is compacted (or, synced, to the end)
                continue
            result.token_ids.append(picked[b])
            if result.logprobs is not None:
                result.logprobs.append(chosen_list[b])
            result.ended = bool(ends[b]) or (stopped is not None and stopped(result.token_ids))
            if not result.ended:
                running.append(b)
        if step == max_new_tokens - 1:
            break
        if synced:
            if not _any_process(bool(running), device):
                break
        else:
            if not running:
                break
            finished = len(active) - len(running)
            if finished and finished * COMPACT_FRACTION >= len(active):
                index = torch.tensor(running, device=device)
                cache.batch_select_indices(index)
                mask, next_position, tokens = mask[index], next_position[index], tokens[index]
                active = [active[b] for b in running]
        mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
        out = model(
            input_ids=tokens.unsqueeze(-1),
            attention_mask=mask,
            position_ids=next_position.unsqueeze(-1),
            **{cache_name: cache},
            **kwargs,
        )
        cache = returned_cache(out)
        logits = out.logits[:, -1, :]
        next_position = next_position + 1
    return results


def mix_seed(seed: int) -> int:
    """`seed` scrambled (SplitMix64's finalizer), for callers that pass small consecutive seeds."""
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


def returned_cache(out: Any) -> Any:
    """The KV cache a forward pass returned (`cache` in transformers 5.x, else `past_key_values`)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def unwrapped(model: Any) -> Any:
    """The model under wrappers that pass keyword arguments through (PEFT's `get_base_model()`, DDP's,
    DeepSpeed's and FSDP's `.module`), whose forward's signature says which names it takes."""
    for _ in range(8):  # wrappers nest a few deep at most; a cycle must not hang
        if callable(getattr(model, "get_base_model", None)):
            inner = model.get_base_model()
        elif isinstance(getattr(model, "module", None), torch.nn.Module):
            inner = model.module
        else:
            return model
        if inner is model:
            return model
        model = inner
    return model


def _takes(model: Any, name: str) -> bool:
    """Whether the model's forward accepts keyword `name` (older or custom models may not)."""
    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _any_process(mine: bool, device: torch.device) -> bool:
    """Whether any process still has a running row (a collective: every process calls it per step)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return mine
    flag = torch.tensor([1 if mine else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())
