"""The generation interface shared by evaluation, mining and training.

A backend turns chats into sampled completions:

    backend.generate(prompts, n, sampling) -> list (one per prompt) of list (n) of Completion

**A seed per request.** Every prompt of a call has its own seed (`request_seeds`: `sampling.seeds`
when the caller gives them, else derived from `sampling.seed` and the prompt's position), and the j-th
sample of a prompt is drawn from `sample_seed(request seed, j)` alone. So a prompt's samples do not
depend on which other prompts share the call: a caller can batch as it likes (mining batches windows of
queries) and still get, up to floating-point noise from padding, what one call per prompt would give.
Backends honour this their own way (the transformers backend samples each row from its own generator,
vLLM and servers take a `seed` per request).

Backends: `transformers_backend.TransformersBackend` (CPU or GPU, always available) and
`vllm_backend.VLLMBackend` (GPU, `pip install reflect-retry-reward[vllm]`). Tests use scripted fakes
that follow the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from r3.tasks.base import Prompt


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. `temperature == 0` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    #: One seed per prompt of the call (overrides the positional seeds derived from `seed`).
    seeds: tuple[int, ...] | None = None

    def with_(self, **changes: object) -> SamplingConfig:
        """A copy with some fields changed (e.g. a per-query seed)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Completion:
    """One sampled continuation. `text` keeps a matched stop string at its end."""

    text: str
    num_tokens: int
    finish_reason: str = "stop"  # "stop" (EOS or stop string) or "length"
    token_ids: tuple[int, ...] = field(default=(), repr=False)


@runtime_checkable
class Generator(Protocol):
    """Anything that can sample completions for chats."""

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        """Return `n` completions for each prompt, in order."""
        ...


_SEED_MOD = 2**31 - 1  # every backend and server accepts seeds below 2**31


def request_seeds(sampling: SamplingConfig, count: int) -> list[int]:
    """The seed of each of `count` prompts: `sampling.seeds`, or `sampling.seed` and the position."""
    if sampling.seeds is not None:
        if len(sampling.seeds) != count:
            raise ValueError(f"{len(sampling.seeds)} seeds for {count} prompts")
        return [int(s) % _SEED_MOD for s in sampling.seeds]
    return [(sampling.seed * 1_000_003 + i) % _SEED_MOD for i in range(count)]


def sample_seed(request_seed: int, j: int) -> int:
    """The seed of the j-th sample of a request: a function of the request's seed and j only."""
    return (request_seed * 7_919 + j * 104_723 + 1) % _SEED_MOD


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` just after the earliest stop string. Returns the text and whether one matched."""
    best = -1
    best_len = 0
    for s in stop:
        if not s:
            continue
        pos = text.find(s)
        if pos != -1 and (best == -1 or pos < best):
            best, best_len = pos, len(s)
    if best == -1:
        return text, False
    return text[: best + best_len], True
