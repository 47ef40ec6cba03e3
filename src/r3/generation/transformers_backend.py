"""Sampling with a loaded transformers model (the CPU path, and the trainer's own model in `r3 train`)."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from typing import Any

from r3.generation.base import (
    Completion,
    SamplingConfig,
    completion_from_ids,
    encode_prompts,
    generate_from_tokens,
    request_seeds,
)
from r3.generation.decode import TokenChoice, decode
from r3.tasks.base import Prompt


class TransformersBackend:
    """A `Generator` over a loaded causal LM and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, model_name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, batch_size)
        self.model_name = model_name or getattr(model.config, "_name_or_path", "model")
        self.stop_ids = _stop_token_ids(model, tokenizer)

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt and continuation) the model takes: its position embeddings."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return value if isinstance(value, int) and value > 0 else None

    def fits(self, prompt: Prompt, max_new_tokens: int) -> bool:
        """Whether `prompt` and `max_new_tokens` more tokens fit the model's context (True if unknown)."""
        limit = self.context_length
        if limit is None:
            return True
        return len(encode_prompts(self.tokenizer, [prompt])[0]) + max_new_tokens <= limit

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        return generate_from_tokens(self, prompts, n, sampling)

    def sample_tokens(
        self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingConfig, *, synced: bool = False
    ) -> list[Completion]:
        """One continuation per row; `synced`: all rows in one pass, in step with other processes."""
        seeds = request_seeds(sampling, len(prompt_ids))
        choice = TokenChoice(sampling.temperature, sampling.top_p, sampling.top_k)
        stopped = stop_check(self.tokenizer, sampling.stop) if sampling.stop else None
        pad = self.tokenizer.pad_token_id
        size = len(prompt_ids) if synced else self.batch_size
        out: list[Completion] = []
        for start in range(0, len(prompt_ids), max(1, size)):
            end = start + max(1, size)
            rows = decode(
                self.model,
                prompt_ids[start:end],
                seeds=seeds[start:end],
                max_new_tokens=sampling.max_new_tokens,
                choice=choice,
                eos_ids=self.stop_ids,
                pad_id=pad if pad is not None else 0,
                stopped=stopped,
                logprobs=sampling.logprobs,
                synced=synced,
            )
            out.extend(
                completion_from_ids(self.tokenizer, r.token_ids, sampling, ended=r.ended, logprobs=r.logprobs)
                for r in rows
            )
        return out


#: Stop checks by tokenizer (weakly), then stop strings: building one decodes the whole vocabulary, and
#: the training engine builds a new backend on every call.
_STOP_CHECKS: weakref.WeakKeyDictionary[Any, dict[tuple[str, ...], Callable[[list[int]], bool]]] = (
    weakref.WeakKeyDictionary()
)


def stop_check(tokenizer: Any, stop: tuple[str, ...]) -> Callable[[list[int]], bool]:
    """`ids -> bool`: whether the decoded tail of `ids` contains a stop string. Only rows whose newest
    token can hold a stop string's last character are decoded, and only their last few tokens."""
    checks = _STOP_CHECKS.setdefault(tokenizer, {})
    if stop not in checks:
        strings = tuple(s for s in stop if s)
        tail = max((len(s) for s in strings), default=0) + 2
        last_chars = {s[-1] for s in strings}
        pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        maybe = {
            i
            for i, piece in enumerate(pieces)
            if not piece or "\ufffd" in piece or any(c in piece for c in last_chars)
        }
        owner = weakref.ref(tokenizer)  # a strong reference here would keep the cache entry alive forever

        def stopped(ids: list[int]) -> bool:
            if ids[-1] not in maybe:
                return False
            text = owner().decode(ids[-tail:], skip_special_tokens=True)  # type: ignore[union-attr]
            return any(s in text for s in strings)

        checks[stop] = stopped
    return checks[stop]


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids: the generation config's EOS id(s) and the tokenizer's EOS."""
    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (eos if isinstance(eos, list) else [eos]) + [tokenizer.eos_token_id]:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return ids
