"""Sampling with vLLM (GPU): the fast path for mining and evaluation at scale.

Prefix caching is on, because R3 samples the same prompt many times (mining) and the reflection and
retry prompts share long prefixes with the first attempt. Install with
`pip install "reflect-retry-reward[vllm]"`; without it, choosing this backend is a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from r3.errors import R3Error
from r3.generation.base import Completion, SamplingConfig, request_seeds, truncate_at_stop
from r3.generation.chat import render_prompt
from r3.tasks.base import Prompt


def prompt_token_ids(tokenizer: Any, prompts: Sequence[Prompt]) -> list[dict[str, list[int]]]:
    """vLLM token prompts, encoded as the transformers backend encodes them.

    The rendered chat already holds the template's special tokens; handing vLLM the text would let
    it add a BOS of its own (a doubled BOS for Llama-style templates) and make the two backends see
    different inputs."""
    return [
        {"prompt_token_ids": tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"]}
        for p in prompts
    ]


class VLLMBackend:
    """A `Generator` over a vLLM engine."""

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
        self.llm = LLM(model=model_path, dtype=dtype, enable_prefix_caching=True, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.model_name = model_name or model_path

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        from vllm import SamplingParams

        greedy = sampling.temperature <= 0
        params = [  # a seed per request (base.request_seeds): rows do not depend on the batch
            SamplingParams(
                n=1 if greedy else n,
                temperature=0.0 if greedy else sampling.temperature,
                top_p=sampling.top_p,
                max_tokens=sampling.max_new_tokens,
                stop=list(sampling.stop) or None,
                include_stop_str_in_output=True,
                seed=seed,
            )
            for seed in request_seeds(sampling, len(prompts))
        ]
        outputs = self.llm.generate(prompt_token_ids(self.tokenizer, prompts), params, use_tqdm=False)
        groups: list[list[Completion]] = []
        for out in outputs:
            group = []
            for c in out.outputs:
                text, _ = truncate_at_stop(c.text, sampling.stop)
                group.append(
                    Completion(text, len(c.token_ids), c.finish_reason or "stop", tuple(c.token_ids))
                )
            groups.append(group * n if greedy else group)
        return groups
