"""Benchmark: `r3 mine` through vLLM's CPU build against the transformers sampler, same queries, budget
and machine (issue 19). Not a timed test; prints a Markdown table for benchmarks/README.md.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/vllm_mine_benchmark.py [--limit 32] [--json out.json]

Both runs are `r3 mine --full` of the embedded SmolLM2-135M on the same Countdown queries (8 samples
each at T = 1, 24 new tokens), as a user would run them: the transformers backend from this
environment (float32, the default on CPU), the vLLM backend from `.venv-vllm` (`make vllm-env`;
its default bfloat16, then float32; eager, engine in-process, 1 GiB of KV cache). Wall time includes
loading the model (vLLM's engine start is part of what a user waits for); samples per second is
also given from the command's own timing of its sampling (`summary.json`). The kept sets are compared
by query: the two backends draw different samples (other arithmetic, other random streams), so what
can agree is the rate at which queries fail, not the rows themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VLLM_PY = ROOT / ".venv-vllm" / "bin" / "python"


def mine(
    python: Path | str, backend: str, out: Path, limit: int, batch_size: int, dtype: str = "auto"
) -> dict[str, Any]:
    flags = [
        "mine", "--dtype", dtype, "--backend", backend, "--limit", str(limit), "--budget", "8",
        "--round-size", "8", "--full", "--keep", "1", "--temperature", "1.0", "--max-new-tokens", "24",
        "--window", "8",
        "--batch-size", str(batch_size), "--seed", "2000", "--no-progress", "--output-dir", str(out),
        "--task-arg=min_nums=3", "--task-arg=max_nums=3", "--task-arg=max_number=20",
        "--task-arg=max_target=60",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    env["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    env.pop("PYTHONPATH", None)
    started = time.monotonic()
    done = subprocess.run(
        [str(python), "-m", "r3.cli", *flags], cwd=ROOT, env=env, capture_output=True, text=True
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        sys.exit(f"{backend}: r3 mine failed:\n{done.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    rows = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines() if line.strip()]
    return {
        "backend": f"{backend} ({dtype})",
        "wall_seconds": round(wall, 1),
        "sampling_seconds": summary["wall_seconds"],
        "samples": summary["samples"],
        "tokens": summary["tokens"],
        "samples_per_second": round(summary["samples"] / summary["wall_seconds"], 2),
        "tokens_per_second": round(summary["tokens"] / summary["wall_seconds"], 1),
        "kept": sorted(r["query_index"] for r in rows if r["failed_attempts"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not (ROOT / ".venv-vllm" / ".r3-vllm-env-done").is_file():
        sys.exit("the CPU vLLM environment is not built: make vllm-env")
    with tempfile.TemporaryDirectory() as tmp:
        results = [
            mine(sys.executable, "transformers", Path(tmp) / "hf", args.limit, 64),
            mine(VLLM_PY, "vllm", Path(tmp) / "vllm", args.limit, 64),
            mine(VLLM_PY, "vllm", Path(tmp) / "vllm32", args.limit, 64, dtype="float32"),
        ]
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}"
    print(f"\nMachine: {machine}; {args.limit} queries x 8 samples\n")
    print("| backend | wall (s, with load) | sampling (s) | samples/s | tokens/s | kept queries |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['backend']} | {r['wall_seconds']} | {r['sampling_seconds']} | {r['samples_per_second']} "
            f"| {r['tokens_per_second']} | {len(r['kept'])} |"
        )
    hf, vl = (set(r["kept"]) for r in results[:2])
    print(f"\nKept by both: {len(hf & vl)}; only transformers: {len(hf - vl)}; only vLLM: {len(vl - hf)}")
    ratio = results[0]["sampling_seconds"] / results[1]["sampling_seconds"]
    print(f"vLLM's sampling time against transformers': {ratio:.2f}x as fast")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
