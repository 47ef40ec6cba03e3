"""The token loop of the transformers backend (`r3.generation.decode`): token choice on hand-written
logits, and on a tiny model that prefix sharing, dropping finished rows and batching change nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from r3.generation.base import SamplingConfig
from r3.generation.decode import TokenChoice, decode, left_pad, pick_tokens
from r3.generation.loader import load_generator


def gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_greedy_is_argmax() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, -1.0, 4.9]])
    assert pick_tokens(logits, TokenChoice(temperature=0.0), gens(0, 1)).tolist() == [1, 0]


def test_top_k_one_and_tiny_top_p_are_argmax_whatever_the_seed() -> None:
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.9], [2.0, 1.0, 0.0, -3.0]])
    for seed in range(20):
        assert pick_tokens(logits, TokenChoice(1.0, top_k=1), gens(seed, seed + 1)).tolist() == [1, 0]
        assert pick_tokens(logits, TokenChoice(1.0, top_p=0.01), gens(seed, seed + 1)).tolist() == [1, 0]


def test_top_p_keeps_the_token_that_crosses_it() -> None:
    # probabilities 0.5, 0.3, 0.2: top_p 0.6 keeps the first two (0.5 < 0.6, then 0.8 crosses it)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    drawn = {pick_tokens(logits, TokenChoice(1.0, top_p=0.6), gens(s)).item() for s in range(200)}
    assert drawn == {0, 1}


def test_masked_tokens_are_never_drawn() -> None:
    logits = torch.tensor([[float("-inf"), 0.0, float("-inf"), 0.0, float("-inf")]])
    drawn = {pick_tokens(logits, TokenChoice(1.0), gens(s)).item() for s in range(200)}
    assert drawn == {1, 3}


def test_draws_follow_the_distribution() -> None:
    probs = torch.tensor([0.1, 0.6, 0.3])
    logits = torch.log(probs).repeat(4000, 1)
    drawn = pick_tokens(logits, TokenChoice(1.0), gens(*range(4000)))
    freq = torch.bincount(drawn, minlength=3).float() / 4000
    # 4000 draws: the standard error of each frequency is at most 0.008
    assert torch.allclose(freq, probs, atol=0.035), freq


def test_temperature_sharpens() -> None:
    logits = torch.log(torch.tensor([0.4, 0.6])).repeat(2000, 1)
    cold = pick_tokens(logits, TokenChoice(0.25), gens(*range(2000))).float().mean().item()
    # at T = 0.25 the odds become (0.6/0.4)^4 ~ 5.1 : 1, so token 1 has probability ~0.84
    assert 0.8 < cold < 0.88


def test_a_row_depends_on_its_own_generator_only() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    together = pick_tokens(logits, TokenChoice(0.8, top_p=0.9), gens(11, 12, 13))
    alone = [
        pick_tokens(logits[i : i + 1], TokenChoice(0.8, top_p=0.9), gens(s)).item()
        for i, s in enumerate((11, 12, 13))
    ]
    assert together.tolist() == alone


def test_left_pad() -> None:
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_generator(str(tiny_model_dir), batch_size=8, device="cpu")


def prompts(tiny) -> list[list[int]]:
    tok = tiny.tokenizer
    texts = ["Count to three.", "A much longer question, with more words in it?", "Hi"]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_greedy_equals_transformers_generate(tiny) -> None:
    """Prefill, cache copies and dropped rows: greedy rows equal `model.generate`'s, one prompt at a time."""
    rows = prompts(tiny)
    mine = decode(
        tiny.model, rows, seeds=[0] * 3, max_new_tokens=12, choice=TokenChoice(0.0),
        eos_ids=tiny.stop_ids, pad_id=tiny.tokenizer.pad_token_id,
    )  # fmt: skip
    for row, got in zip(rows, mine, strict=True):
        out = tiny.model.generate(
            torch.tensor([row]), attention_mask=torch.ones(1, len(row), dtype=torch.long),
            max_new_tokens=12, do_sample=False, eos_token_id=tiny.stop_ids,
            pad_token_id=tiny.tokenizer.pad_token_id, temperature=None, top_p=None, top_k=None,
        )  # fmt: skip
        expected = out[0, len(row) :].tolist()
        if any(t in tiny.stop_ids for t in expected):
            expected = expected[: next(i for i, t in enumerate(expected) if t in tiny.stop_ids) + 1]
        assert got.token_ids == expected


