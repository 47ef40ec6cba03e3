"""A generator driven by a Python function instead of a model.

Used by the tests (known answers, no weights) and by benchmarks that simulate a model of a chosen
success rate. `respond(prompt, sampling, index)` returns the text of the `index`-th of the `n`
samples for `prompt`; `sampling.seed` is passed through so that scripts can be seeded too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from r3.generation.base import Completion, SamplingConfig, truncate_at_stop
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
        for prompt in prompts:
            group = []
            for i in range(n):
                text, _ = truncate_at_stop(self.respond(prompt, sampling, i), sampling.stop)
                group.append(Completion(text=text, num_tokens=len(text.split())))
                self.samples += 1
            out.append(group)
        return out
