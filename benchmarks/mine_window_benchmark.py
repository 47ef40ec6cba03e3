"""Mining in windows of queries against mining one query per call, on the embedded model, same run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/mine_window_benchmark.py [--queries 16] [--windows 1 4 8 16]

Each setting mines the same Countdown queries with `r3 mine`'s own `mine()` into a fresh folder:

- **before**: the sampler as it was before issue 9 (`legacy_backend.py`: `model.generate`, each sample
  prefilled on its own, rows run to the batch's end) with one query per generate call: today's
  sequential mining, the baseline every ratio is taken against;
- **window 1**: the current sampler (`r3.generation.decode`: one prefill per prompt, finished rows
  dropped), one query per call;
- **window W**: the current sampler, the W queries' prompts in one call per sampling round (the
  backend's batch holds them all).

Every query keeps its own seeds, so all current-sampler settings must write byte-identical
`failures.jsonl`; the script checks it. (The baseline samples by another method, Gumbel-max, so its
rows differ: it is there for its cost only.)

`--dtypes float32 bfloat16` runs the whole comparison once per dtype of the weights (`r3 mine --dtype`),
each against the baseline in the same dtype, and also gives each row's ratio to the first dtype's
baseline. bfloat16 weights are for sampling only (training in them loses small updates); they change
the samples a little, so rows are compared within a dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=16)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--budget", type=int, default=8)
    parser.add_argument("--round-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--dtypes",
        nargs="+",
        default=["float32"],
        help="weights' dtypes, each a full comparison (bfloat16: sampling only)",
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from r3.generation.transformers_backend import TransformersBackend
    from r3.mining.mine import MineConfig, mine
    from r3.models import display_name, load_model_and_tokenizer
    from r3.tasks import get_task

    task = get_task("countdown", min_nums=3, max_nums=3, max_number=20, max_target=60)
    examples = task.load(None, limit=args.queries, seed=2000)
    from legacy_backend import LegacyBackend

    rows: list[dict[str, object]] = []
    identical: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype in args.dtypes:
            started = time.perf_counter()
            model, tokenizer = load_model_and_tokenizer(None, device="cpu", dtype=dtype)
            print(
                f"embedded model loaded in {time.perf_counter() - started:.1f} s ({dtype}); {cpu_name()}, "
                f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
            )
            outputs: dict[str, bytes] = {}
            settings = [("before", 1)] + [(f"window {w}", w) for w in args.windows]
            for label, window in settings:
                # The backend's batch holds the whole window's samples: one forward pass per token.
                kind = LegacyBackend if label == "before" else TransformersBackend
                backend = kind(
                    model, tokenizer, batch_size=window * args.round_size, model_name=display_name(None)
                )
                config = MineConfig(
                    budget=args.budget, round_size=args.round_size, keep=2, full=True, seed=1,
                    max_new_tokens=args.max_new_tokens, window=window,
                )  # fmt: skip
                folder = Path(tmp) / dtype / label.replace(" ", "-")
                summary = mine(task, examples, backend, folder, config, identity={"model": "embedded"})
                if label != "before":
                    outputs[label] = (folder / "failures.jsonl").read_bytes()
                rows.append(
                    {
                        "dtype": dtype,
                        "setting": label,
                        "samples": summary.samples,
                        "seconds": round(summary.wall_seconds, 2),
                        "samples_per_second": round(summary.samples_per_second, 3),
                        "queries_kept": summary.queries_kept,
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
            identical[dtype] = len(set(outputs.values())) == 1
            del model
    first_dtype = args.dtypes[0]
    first = next(r for r in rows if r["dtype"] == first_dtype and r["setting"] == "before")
    print(
        "\n| dtype | setting | samples | seconds | samples/s | ratio to before (same dtype) | "
        f"ratio to before ({first_dtype}) | kept |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        base = next(r for r in rows if r["dtype"] == row["dtype"] and r["setting"] == "before")
        ratio = row["samples_per_second"] / base["samples_per_second"]  # type: ignore[operator]
        to_first = row["samples_per_second"] / first["samples_per_second"]  # type: ignore[operator]
        row["ratio"], row["ratio_to_first_dtype"] = round(ratio, 2), round(to_first, 2)
        print(
            f"| {row['dtype']} | {row['setting']} | {row['samples']} | {row['seconds']} | "
            f"{row['samples_per_second']} | {ratio:.2f}x | {to_first:.2f}x | {row['queries_kept']} |"
        )
    for dtype, same in identical.items():
        print(f"\nfailures.jsonl identical across the current sampler's windows, {dtype}: {same}")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"rows": rows, "identical": identical, "cpu": cpu_name()}, indent=1)
        )
    if not identical.get("float32", True):
        raise SystemExit("the windows wrote different rows in float32")


if __name__ == "__main__":
    main()
