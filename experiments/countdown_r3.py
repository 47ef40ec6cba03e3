"""The learning experiment: does R3 make a warm-started SmolLM2-135M better at Countdown, with controls?

    python experiments/countdown_r3.py --config experiments/countdown.yaml            # `make experiment`
    python experiments/countdown_r3.py --config experiments/demo.yaml --output runs/demo   # `make demo`

Every step is an `r3` command, run as a user would run it, into one output folder:

    warmstart/                the warm-started model (`r3 sft`, cached in $R3_CACHE/warmstart/<key>)
    mine/                     `r3 mine --full` of the warm-started model's failures (mining seed)
    trained/                  `r3 train`, reward = the retry's success (R3)
    trained-shuffled/         the same training with rewards shuffled within each group (control)
    trained-grpo/             plain GRPO on first attempts of the same queries, same optimizer and
                              steps (`r3 train --mode grpo`): the bar R3 must clear
    eval-<model>/             `r3 eval`, greedy, reflect + retry, on the evaluation seed
    eval-<model>-resample/    `r3 eval --second-try resample` at a temperature > 0: a second attempt
                              without reflection (how much of a second-try gain needs a reflection?),
                              for the models in `eval.resample_models` (default: all)
    report/                   `r3 report` over the three models, `experiment.md` (table, tests), curves
    forgetting/               `r3 forgetting`: lm-eval's local r3_basics task on the vanilla model and
                              each of the above (what training cost elsewhere)

Seeds: SFT rows, mining rows and evaluation rows come from disjoint seeds of Countdown's generator.
`--split validation` evaluates on the validation seed (for choosing settings); `--split heldout` (the
default) on the held-out seed, which no setting was tuned on. Each step is skipped or resumed when its
output exists, so an interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from r3.reports.experiment import LABELS, write_experiment_report

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("warmstart", "trained", "shuffled", "grpo")
#: Each trained model: its folder and what its `r3 train` differs in (on top of the config's `train`).
VARIANTS = {
    "trained": ("trained", {"reward_funcs": "retry_success"}),
    "shuffled": ("trained-shuffled", {"reward_funcs": "retry_success_shuffled"}),
    "grpo": ("trained-grpo", {"mode": "grpo", "reward_funcs": "attempt_success"}),
}


def r3(*args: str, log: Path) -> None:
    """Run one `r3` command; its output goes to the console and to `log`."""
    command = [sys.executable, "-m", "r3.cli", *args]
    print(f"\n$ r3 {' '.join(args)}", flush=True)
    started = time.monotonic()
    with log.open("a") as handle:
        handle.write(f"$ r3 {' '.join(args)}\n")
        handle.flush()
        proc = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
        handle.write(f"# exit {proc.returncode} after {time.monotonic() - started:.0f} s\n")
    if proc.returncode != 0:
        sys.exit(f"experiment: `r3 {args[0]}` failed (exit {proc.returncode}); see {log}")
    print(f"  done in {time.monotonic() - started:.0f} s", flush=True)


def task_flags(cfg: dict[str, Any]) -> list[str]:
    return [f"--task-arg={k}={v}" for k, v in cfg["task_args"].items()]


def link_tree(source: Path, target: Path) -> None:
    """`target` as a copy of `source` made of hard links (no second 500 MB copy of the weights)."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(source, tmp, copy_function=os.link)
    except OSError:  # another file system: a real copy
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(source, tmp)
    tmp.rename(target)


def warmstart(cfg: dict[str, Any], out: Path, log: Path) -> Path:
    """The warm-started model, trained once per settings and cached like the converted model."""
    target = out / "warmstart"
    if (target / "config.json").is_file():
        return target
    # `sft.task_args`: the warm-start's own problems, when the experiment's task differs from them (a
    # harder or easier Countdown on the same warm-start); the cache key is unchanged where it is absent.
    sft = {k: v for k, v in cfg["sft"].items() if k != "task_args"}
    task_args = cfg["sft"].get("task_args", cfg["task_args"])
    key = hashlib.sha256(json.dumps([sft, task_args], sort_keys=True).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("R3_CACHE", Path.home() / ".cache" / "r3")) / "warmstart" / key
    if not (cache / "config.json").is_file():
        flags = [f"--{k}={v}" for k, v in sft.items() if k != "recipe"]
        r3(
            "sft", "--config", sft["recipe"], "--output_dir", str(cache), "--resume", "true",
            "--task_args", json.dumps(task_args), *flags, log=log,
        )  # fmt: skip
    link_tree(cache, target)
    return target


def evaluate(cfg: dict[str, Any], model: Path, folder: Path, seed: int, log: Path, resample: bool) -> None:
    ev = cfg["eval"]
    flags = [
        "eval", "--model", str(model), "--output-dir", str(folder), "--seed", str(seed),
        "--limit", str(ev["limit"]), "--max-new-tokens", str(ev["max_new_tokens"]),
        "--reflection-max-new-tokens", str(ev["reflection_max_new_tokens"]),
        "--batch-size", str(ev["batch_size"]), "--device", "cpu", "--no-progress", *task_flags(cfg),
    ]  # fmt: skip
    if resample:
        flags += ["--second-try", "resample", "--temperature", str(ev["resample_temperature"])]
    r3(*flags, log=log)


