"""Offline fixtures for the training tests: a word-level tokenizer, a tiny Llama, a toy task.

The toy task ("reflect A or B"): the task prompt is a query word `q0..q3`, the stored failed attempt
is `x` or `y`, a reflection is one word, `A` or `B`, and the retry succeeds iff it starts with `good`.
`pretrain` teaches a tiny random model the grammar so that, before R3:

    P(A | reflection prompt) ~= 0.5        (both reflections equally likely)
    retry after A -> "good end"            (success)
    retry after B -> "fail end"            (failure, as after any other one-word reflection)

so the only thing R3 can learn is to prefer the reflection that makes the retry succeed.
Nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from r3.generation.chat import render_prompt
from r3.mining.records import FailedAttempt, FailureRecord
from r3.tasks.base import Example, Prompt, Task, Verdict

SPECIAL = ["<pad>", "<eos>", "<unk>"]
WORDS = [
    "<|user|>",
    "<|assistant|>",
    "<|system|>",
    "q0",
    "q1",
    "q2",
    "q3",
    "x",
    "y",
    "reflect",
    "retry",
    "A",
    "B",
    "good",
    "fail",
    "end",
    "abcdef",
]  # transformers' StopStringCriteria probes the vocab with this word
QUERIES = ["q0", "q1", "q2", "q3"]


class ToyTask(Task):
    name = "toy"
    stop = ("end",)
    reflection_instruction = "reflect"
    retry_instruction = "retry"
    required_fields = ("q",)

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        return [{"q": q} for q in QUERIES][:limit]

    def prompt(self, example: Example) -> Prompt:
        return Prompt([{"role": "user", "content": example["q"]}])

    def verify(self, example: Example, completion: str) -> Verdict:
        words = completion.split()
        return Verdict.success() if words[:1] == ["good"] else Verdict.failure("not good")


def make_tokenizer(folder: Path | None = None) -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw, eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
    tok.padding_side = "left"
    if folder is not None:
        tok.save_pretrained(str(folder))
    return tok


def make_model(tokenizer: Any, seed: int = 0, hidden: int = 32) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def records(task: ToyTask | None = None) -> list[FailureRecord]:
    """One failure per query, alternating the failed attempt `x` / `y`."""
    return [
        FailureRecord("toy", i, {"q": q}, [FailedAttempt.of({"q": q}, "xy"[i % 2], "not good")], 4, 0)
        for i, q in enumerate(QUERIES)
    ]


def reflection_text(tokenizer: Any, query: str, attempt: str) -> str:
    return render_prompt(tokenizer, ToyTask().reflection_prompt({"q": query}, attempt))


#: Every one-word reflection the policy can write (and the empty one): the retry is taught to fail after
#: all of them but `A`. With only `A` and `B` taught, the retry after an unseen word is whatever the random
#: init makes it, and R3 rightly learns any word whose retry happens to succeed (measured on an AMD EPYC:
#: seed 1 learned to reflect `end`, P(A) 0.000 at retry success 1.00), which is not the toy's question.
REFLECTIONS = ["", *WORDS]


def pretrain(model: Any, tokenizer: Any, steps: int = 60, lr: float = 3e-2, seed: int = 0) -> None:
    """Teach the grammar: reflections A/B equally often, retry `good end` after A only, `fail end` after
    B and after every other one-word reflection (`REFLECTIONS`)."""
    task = ToyTask()
    pairs = []  # (prompt, completion): the loss covers the completion only
    for q in QUERIES:
        for attempt in ("x", "y"):
            for word in ("A", "B"):
                pairs.append((reflection_text(tokenizer, q, attempt), f" {word} <eos>"))
            for word in REFLECTIONS:
                retry = render_prompt(tokenizer, task.retry_prompt({"q": q}, attempt, word))
                pairs.append((retry, " good end <eos>" if word == "A" else " fail end <eos>"))
    # Right padding: positions then match generation's (which counts only real tokens).
    enc = tokenizer(
        [p + c for p, c in pairs],
        padding=True,
        padding_side="right",
        return_tensors="pt",
        add_special_tokens=False,
    )
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    for row, (prompt, _) in enumerate(pairs):
        labels[row, : len(tokenizer(prompt, add_special_tokens=False)["input_ids"])] = -100
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(**enc, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


@torch.no_grad()
def prob_a(model: Any, tokenizer: Any) -> float:
    """Exact mean P(first reflection token = A) over the training prompts (no sampling)."""
    model.eval()
    a, b = tokenizer.convert_tokens_to_ids(["A", "B"])
    probs = []
    for rec in records():
        ids = tokenizer(
            reflection_text(tokenizer, rec.example["q"], rec.failed_attempts[0].episode.attempt.text),
            add_special_tokens=False,
            return_tensors="pt",
        )["input_ids"]
        logits = model(input_ids=ids.to(model.device)).logits[0, -1].float()
        probs.append(torch.softmax(logits, -1)[a].item())
    del b
    return sum(probs) / len(probs)


def tiny_config(tmp_path: Path, **overrides: Any) -> Any:
    from r3.training.config import R3Config

    base: dict[str, Any] = dict(
        output_dir=str(tmp_path / "out"),
        task="toy",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        num_generations=8,
        per_device_train_batch_size=16,
        max_completion_length=4,
        retry_max_new_tokens=4,
        retry_temperature=0.0,
        temperature=1.0,
        learning_rate=1e-2,
        beta=0.0,
        max_steps=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        dataloader_num_workers=0,
    )
    base.update(overrides)
    return R3Config(**base)


def complete_checkpoints(out: Path) -> list[int]:
    """The steps of `out`'s checkpoints that were saved whole (`trainer_state.json` is written last)."""
    return sorted(
        int(p.name.split("-")[1]) for p in out.glob("checkpoint-*") if (p / "trainer_state.json").is_file()
    )


def toy_trainer(config: Any, tokenizer: Any, **pieces: Any) -> Any:
    """`build_trainer` on the toy task's records with a fresh tiny model; `pieces` add or override
    (an engine, rewards, another model)."""
    from r3.training.trainer import build_trainer

    defaults = {
        "model": make_model(tokenizer),
        "tokenizer": tokenizer,
        "task": ToyTask(),
        "records": records(),
    }
    return build_trainer(config, **{**defaults, **pieces})


def write_countdown_failures(path: Path, targets: tuple[int, ...]) -> Path:
    """A failures file of Countdown queries on the numbers 3, 5, 7, one per target, each with the failed
    attempt 3 + 5 + 7 (same numbers: every reflection prompt has the same number of tokens)."""
    from r3.tasks import get_task

    with path.open("w") as handle:
        for i, target in enumerate(targets):
            row = {"nums": [3, 5, 7], "target": target}
            attempt = FailedAttempt.of(row, "<answer>3 + 5 + 7</answer>", "evaluates to 15")
            record = FailureRecord("countdown", i, row, [attempt], samples_drawn=1, successes=0)
            handle.write(json.dumps(record.to_json(get_task("countdown"))) + "\n")
    return path
