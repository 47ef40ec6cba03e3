"""Benchmark of `r3 mine`: samples and seconds per kept query, adaptive rule against `--full`.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/mine_benchmark.py [--threads 1] [--json out.json]

Two parts (not a timed test; prints a Markdown table for benchmarks/README.md):

1. The embedded model itself (SmolLM2-135M-Instruct, transformers backend) mines a few Countdown
   queries, adaptive and full. Its seconds per sample, at round size 8 on a Countdown prompt, is the
   price charged for every simulated sample in part 2.
2. Simulated models of first-try success 10%, 50% and 90% (a scripted generator, no weights) mine
   many queries at the paper's budget, adaptive and full. Two populations of queries: every query
   solved with the same probability p ("uniform"), and per-query rates drawn from Beta(2p, 2(1-p))
   with mean p ("mixed": some queries always solved, some never, as real data is).

Why the adaptive rule wins: a kept query costs one round once it fails, instead of the whole
budget; queries that are never failed cost the whole budget either way. So the saving is large when
the model fails often and shrinks as success approaches 100%.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from r3.generation.base import SamplingConfig
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, mine
from r3.tasks.base import Example, Prompt, Task, Verdict


class SimTask(Task):
    """A query is a coin of known success rate `p`; the prompt carries `p` for the scripted model."""

    name = "simulated"

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        raise NotImplementedError("built by population()")

    def prompt(self, example: Example) -> Prompt:
        return Prompt([{"role": "user", "content": f"query {example['id']} p={example['p']!r}"}])

    def verify(self, example: Example, completion: str) -> Verdict:
        return Verdict.success() if completion == "right" else Verdict.failure("wrong")


def simulated_model() -> ScriptedGenerator:
    def respond(prompt: Prompt, sampling: SamplingConfig, index: int) -> str:
        p = float(prompt.messages[-1]["content"].rsplit("p=", 1)[1])
        return "right" if random.Random(f"{sampling.seed}:{index}").random() < p else "wrong"

    return ScriptedGenerator(respond, model_name="simulated")


def population(kind: str, p: float, n: int, seed: int = 0) -> list[Example]:
    rng = random.Random(f"{kind}:{p}:{seed}")
    rates = [p] * n if kind == "uniform" else [rng.betavariate(2 * p, 2 * (1 - p)) for _ in range(n)]
    return [{"id": i, "p": rate} for i, rate in enumerate(rates)]


def run_mine(
    task: Task, examples: list[Example], generator: Any, config: MineConfig, folder: Path
) -> dict[str, Any]:
    started = time.perf_counter()
    summary = mine(task, examples, generator, folder, config, identity={"model": "benchmark"})
    return {
        "queries": summary.queries_seen,
        "kept": summary.queries_kept,
        "samples": summary.samples,
        "tokens": summary.tokens,
        "seconds": time.perf_counter() - started,
    }


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or cpu
    import torch

    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} thread(s)"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--real-queries", type=int, default=10)
    ap.add_argument("--real-budget", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--round-size", type=int, default=8)
    ap.add_argument("--sim-queries", type=int, default=300)
    ap.add_argument("--sim-budget", type=int, default=64)
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument(
        "--seconds-per-sample",
        type=float,
        default=None,
        help="skip the embedded model and charge this per simulated sample (quick checks)",
    )
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from r3.generation.loader import load_generator
    from r3.tasks import get_task

    results: dict[str, Any] = {"machine": machine(), "args": vars(args)}
    print(f"machine: {results['machine']}", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        # ---- 1. The embedded model, mining Countdown for real.
        real: dict[str, Any] = {}
        results["load_seconds"] = 0.0
        modes = ("adaptive", "full") if args.seconds_per_sample is None else ()
        if modes:
            t0 = time.perf_counter()
            generator = load_generator(None, "transformers")
            results["load_seconds"] = time.perf_counter() - t0
            task = get_task("countdown")
            examples = task.load(None, limit=args.real_queries, seed=0)
        for mode in modes:
            config = MineConfig(
                budget=args.real_budget,
                round_size=args.round_size,
                full=mode == "full",
                max_new_tokens=args.max_new_tokens,
            )
            real[mode] = run_mine(task, examples, generator, config, Path(tmp) / f"real-{mode}")
            print(f"embedded {mode}: {real[mode]}", file=sys.stderr)
        spent = sum(r["seconds"] for r in real.values())
        drawn = sum(r["samples"] for r in real.values())
        cost = spent / drawn if drawn else args.seconds_per_sample
        results["embedded"] = real
        results["seconds_per_sample"] = cost

        # ---- 2. Simulated models at the paper's budget, charged the embedded model's cost per sample.
        sim: list[dict[str, Any]] = []
        for kind in ("uniform", "mixed"):
            for p in (0.1, 0.5, 0.9):
                exs = population(kind, p, args.sim_queries)
                row: dict[str, Any] = {"population": kind, "p": p}
                for mode in ("adaptive", "full"):
                    config = MineConfig(
                        budget=args.sim_budget, round_size=args.round_size, full=mode == "full"
                    )
                    r = run_mine(
                        SimTask(), exs, simulated_model(), config, Path(tmp) / f"sim-{kind}-{p}-{mode}"
                    )
                    row[mode] = r
                assert row["adaptive"]["kept"] == row["full"]["kept"]
                sim.append(row)
        results["simulated"] = sim

    print_table(results, args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _per_kept(r: dict[str, Any], seconds: float) -> str:
    return f"{seconds / r['kept']:.1f}" if r["kept"] else "n/a"


def print_table(results: dict[str, Any], args: argparse.Namespace) -> None:
    cost = results["seconds_per_sample"]
    print(f"Machine: {results['machine']}. Embedded model load: {results['load_seconds']:.1f} s.\n")
    print(
        f"Embedded model (SmolLM2-135M-Instruct, transformers, CPU), Countdown, {args.real_queries} queries, "
        f"budget {args.real_budget}, round size {args.round_size}, max_new_tokens {args.max_new_tokens}; "
        f"measured {cost:.2f} s per sample:\n"
    )
    print("| mode | queries kept | samples | samples / query | seconds | seconds / kept query |")
    print("|---|---|---|---|---|---|")
    for mode, r in results["embedded"].items():
        print(
            f"| {mode} | {r['kept']}/{r['queries']} | {r['samples']} | {r['samples'] / r['queries']:.1f} | "
            f"{r['seconds']:.1f} | {_per_kept(r, r['seconds'])} |"
        )
    print(
        f"\nSimulated models, {args.sim_queries} queries, budget {args.sim_budget}, round size "
        f"{args.round_size}, each sample charged {cost:.2f} s:\n"
    )
    print(
        "| queries | first-try success | kept | samples adaptive | samples full | fewer samples | "
        "s / kept query adaptive | s / kept query full |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in results["simulated"]:
        a, f = row["adaptive"], row["full"]
        print(
            f"| {row['population']} | {row['p']:.0%} | {a['kept']}/{a['queries']} | {a['samples']} | "
            f"{f['samples']} | {f['samples'] / a['samples']:.1f}x | {_per_kept(a, a['samples'] * cost)} | "
            f"{_per_kept(f, f['samples'] * cost)} |"
        )


if __name__ == "__main__":
    sys.exit(main())
