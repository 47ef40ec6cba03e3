"""A generator driven by a Python function instead of a model, for tests and benchmarks:
`respond(prompt, sampling, index)` returns the `index`-th sample's text; with a seed per request the
script sees each prompt's own in `sampling.seed`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from r3.generation.base import Completion, SamplingConfig, request_seeds, truncate_at_stop
from r3.tasks.base import Prompt

Respond = Callable[[Prompt, SamplingConfig, int], str]


class ScriptedGenerator:
    """Follows the `Generator` protocol; counts prompts and samples so tests can assert on cost."""

    def __init__(self, respond: Respond, model_name: str = "scripted") -> None:
        self.respond = respond
        self.model_name = model_name
        self.calls = 0
        self.samples = 0

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        self.calls += 1
        out: list[list[Completion]] = []
        seeds = request_seeds(sampling, len(prompts)) if sampling.seeds is not None else None
        for k, prompt in enumerate(prompts):
            own = sampling.with_(seed=seeds[k], seeds=None) if seeds is not None else sampling
            group = []
            for i in range(n):
                text, _ = truncate_at_stop(self.respond(prompt, own, i), sampling.stop)
                group.append(Completion(text=text, num_tokens=len(text.split())))
                self.samples += 1
            out.append(group)
        return out
