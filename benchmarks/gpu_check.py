"""The GPU paths CI cannot run, as one short script for a machine with a CUDA GPU and `pip install -e
".[vllm]"` (the `device` tool runs it when a GPU is lent):

    python benchmarks/gpu_check.py --output runs/gpu-check

1. `r3 mine` on the embedded model through `--backend vllm` (a failures file to train on);
2. `r3 train`, two steps, with TRL's colocated vLLM (`use_vllm: true`, `vllm_mode: colocate`): weights
   synced into the engine in-process, generation through `VLLMBackend.over`;
3. `r3 train`, two steps, in server mode against `trl vllm-serve` on the same GPU (a small share of its
   memory): TRL's NCCL weight sync (`init_communicator`), then R3's seeded request per row.

Each step's exit status, wall time and log tail go to OUTPUT/gpu_check.json; the script exits non-zero
if any failed. Not yet run on a GPU in this repository (no GPU was lent when it was written).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTDOWN = json.dumps({"min_nums": 3, "max_nums": 3})


def run(name: str, command: list[str], log: Path, results: dict, timeout: float = 900) -> bool:
    started = time.monotonic()
    with log.open("w") as handle:
        try:
            code = subprocess.run(
                command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, timeout=timeout
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    tail = log.read_text()[-3000:]
    results[name] = {"exit": code, "seconds": round(time.monotonic() - started, 1), "tail": tail}
    print(f"{name}: exit {code} in {results[name]['seconds']} s", flush=True)
    return code == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--output", default="runs/gpu-check")
    args = parser.parse_args()
    out = (ROOT / args.output).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from r3.models import embedded_model_dir

    model = str(embedded_model_dir())
    r3 = [sys.executable, "-m", "r3.cli"]
    results: dict = {}
    mined = run(
        "mine_vllm",
        [*r3, "mine", "--backend", "vllm", "--model", model, "--limit", "32", "--budget", "4", "--full",
         "--keep", "2", "--temperature", "1.0", "--max-new-tokens", "24", "--output-dir", str(out / "mine"),
         "--engine-arg", "gpu_memory_utilization=0.3", "--task-arg=min_nums=3", "--task-arg=max_nums=3"],
        out / "mine.log", results,
    )  # fmt: skip
    train = [
        *r3, "train", "--config", "recipes/smollm2_countdown_warm_r3.yaml", "--model", model,
        "--failures", str(out / "mine" / "failures.jsonl"), "--task_args", COUNTDOWN, "--max_steps", "2",
        "--min_successes", "0", "--use_cpu", "false", "--bf16", "true", "--use_vllm", "true",
        "--vllm_gpu_memory_utilization", "0.3", "--overwrite", "true",  # a rerun checks afresh
    ]  # fmt: skip
    if mined:
        run("train_colocate", [*train, "--vllm_mode", "colocate", "--output_dir", str(out / "colocate")],
            out / "colocate.log", results)  # fmt: skip
        port = free_port()
        server = subprocess.Popen(
            ["trl", "vllm-serve", "--model", model, "--port", str(port), "--gpu_memory_utilization", "0.3"],
            cwd=ROOT, stdout=(out / "server.log").open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and server.poll() is None:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                    break
                except OSError:
                    time.sleep(2)
            run("train_server", [*train, "--vllm_mode", "server", "--vllm_server_base_url",
                f"http://127.0.0.1:{port}", "--output_dir", str(out / "server")], out / "server_train.log",
                results)  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=60)
    (out / "gpu_check.json").write_text(json.dumps(results, indent=1))
    failed = [name for name, r in results.items() if r["exit"] != 0]
    print("gpu check:", "all passed" if not failed else f"failed: {', '.join(failed)}")
    return 1 if failed or not mined else 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