def test_rows_do_not_depend_on_their_batch(tiny) -> None:
    """The same row seeded alike gives the same tokens alone, beside other prompts, or repeated (a
    shared prefill), whichever rows around it stop first."""
    rows = prompts(tiny)
    sampling = SamplingConfig(max_new_tokens=10, temperature=1.0, seeds=(7, 8, 9, 10, 11))
    batch = [rows[0], rows[1], rows[0], rows[2], rows[0]]
    together = tiny.sample_tokens(batch, sampling)
    for i, row in enumerate(batch):
        alone = tiny.sample_tokens([row], sampling.with_(seeds=(sampling.seeds[i],)))[0]
        assert alone.token_ids == together[i].token_ids
    assert len({c.token_ids for c in (together[0], together[2], together[4])}) > 1  # seeds differ


def test_logprobs_are_the_models(tiny) -> None:
    rows = prompts(tiny)[:1]
    got = tiny.sample_tokens(
        rows, SamplingConfig(max_new_tokens=4, temperature=0.7, seeds=(3,), logprobs=True)
    )[0]
    assert got.logprobs is not None and len(got.logprobs) == len(got.token_ids)
    full = torch.tensor([rows[0] + list(got.token_ids)])
    with torch.no_grad():
        logp = torch.log_softmax(tiny.model(full).logits[0].float(), dim=-1)
    start = len(rows[0]) - 1
    expected = [logp[start + k, t].item() for k, t in enumerate(got.token_ids)]
    assert got.logprobs == pytest.approx(expected, abs=1e-4)
    assert tiny.sample_tokens(rows, SamplingConfig(max_new_tokens=4, seeds=(3,)))[0].logprobs is None


def test_rows_with_consecutive_seeds_are_not_alike(tiny) -> None:
    """Rows seeded 0..63 (through `mix_seed`, as `decode` seeds them) at a 50/50 choice draw a fair
    spread: the count of ones is within four standard deviations, and at most one block of 8 rows (a
    GRPO group's worth) comes out all alike (probability 1/128 per block)."""
    logits = torch.zeros(64, 2)
    from r3.generation.decode import mix_seed

    generators = [torch.Generator().manual_seed(mix_seed(s)) for s in range(64)]
    picks = pick_tokens(logits, TokenChoice(1.0), generators).tolist()
    assert 20 < sum(picks) < 44  # binomial(64, 1/2): mean 32, sd 4
    blocks = [picks[i : i + 8] for i in range(0, 64, 8)]
    assert sum(len(set(b)) == 1 for b in blocks) <= 1  # P(a block all alike) = 1/128


def test_a_peft_wrapped_policy_gets_the_cache_under_its_models_name(tiny_model_dir: Path) -> None:
    """Training's rollouts decode with the PEFT-wrapped policy, whose forward lists neither cache name
    (only `**kwargs`): every step after the prefill must still pass the cache under the name the
    transformers model takes (`cache` in transformers 5; `past_key_values` goes away in 5.40)."""
    import functools
    import inspect

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    wrapped = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), LoraConfig(r=4, target_modules="all-linear")
    )
    base = wrapped.get_base_model()
    original = base.forward
    names = set(inspect.signature(original).parameters)
    expected, other = ("cache", "past_key_values") if "cache" in names else ("past_key_values", "cache")
    passed: list[set[str]] = []

    @functools.wraps(original)
    def spy(*args: object, **kwargs: object) -> object:
        passed.append(set(kwargs))
        return original(*args, **kwargs)

    base.forward = spy
    decode(
        wrapped, [[5, 6, 7], [8, 9]], seeds=[0, 1], max_new_tokens=4, choice=TokenChoice(1.0),
        eos_ids=[], pad_id=0,
    )  # fmt: skip
    assert len(passed) == 4  # the prefill, then one call per token but the last
    assert all(expected in keys and other not in keys for keys in passed[1:])
    assert not any(other in keys for keys in passed)


def test_unwrapped_finds_the_model_under_wrappers() -> None:
    from r3.generation.decode import unwrapped

    class Wrapper(torch.nn.Module):  # DDP, DeepSpeed and FSDP keep the model in `.module`
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

    class Peft(torch.nn.Module):  # PEFT's PeftModel hands it out through get_base_model()
        def __init__(self, base: torch.nn.Module) -> None:
            super().__init__()
            self.base = base

        def get_base_model(self) -> torch.nn.Module:
            return self.base

    class Loop:
        def get_base_model(self) -> Loop:
            return self

    inner = torch.nn.Linear(2, 2)
    assert unwrapped(inner) is inner
    assert unwrapped(Wrapper(Peft(Wrapper(inner)))) is inner
    loop = Loop()
    assert unwrapped(loop) is loop  # a wrapper that hands out itself ends the walk