def mine(cfg: dict[str, Any], model: Path, out: Path, log: Path) -> Path:
    mi = cfg["mine"]
    if mi.get("reuse"):  # a variant that trains on another run's mining of the same warm-start
        failures = ROOT / mi["reuse"] / "mine" / "failures.jsonl"
        if not failures.is_file():
            sys.exit(f"experiment: mine.reuse: {failures} not found (run that experiment first)")
        return failures
    folder = out / "mine"
    r3(
        "mine", "--model", str(model), "--output-dir", str(folder), "--seed", str(cfg["seeds"]["mine"]),
        "--limit", str(mi["limit"]), "--budget", str(mi["budget"]), "--round-size", str(mi["budget"]),
        "--full", "--keep", str(mi["keep"]), "--max-new-tokens", str(cfg["eval"]["max_new_tokens"]),
        "--window", "8", "--batch-size", str(8 * mi["budget"]),  # a window's samples in one batch
        "--temperature", str(mi["temperature"]), "--device", "cpu", "--no-progress", *task_flags(cfg),
        *screen_flags(cfg), log=log,
    )  # fmt: skip
    return folder / "failures.jsonl"


def screen_flags(cfg: dict[str, Any]) -> list[str]:
    """`r3 mine --screen K`: each kept failure scored by K sampled reflections with their retries
    (the retry sampled as training samples it), for `r3 train --selection learnable`."""
    mi = cfg["mine"]
    if not mi.get("screen"):
        return []
    return [
        "--screen", str(mi["screen"]), "--screen-retry-temperature", str(mi["screen_retry_temperature"]),
        "--reflection-max-new-tokens", str(cfg["eval"]["reflection_max_new_tokens"]),
    ]  # fmt: skip


def train(cfg: dict[str, Any], model: Path, failures: Path, name: str, out: Path, log: Path) -> Path:
    """`r3 train` of one variant: the config's `train` fields, the variant's own (`VARIANTS`), then
    the config's `<name>` section (e.g. `grpo:` sets plain GRPO's completion budget and batch)."""
    folder_name, own = VARIANTS[name]
    folder = out / folder_name
    if (folder / "config.json").is_file():
        return folder
    fields = {**cfg["train"], **own, **(cfg.get(name) or {})}
    flags = [f"--{k}={v}" for k, v in fields.items() if k != "recipe"]
    r3(
        "train", "--config", fields["recipe"], "--model", str(model), "--failures", str(failures),
        "--output_dir", str(folder), "--resume", "true", "--task_args", json.dumps(cfg["task_args"]),
        *flags, log=log,
    )  # fmt: skip
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "experiments" / "countdown.yaml"))
    parser.add_argument("--output", default=None, help="output folder (default: the config's)")
    parser.add_argument("--split", choices=["validation", "heldout"], default="heldout")
    args = parser.parse_args(argv)
    cfg = yaml.safe_load(Path(args.config).read_text())
    out = Path(args.output or cfg["output"])
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    seed = cfg["seeds"][args.split]
    suffix = "" if args.split == "heldout" else "-validation"
    started = time.monotonic()

    models = {"warmstart": warmstart(cfg, out, log)}
    failures = mine(cfg, models["warmstart"], out, log)
    names = ["warmstart", "trained"]
    if cfg.get("control", True):  # the demo has no control, to stay within its time budget
        names.append("shuffled")
    if cfg.get("grpo") is not None:  # plain GRPO at equal compute: its section sets what differs
        names.append("grpo")
    for name in names[1:]:
        models[name] = train(cfg, models["warmstart"], failures, name, out, log)
    for name in names:
        evaluate(cfg, models[name], out / f"eval-{name}{suffix}", seed, log, resample=False)
        if cfg["eval"].get("resample_temperature") and name in cfg["eval"].get("resample_models", names):
            evaluate(cfg, models[name], out / f"eval-{name}-resample{suffix}", seed, log, resample=True)

    report = out / f"report{suffix}"
    r3(
        "report", *[str(out / f"eval-{name}{suffix}") for name in names],
        "--labels", *[LABELS[name] for name in names], "--output-dir", str(report), "--html", log=log,
    )  # fmt: skip
    if cfg.get("forgetting"):
        r3(
            "forgetting", "--models", "embedded", *[str(models[name]) for name in names],
            "--labels", "vanilla", *[LABELS[name] for name in names], "--tasks", cfg["forgetting"]["tasks"],
            "--device", "cpu", "--output_dir", str(out / "forgetting"), log=log,
        )  # fmt: skip
    text = write_experiment_report(
        out, report, suffix, split=args.split, seed=seed, config=cfg,
        wall_seconds=time.monotonic() - started,
    )  # fmt: skip
    print("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
