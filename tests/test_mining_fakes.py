"""Test doubles for the mining tests: a coin-flip task and a scripted model of known success rates.

Importable by subprocesses (put `tests/` on PYTHONPATH). Run as a script, it mines into a folder
with a small sleep per sample, so that a test can kill it mid-run:

    python tests/test_mining_fakes.py OUTPUT_DIR SLEEP_SECONDS
"""

from __future__ import annotations

import random
import sys
import time
from typing import Any

from r3.errors import DataError
from r3.generation.base import SamplingConfig
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, query_seed
from r3.tasks.base import Example, Prompt, Task, Verdict, load_rows


class CoinTask(Task):
    """Each example is a coin `{"id": int, "p": float}`; the model 'succeeds' with probability p.

    The success rate is written into the prompt, so a scripted model can read it back."""

    name = "coin"
    stop = ("</answer>",)
    required_fields = ("id", "p")

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        if data is None:
            rng = random.Random(seed)
            rows = [{"id": i, "p": round(rng.choice([0.0, 0.1, 0.5, 0.9, 1.0]), 2)} for i in range(40)]
            return rows[:limit] if limit is not None else rows
        return load_rows(self, data, limit)

    def validate(self, row: Any, index: int, source: str) -> Example:
        example = super().validate(row, index, source)
        if not isinstance(example["p"], (int, float)) or not 0 <= example["p"] <= 1:
            raise DataError(source, index, "p", "expected a probability in [0, 1]")
        return example

    def prompt(self, example: Example) -> Prompt:
        return Prompt([{"role": "user", "content": f"coin {example['id']} p={example['p']}"}])

    def verify(self, example: Example, completion: str) -> Verdict:
        if completion.startswith("<answer>heads"):
            return Verdict.success()
        return Verdict.failure(f"tails ({completion[:40]})")


def coin_p(prompt: Prompt) -> float:
    return float(prompt.messages[-1]["content"].rsplit("p=", 1)[1])


def outcome(p: float, seed: int, index: int) -> bool:
    """The scripted model's verdict for sample `index` of a call seeded `seed` (True = success)."""
    return random.Random(f"{seed}:{index}").random() < p


def coin_respond(prompt: Prompt, sampling: SamplingConfig, index: int) -> str:
    ok = outcome(coin_p(prompt), sampling.seed, index)
    side = "heads" if ok else "tails"
    # Text after the stop string checks that the stop is applied.
    return f"<answer>{side} {sampling.seed}:{index}</answer> trailing"


def coin_generator(sleep: float = 0.0) -> ScriptedGenerator:
    def respond(prompt: Prompt, sampling: SamplingConfig, index: int) -> str:
        if sleep:
            time.sleep(sleep)
        return coin_respond(prompt, sampling, index)

    return ScriptedGenerator(respond, model_name="coin-model")


def expected_cost(examples: list[Example], config: MineConfig) -> tuple[set[int], int, int]:
    """Replay the script: the queries that must be kept, and samples drawn adaptively and in full."""
    kept: set[int] = set()
    adaptive = full = 0
    for qi, ex in enumerate(examples):
        drawn = failures = 0
        stopped_at: int | None = None
        r = 0
        while drawn < config.budget:
            n = min(config.round_size, config.budget - drawn)
            seed = query_seed(config.seed, qi, r)
            failures += sum(not outcome(ex["p"], seed, i) for i in range(n))
            drawn += n
            r += 1
            if stopped_at is None and failures >= config.keep:
                stopped_at = drawn
        if failures:
            kept.add(qi)
        adaptive += stopped_at if stopped_at is not None else drawn
        full += drawn
    return kept, adaptive, full


KILL_CONFIG = MineConfig(budget=6, round_size=2, keep=2, seed=3, max_new_tokens=8)


def main(argv: list[str]) -> int:
    from r3.mining.mine import mine

    output_dir, sleep = argv[0], float(argv[1])
    task = CoinTask()
    examples = task.load(None, limit=24, seed=5)
    mine(task, examples, coin_generator(sleep), output_dir, KILL_CONFIG, identity={"model": "coin-model"})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
