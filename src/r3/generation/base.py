"""The generation interface shared by evaluation, mining and training: `Generator.generate` takes chats,
`TokenSampler.sample_tokens` prompt token ids (training); a token sampler gets `generate` from
`generate_from_tokens`, so both sample alike. Every prompt of a call has its own seed (`request_seeds`)
and its j-th sample is drawn from `sample_seed(request seed, j)` alone, so a prompt's samples do not
depend on which prompts share the call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from r3.tasks.base import Prompt


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample. `temperature == 0` means greedy decoding."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    #: One seed per prompt of the call (else prompt i's is `derive_seed(seed, i)`).
    seeds: tuple[int, ...] | None = None
    #: Keep only the k most likely tokens before top-p (None: no limit).
    top_k: int | None = None
    #: Return each sampled token's log-probability (`Completion.logprobs`), where the backend can.
    logprobs: bool = False

    def with_(self, **changes: object) -> SamplingConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Completion:
    """One sampled continuation. `text` keeps a matched stop string at its end."""

    text: str
    num_tokens: int
    finish_reason: str = "stop"  # "stop" (EOS or stop string) or "length"
    token_ids: tuple[int, ...] = field(default=(), repr=False)
    #: Per-token log-probabilities of `token_ids` (when asked for and the backend has them).
    logprobs: tuple[float | None, ...] | None = field(default=None, repr=False)


@runtime_checkable
class Generator(Protocol):
    """Anything that can sample completions for chats."""

    def generate(self, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig) -> list[list[Completion]]:
        """Return `n` completions for each prompt, in order."""


@runtime_checkable
class TokenSampler(Protocol):
    """Anything that samples one continuation per row of prompt token ids, row i seeded by
    `request_seeds(sampling, len(prompt_ids))[i]`."""

    tokenizer: Any

    def sample_tokens(
        self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingConfig
    ) -> list[Completion]:
        """Return one completion per row, in order."""


def encode_prompts(tokenizer: Any, prompts: Sequence[Prompt]) -> list[list[int]]:
    """Token ids of each chat, rendered by `chat.render_prompt`, which holds the template's special
    tokens already (a second BOS would change what the model sees)."""
    from r3.generation.chat import render_prompt

    return [tokenizer(render_prompt(tokenizer, p), add_special_tokens=False)["input_ids"] for p in prompts]


def generate_from_tokens(
    sampler: TokenSampler, prompts: Sequence[Prompt], n: int, sampling: SamplingConfig
) -> list[list[Completion]]:
    """`Generator.generate` for a token sampler (greedy decoding samples once and repeats it)."""
    ids = encode_prompts(sampler.tokenizer, prompts)
    greedy = sampling.temperature <= 0
    per_prompt = 1 if greedy else n
    seeds = request_seeds(sampling, len(ids))
    rows = [row for row in ids for _ in range(per_prompt)]
    row_seeds = tuple(sample_seed(seed, j) for seed in seeds for j in range(per_prompt))
    flat = sampler.sample_tokens(rows, sampling.with_(seeds=row_seeds))
    groups = [flat[i * per_prompt : (i + 1) * per_prompt] for i in range(len(ids))]
    return [group * n if greedy else group for group in groups]


def completion_from_ids(
    tokenizer: Any,
    ids: Sequence[int],
    sampling: SamplingConfig,
    *,
    ended: bool | None = None,
    logprobs: Sequence[float | None] | None = None,
) -> Completion:
    """A `Completion` from sampled token ids, decoded and cut just after the first stop string. `ended`
    is the sampler's word; without it a row ended on a stop string, an EOS or short of its budget."""
    ids = [int(t) for t in ids]
    text, stopped = truncate_at_stop(tokenizer.decode(ids, skip_special_tokens=True), sampling.stop)
    if ended is None:
        eos = getattr(tokenizer, "eos_token_id", None)
        ended = stopped or (bool(ids) and ids[-1] == eos) or len(ids) < sampling.max_new_tokens
    return Completion(
        text=text,
        num_tokens=len(ids),
        finish_reason="stop" if ended else "length",
        token_ids=tuple(ids),
        logprobs=tuple(logprobs) if logprobs is not None else None,
    )


_SEED_MOD = 2**31 - 1  # every backend and server accepts seeds below 2**31


def request_seeds(sampling: SamplingConfig, count: int) -> list[int]:
    """The seed of each of `count` prompts: `sampling.seeds`, or `derive_seed(sampling.seed, i)`."""
    if sampling.seeds is not None:
        if len(sampling.seeds) != count:
            raise ValueError(f"{len(sampling.seeds)} seeds for {count} prompts")
        return [int(s) % _SEED_MOD for s in sampling.seeds]
    return [derive_seed(sampling.seed, i) for i in range(count)]


def derive_seed(*parts: object) -> int:
    """The one way R3 derives a seed: a hash of the parts (a run's seed, the step, an example, a
    round...), so a seed names what it samples and nearby parts give unrelated seeds."""
    text = ":".join(str(part) for part in parts)
    digest = hashlib.blake2b(f"r3:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % _SEED_MOD


def sample_seed(request_seed: int, j: int) -> int:
    """The seed of the j-th sample of a request: a function of the request's seed and j only."""
    return derive_seed(request_seed, "sample", j)


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` cut just after the earliest stop string, and whether one matched."""
    hits = [(pos, i) for i, s in enumerate(stop) if s and (pos := text.find(s)) != -1]
    if not hits:
        return text, False
    pos, i = min(hits)  # the earliest; at a tie, the first listed
    return text[: pos + len(stop[i])], True
