"""Sampling with `transformers.generate`: batched, left-padded, seeded, with stop strings.

Runs anywhere torch runs (this is the CPU path). Prompts are rendered with the tokenizer's chat
template (`chat.render_prompt`), padded on the left so every row's continuation starts at the same
column, and each batch is seeded from `sampling.seed` and the batch's position, so a call gives the
same completions every time it is made with the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteriaList, StopStringCriteria

from r3.generation.base import Completion, SamplingConfig, truncate_at_stop
from r3.generation.chat import render_prompt
from r3.tasks.base import Prompt


class TransformersBackend:
    """A `Generator` over a loaded causal LM and its tokenizer."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, model_name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, batch_size)
        self.model_name = model_name or getattr(model.config, "_name_or_path", "model")
        self.stop_ids = _stop_token_ids(model, tokenizer)
        self._stop_cache: dict[tuple[str, ...], StopStringCriteria] = {}

    @property
    def context_length(self) -> int | None:
        """The most tokens (prompt and continuation) the model takes: its position embeddings."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return value if isinstance(value, int) and value > 0 else None

    def fits(self, prompt: Prompt, max_new_tokens: int) -> bool:
        """Whether `prompt` and `max_new_tokens` more tokens fit in the model's context (True when the
        model does not say its context length)."""
        limit = self.context_length
        if limit is None:
            return True
        text = render_prompt(self.tokenizer, prompt)
        length = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return length + max_new_tokens <= limit

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        out: list[list[Completion]] = []
        # Keep about `batch_size` sequences per forward pass whatever n is.
        per_batch = max(1, self.batch_size // max(1, n)) if sampling.temperature > 0 else self.batch_size
        for start in range(0, len(texts), per_batch):
            out.extend(self._generate_batch(texts[start : start + per_batch], n, sampling, start))
        return out

    @torch.no_grad()
    def _generate_batch(
        self, texts: list[str], n: int, sampling: SamplingConfig, offset: int
    ) -> list[list[Completion]]:
        greedy = sampling.temperature <= 0
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": not greedy,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.stop_ids or None,
            "num_return_sequences": 1 if greedy else n,
        }
        if not greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        if sampling.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList([self._stop_criterion(sampling.stop)])
        torch.manual_seed(sampling.seed * 1_000_003 + offset)
        sequences = self.model.generate(**enc, **kwargs)
        new_tokens = sequences[:, enc["input_ids"].shape[1] :].tolist()
        per_prompt = 1 if greedy else n
        groups: list[list[Completion]] = []
        for i in range(len(texts)):
            rows = new_tokens[i * per_prompt : (i + 1) * per_prompt]
            group = [self._completion(ids, sampling) for ids in rows]
            groups.append(group * n if greedy else group)
        return groups

    def _stop_criterion(self, stop: tuple[str, ...]) -> StopStringCriteria:
        """Built once per set of stop strings: building it scans the whole vocabulary."""
        if stop not in self._stop_cache:
            self._stop_cache[stop] = StopStringCriteria(self.tokenizer, list(stop))
        return self._stop_cache[stop]

    def _completion(self, ids: list[int], sampling: SamplingConfig) -> Completion:
        """Cut at the first end-of-turn token, decode, and cut at the first stop string."""
        cut = len(ids)
        for pos, tok in enumerate(ids):
            if tok in self.stop_ids:
                cut = pos + 1
                break
        ids = ids[:cut]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        text, stopped = truncate_at_stop(text, sampling.stop)
        if stopped:
            # A row stopped by a stop string is padded to the batch's length; when the pad token is
            # also an end-of-turn token (Qwen's <|endoftext|>) the cut above kept one pad. Drop them.
            pad = self.tokenizer.pad_token_id
            while ids and pad is not None and ids[-1] == pad:
                ids = ids[:-1]
        ended = stopped or (bool(ids) and ids[-1] in self.stop_ids)
        return Completion(
            text=text,
            num_tokens=len(ids),
            finish_reason="stop" if ended or len(ids) < sampling.max_new_tokens else "length",
            token_ids=tuple(ids),
        )


def _stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-turn ids: the generation config's EOS id(s) and the tokenizer's EOS."""
    ids: list[int] = []
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (eos if isinstance(eos, list) else [eos]) + [tokenizer.eos_token_id]:
        if isinstance(value, int) and value not in ids:
            ids.append(value)
    return ids
