"""How an `r3 eval` fares with each thread setting, alone and beside a busy process.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/threads_benchmark.py --repeats 3

Three settings of the same `r3 eval` (the embedded model, Countdown, a few problems):

- `torch default`: torch's thread count with GNU OpenMP's own waiting (idle threads spin first), which
  is what an `r3` command did before it chose a wait policy. Run by importing torch before the
  command, so that `r3.threads.prepare_process` comes too late to change the policy;
- `r3 default`: the command as shipped (torch's thread count, idle threads sleep);
- `--threads 1`.

Each runs alone and beside a busy process (a pure Python loop that keeps one core busy, standing in
for any other job), in turns (A B C A B C ...) so that a drift of the machine hits every setting alike.
Prints each setting's median wall seconds and its ratio to `torch default` under the same condition.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

EVAL = ["eval", "--task", "countdown", "--max-new-tokens", "48", "--reflection-max-new-tokens", "48"]
#: Imports torch first, so `prepare_process` leaves OpenMP's own wait policy in place.
TORCH_FIRST = "import sys, torch; from r3.cli import main; sys.exit(main(sys.argv[1:]))"


def settings(limit: int, out: str) -> dict[str, list[str]]:
    """Each setting's command line."""
    args = [*EVAL, "--limit", str(limit), "--output-dir", out, "--overwrite", "--no-progress"]
    return {
        "torch default": [sys.executable, "-c", TORCH_FIRST, *args],
        "r3 default": [sys.executable, "-m", "r3.cli", *args],
        "--threads 1": [sys.executable, "-m", "r3.cli", *args, "--threads", "1"],
    }


def run_once(argv: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    env.pop("R3_THREADS", None)
    env["HF_HUB_OFFLINE"] = "1"
    started = time.monotonic()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def busy_process() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each setting per condition")
    parser.add_argument("--limit", type=int, default=4, help="problems per eval")
    args = parser.parse_args()
    import torch

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"(default {torch.get_num_threads()} threads); {args.limit} problems per eval, "
        f"{args.repeats} runs per setting and condition"
    )
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for condition in ("alone", "beside a busy process"):
            busy = busy_process() if condition != "alone" else None
            try:
                commands = settings(args.limit, f"{tmp}/out")
                run_once(commands["r3 default"])  # warm-up: the model's files in the page cache
                for _ in range(args.repeats):
                    for name, argv in commands.items():
                        results.setdefault((condition, name), []).append(run_once(argv))
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print("| condition | setting | median s | runs (s) | vs torch default |")
    print("|---|---|---|---|---|")
    for (condition, name), times in results.items():
        base = statistics.median(results[(condition, "torch default")])
        median = statistics.median(times)
        runs = ", ".join(f"{t:.1f}" for t in times)
        print(f"| {condition} | {name} | {median:.1f} | {runs} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
