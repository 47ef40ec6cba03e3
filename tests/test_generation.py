"""The transformers backend on a tiny random model, chat rendering, and the vLLM guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from r3.errors import R3Error
from r3.generation.base import SamplingConfig, truncate_at_stop
from r3.generation.chat import inline_tools, render_prompt, template_supports_tools
from r3.generation.loader import load_generator
from r3.tasks import Prompt

PROMPTS = [
    Prompt([{"role": "user", "content": "Count to three."}]),
    Prompt(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "A much longer question here?"},
        ]
    ),
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path):
    return load_generator(str(tiny_model_dir), batch_size=4, device="cpu")


def test_truncate_at_stop_takes_the_earliest() -> None:
    assert truncate_at_stop("a </answer> b </x>", ["</x>", "</answer>"]) == ("a </answer>", True)
    assert truncate_at_stop("abc", ["</answer>"]) == ("abc", False)
    assert truncate_at_stop("abc", [""]) == ("abc", False)


def test_shapes_lengths_and_seeding(tiny) -> None:
    sampling = SamplingConfig(max_new_tokens=6, temperature=1.0, seed=3)
    out = tiny.generate(PROMPTS, 3, sampling)
    assert [len(g) for g in out] == [3, 3]
    for group in out:
        for c in group:
            assert 1 <= c.num_tokens <= 6
            assert c.finish_reason in {"stop", "length"}
    again = tiny.generate(PROMPTS, 3, sampling)
    assert [[c.text for c in g] for g in out] == [[c.text for c in g] for g in again]
    other = tiny.generate(PROMPTS, 3, sampling.with_(seed=4))
    assert [[c.token_ids for c in g] for g in out] != [[c.token_ids for c in g] for g in other]


def test_left_padding_does_not_change_greedy_output(tiny) -> None:
    greedy = SamplingConfig(max_new_tokens=5, temperature=0.0)
    together = tiny.generate(PROMPTS, 1, greedy)
    alone = [tiny.generate([p], 1, greedy)[0] for p in PROMPTS]
    assert [g[0].token_ids for g in together] == [g[0].token_ids for g in alone]
    assert tiny.generate(PROMPTS[:1], 2, greedy)[0][0] == tiny.generate(PROMPTS[:1], 2, greedy)[0][1]


def test_stop_strings_cut_the_completion(tiny) -> None:
    sampling = SamplingConfig(max_new_tokens=24, temperature=1.0, seed=0)
    texts = [c.text for g in tiny.generate(PROMPTS, 4, sampling) for c in g]
    # choose a stop string that occurs in a sampled text, then check that generation stops there
    sample = next(t for t in texts if len(t) >= 4)
    stop = sample[1:4]
    cut = tiny.generate(PROMPTS, 4, sampling.with_(stop=(stop,)))
    for group in cut:
        for c in group:
            assert c.text.find(stop) in (-1, len(c.text) - len(stop))


def test_padding_after_a_stop_string_is_not_counted(tiny) -> None:
    """A row stopped by a stop string is padded to the batch length; with the embedded tokenizer the
    pad token is also the end-of-turn token, so the cut at end-of-turn used to keep one pad."""
    tok = tiny.tokenizer
    assert tok.pad_token_id in tiny.stop_ids
    body = tok("<answer> 1 + 2 </answer>", add_special_tokens=False)["input_ids"]
    sampling = SamplingConfig(max_new_tokens=40, stop=("</answer>",))
    padded = tiny._completion(body + [tok.pad_token_id] * 5, sampling)
    assert padded.num_tokens == len(body) and padded.text == "<answer> 1 + 2 </answer>"
    assert padded.finish_reason == "stop"
    # The model's own end-of-turn token, with no stop string, is kept and counted.
    plain = tok("hello", add_special_tokens=False)["input_ids"]
    ended = tiny._completion(plain + [tok.eos_token_id] + [tok.pad_token_id] * 3, sampling)
    assert ended.num_tokens == len(plain) + 1


def test_render_uses_template_and_generation_prompt(tiny) -> None:
    text = render_prompt(tiny.tokenizer, PROMPTS[1])
    assert "Be brief." in text and text.endswith("<|im_start|>assistant\n")


def test_tools_fall_back_to_the_system_message(tiny) -> None:
    tools = [{"name": "get_weather", "description": "d", "parameters": {}}]
    prompt = Prompt([{"role": "user", "content": "weather?"}], tools=tools)
    assert not template_supports_tools(tiny.tokenizer)
    assert "get_weather" in render_prompt(tiny.tokenizer, prompt)
    assert inline_tools(prompt)[0]["role"] == "system"


def test_vllm_missing_is_a_clear_error() -> None:
    pytest.importorskip("torch")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(R3Error, match="pip install"):
            load_generator("some/model", backend="vllm")
    else:  # pragma: no cover - only on GPU machines with the extra
        pytest.skip("vLLM installed")


def test_unknown_backend() -> None:
    with pytest.raises(R3Error, match="unknown backend"):
        load_generator(None, backend="nope")


def test_vllm_prompts_are_the_same_tokens_as_the_transformers_backend(tiny) -> None:
    """Checked without vLLM: the token prompts it would be given. The rendered chat already holds
    the template's special tokens, so encoding must not add more (a tokenizer that adds a BOS, as
    Llama's does, stands in here: a second BOS would show up as the sentinel)."""
    from r3.generation.vllm_backend import prompt_token_ids

    tok = tiny.tokenizer
    sentinel = -7

    class AddsBos:
        """The tiny tokenizer, plus a BOS of its own unless told add_special_tokens=False."""

        def __call__(self, text, add_special_tokens=True, **kwargs):
            out = tok(text, add_special_tokens=False, **kwargs)
            if add_special_tokens:
                out["input_ids"] = [sentinel, *out["input_ids"]]
            return out

        def __getattr__(self, name):
            return getattr(tok, name)

    got = prompt_token_ids(AddsBos(), PROMPTS)
    for prompt, entry in zip(PROMPTS, got, strict=True):
        text = render_prompt(tok, prompt)
        assert sentinel not in entry["prompt_token_ids"]
        assert entry["prompt_token_ids"] == tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(entry["prompt_token_ids"]) == text
