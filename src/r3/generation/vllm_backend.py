"""Sampling with vLLM, the fast path at scale (GPU, or vLLM's CPU build: `make vllm-env`). Prefix caching
is on: R3 samples each prompt many times, and its chats share long prefixes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r3.errors import R3Error
from r3.generation.base import (
    Completion,
    SamplingConfig,
    completion_from_ids,
    generate_from_tokens,
    request_seeds,
)
from r3.models import pick_device
from r3.tasks.base import Prompt


class VLLMBackend:
    """A `Generator` and `TokenSampler` over a vLLM engine: one request per row, each with its own seed."""

    def __init__(
        self, model_path: str, model_name: str = "", dtype: str = "auto", **engine_kwargs: Any
    ) -> None:
        try:
            from vllm import LLM
        except ImportError:
            raise R3Error(
                "the vllm backend needs vLLM: pip install 'reflect-retry-reward[vllm]' (GPU only); "
                "or use --backend transformers"
            ) from None
        engine_kwargs.setdefault("enable_prefix_caching", True)
        if pick_device(None) == "cpu":  # vLLM's CPU build: compiling the graph would take minutes
            engine_kwargs.setdefault("enforce_eager", True)
            # vLLM 0.32's CPU runner crashes on a seeded request whose prompt chunked prefill splits
            # over two steps ("CPU Generator does not use offset"); every R3 request is seeded.
            engine_kwargs.setdefault("enable_chunked_prefill", False)
        try:
            llm = LLM(model=model_path, dtype=dtype, **engine_kwargs)
        except TypeError as exc:  # a misspelt --engine-arg: vLLM names it
            raise R3Error(f"vllm.LLM refused the engine arguments: {exc}") from None
        self._attach(llm, model_name or model_path)

    @classmethod
    def over(cls, llm: Any, model_name: str = "") -> VLLMBackend:
        """A backend over an engine that already exists (TRL's colocated `trainer.vllm_generation.llm`)."""
        backend = cls.__new__(cls)
        backend._attach(llm, model_name or "vllm")
        return backend

    def _attach(self, llm: Any, model_name: str) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.model_name = model_name

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        return generate_from_tokens(self, prompts, n, sampling)

    def sample_tokens(
        self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingConfig
    ) -> list[Completion]:
        if not prompt_ids:
            return []
        from vllm import SamplingParams

        greedy = sampling.temperature <= 0
        params = [
            SamplingParams(
                n=1,
                temperature=0.0 if greedy else sampling.temperature,
                top_p=1.0 if greedy else sampling.top_p,
                top_k=-1 if greedy or not sampling.top_k else sampling.top_k,
                max_tokens=sampling.max_new_tokens,
                stop=list(sampling.stop) or None,
                include_stop_str_in_output=True,
                logprobs=0 if sampling.logprobs else None,
                seed=seed,
            )
            for seed in request_seeds(sampling, len(prompt_ids))
        ]
        requests = [{"prompt_token_ids": list(ids)} for ids in prompt_ids]
        outputs = self.llm.generate(requests, params, use_tqdm=False)
        rows = []
        for out in outputs:
            sample = out.outputs[0]
            logprobs = None
            if sampling.logprobs:
                logprobs = [
                    entry[token].logprob if entry and token in entry else None
                    for token, entry in zip(sample.token_ids, sample.logprobs or [], strict=False)
                ]
            ended = (sample.finish_reason or "stop") != "length"
            rows.append(
                completion_from_ids(
                    self.tokenizer, sample.token_ids, sampling, ended=ended, logprobs=logprobs
                )
            )
        return rows
