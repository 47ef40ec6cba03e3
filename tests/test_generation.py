"""The transformers backend on a tiny random model, chat rendering, and the vLLM guard."""

from __future__ import annotations

from pathlib import Path

import pytest

from r3.errors import R3Error
from r3.generation.base import SamplingConfig, encode_prompts, request_seeds, sample_seed, truncate_at_stop
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


def test_a_row_ends_at_its_stop_string_with_nothing_after(tiny) -> None:
    """Rows leave the batch when they stop, so no padding follows a stop (with the embedded tokenizer
    the pad token is also the end-of-turn token, which once made a padded row count one token more)."""
    tok = tiny.tokenizer
    sampling = SamplingConfig(max_new_tokens=24, temperature=1.0, seed=0)
    texts = [c.text for g in tiny.generate(PROMPTS, 4, sampling) for c in g]
    stop = next(t for t in texts if len(t) >= 4)[1:4]
    for group in tiny.generate(PROMPTS, 4, sampling.with_(stop=(stop,))):
        for c in group:
            assert c.num_tokens == len(c.token_ids)
            if stop in c.text:
                assert c.finish_reason == "stop"
                # the last token is the one that completed the stop string
                assert stop not in tok.decode(c.token_ids[:-1], skip_special_tokens=True)
            assert tok.pad_token_id not in c.token_ids[:-1]


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


def test_backends_encode_prompts_without_a_second_bos(tiny) -> None:
    """Every token sampler (transformers, vLLM) encodes chats through `encode_prompts`. The rendered
    chat already holds the template's special tokens, so encoding must not add more (a tokenizer that
    adds a BOS, as Llama's does, stands in here: a second BOS would show up as the sentinel)."""
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

    got = encode_prompts(AddsBos(), PROMPTS)
    for prompt, ids in zip(PROMPTS, got, strict=True):
        text = render_prompt(tok, prompt)
        assert sentinel not in ids
        assert ids == tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text


def test_vllm_backend_sends_a_seeded_request_per_row(tiny, monkeypatch) -> None:
    """Without vLLM (GPU only): a stand-in `vllm` module records the requests `VLLMBackend` sends and
    answers with fixed tokens, so the mapping of settings, seeds and logprobs is checked here."""
    import sys
    import types

    from r3.generation.vllm_backend import VLLMBackend

    tok = tiny.tokenizer
    answer = tok("<answer>1</answer> more", add_special_tokens=False)["input_ids"]

    class Params:
        def __init__(self, **kwargs):
            self.__dict__.update(kwargs)

    class FakeLLM:
        def __init__(self):
            self.calls = []

        def get_tokenizer(self):
            return tok

        def generate(self, requests, params, use_tqdm=False):
            self.calls.append((requests, params))
            out = []
            for p in params:
                logprobs = (
                    [{t: types.SimpleNamespace(logprob=-0.5)} for t in answer] if p.logprobs == 0 else None
                )
                sample = types.SimpleNamespace(token_ids=answer, logprobs=logprobs, finish_reason="stop")
                out.append(types.SimpleNamespace(outputs=[sample]))
            return out

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(SamplingParams=Params))
    llm = FakeLLM()
    backend = VLLMBackend.over(llm)
    sampling = SamplingConfig(max_new_tokens=9, temperature=0.7, top_k=5, stop=("</answer>",), seed=3)
    groups = backend.generate(PROMPTS, 2, sampling)
    requests, params = llm.calls[-1]
    assert [r["prompt_token_ids"] for r in requests] == [
        ids for ids in encode_prompts(tok, PROMPTS) for _ in range(2)
    ]
    seeds = request_seeds(sampling, 2)
    assert [p.seed for p in params] == [sample_seed(s, j) for s in seeds for j in range(2)]
    assert {(p.n, p.temperature, p.top_k, p.max_tokens, p.logprobs) for p in params} == {(1, 0.7, 5, 9, None)}
    assert all(c.text == "<answer>1</answer>" and c.logprobs is None for g in groups for c in g)
    rows = backend.sample_tokens([[1, 2]], sampling.with_(temperature=0.0, logprobs=True, seeds=(5,)))
    _, params = llm.calls[-1]
    assert (params[0].temperature, params[0].top_k, params[0].seed) == (0.0, -1, 5)
    assert rows[0].logprobs == tuple([-0.5] * len(answer))


def test_completion_from_ids_decides_the_finish_reason(tiny) -> None:
    from r3.generation.base import completion_from_ids

    tok = tiny.tokenizer
    body = tok("<answer> 1 + 2 </answer> and more", add_special_tokens=False)["input_ids"]
    sampling = SamplingConfig(max_new_tokens=len(body), stop=("</answer>",))
    cut = completion_from_ids(tok, body, sampling)
    assert cut.text == "<answer> 1 + 2 </answer>" and cut.finish_reason == "stop"
    assert cut.num_tokens == len(body) and cut.token_ids == tuple(body)
    plain = completion_from_ids(tok, body, sampling.with_(stop=()))
    assert plain.finish_reason == "length"  # the whole budget, no stop string, no EOS
    ended = completion_from_ids(tok, [*body[:3], tok.eos_token_id], sampling.with_(stop=()))
    assert ended.finish_reason == "stop"
    told = completion_from_ids(tok, body, sampling, ended=False, logprobs=[-1.0] * len(body))
    assert told.finish_reason == "length" and told.logprobs == tuple([-1.0] * len(body))
