"""The transformers backend as it was before `r3.generation.decode` (issue 9), kept as the baseline of
`mine_window_benchmark.py`: `model.generate` over left-padded rows, every sample of a prompt prefilled
on its own, every row run until the batch's last row stops, sampling by a Gumbel-max logits processor
with a generator per row (its sampling code kept verbatim; the EOS ids come from the current backend's
helper, which did not change). Not used by R3 itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteriaList, StopStringCriteria

from r3.generation.base import Completion, SamplingConfig, request_seeds, sample_seed, truncate_at_stop
from r3.generation.chat import render_prompt
from r3.generation.transformers_backend import _stop_token_ids
from r3.tasks.base import Prompt


class LegacyBackend:
    """The transformers backend before the token loop (`model.generate`, a Gumbel-max logits
    processor per row), kept verbatim as this benchmark's baseline."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, model_name: str = "") -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = max(1, batch_size)
        self.model_name = model_name or getattr(model.config, "_name_or_path", "model")
        self.stop_ids = _stop_token_ids(model, tokenizer)
        self._stop_cache: dict[tuple[str, ...], StopStringCriteria] = {}

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        texts = [render_prompt(self.tokenizer, p) for p in prompts]
        seeds = request_seeds(sampling, len(texts))
        out: list[list[Completion]] = []
        # Keep about `batch_size` sequences per forward pass whatever n is.
        per_batch = max(1, self.batch_size // max(1, n)) if sampling.temperature > 0 else self.batch_size
        for start in range(0, len(texts), per_batch):
            end = start + per_batch
            out.extend(self._generate_batch(texts[start:end], n, sampling, seeds[start:end]))
        return out

    @torch.no_grad()
    def _generate_batch(
        self, texts: list[str], n: int, sampling: SamplingConfig, seeds: list[int]
    ) -> list[list[Completion]]:
        greedy = sampling.temperature <= 0
        rows = texts if greedy else [t for t in texts for _ in range(n)]  # a row per sample
        enc = self.tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "do_sample": False,  # greedy, or greedy over RowSampler's Gumbel-perturbed logits
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.stop_ids or None,
            # The model's generation config may set sampling defaults; our rows decide instead.
            "temperature": None,
            "top_p": None,
            "top_k": None,
        }
        if not greedy:
            row_seeds = [sample_seed(seed, j) for seed in seeds for j in range(n)]
            sampler = RowSampler(row_seeds, sampling.temperature, sampling.top_p, self.model.device)
            kwargs["logits_processor"] = LogitsProcessorList([sampler])
        if sampling.stop:
            kwargs["stopping_criteria"] = StoppingCriteriaList([self._stop_criterion(sampling.stop)])
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


class RowSampler(LogitsProcessor):
    """Sampling as a logits processor: each row's scores become `logits / T` (top-p filtered) plus
    Gumbel noise from the row's own generator, so that the greedy pick is a draw from the row's
    softmax that depends on its seed and logits only."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, device: Any) -> None:
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        self.temperature = temperature
        self.top_p = top_p
        self.device = device

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float() / self.temperature
        if self.top_p < 1.0:
            ordered, order = torch.sort(logits, descending=True, dim=-1)
            mass = torch.softmax(ordered, dim=-1).cumsum(dim=-1)
            drop = mass - torch.softmax(ordered, dim=-1) >= self.top_p  # keeps the token that crosses
            logits = logits.masked_fill(torch.zeros_like(drop).scatter(-1, order, drop), float("-inf"))
        vocab = logits.shape[-1]
        uniform = torch.stack([torch.rand(vocab, generator=g) for g in self.generators]).to(self.device)
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=1e-20, max=1.0 - 1e-7)))
        return logits + gumbel
