"""Verifier speed: the worst time of the Countdown and function-calling verifiers on hostile inputs
up to 100 KB, and on ordinary answers, against the standard library's parser on the same text.

    .venv/bin/python benchmarks/verifier_benchmark.py [--repeats 5] [--random 200] [--json out.json]

Target (issue 2): every verdict in under 50 ms for any input up to 100 KB; ordinary answers well
under a millisecond. Not a timed test: run it by hand, paste the table into benchmarks/README.md.

Inputs: a fixed corpus of adversarial texts (deep nesting, huge literals, repeated tags, long
operator chains, broken JSON, surrogates; for function calling also `<think>` tags by the thousand
and thousands of calls in plain text), plus `--random` random 100 KB strings drawn from the
characters that matter to each parser (seeded). Each input is timed `--repeats` times and its
median kept; the table shows the worst and the median over inputs. The function-calling verifier is
timed twice on the fixed inputs: strict (the default) and with `defaults_as_omitted=True`.

Baseline, measured in the same run on the same texts: `ast.parse(text, mode="eval")` for Countdown
and `json.loads(text)` for function calling (parse only, nothing is executed; their exceptions are
caught). The ratio says what the verifier costs next to just parsing the text with the standard
library, which itself has no bound on time or depth that the verifier could rely on.
"""

from __future__ import annotations

import argparse
import ast
import json
import platform
import random
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

from r3.tasks.countdown import CountdownTask
from r3.tasks.function_calling import FunctionCallingTask

KB100 = 100_000

COUNTDOWN_EXAMPLE = {"nums": [3, 5, 7, 11], "target": 23}
COUNTDOWN_ORDINARY = [
    "Let me think: 3 + 5 = 8, 8 + 11 = 19... <answer> (3 * 5) + 7 + 11 - 10 </answer>",
    "<answer> 11 + 7 + 5 * 3 </answer>",  # wrong value
    "<answer> (11 - 7) * 5 + 3 = 23 </answer>",
    "<answer> 3 + 5 + 7 + 11 + 1 </answer>",  # a number not given
    "I could not find it.",
]

FC_TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather.",
        "parameters": {"city": {"type": "str"}, "units": {"type": "str", "default": "metric"}},
    },
    {"name": "get_time", "description": "Time.", "parameters": {"zone": {"type": "str"}}},
]
FC_EXAMPLE = {
    "query": "Weather in Paris?",
    "tools": json.dumps(FC_TOOLS),
    "answers": json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}]),
}
FC_ORDINARY = [
    '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
    '```json\n[{"name": "get_weather", "arguments": {"city": "Lyon"}}]\n```',
    '<tool_call>{"name": "get_time", "arguments": {"zone": "CET"}}</tool_call>',
    "I think you should call get_weather for Paris.",
    '[{"name": "get_weather", "arguments": {"city": "Paris", "units": "metric"}}]',
    '<think>\nThe user wants Paris; maybe <tool_call>? Draft: [{"name": "get_weather", "arguments": '
    '{"city": "Lyon"}}]\n</think>\n\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n'
    "</tool_call>",
    'My call {"name": "get_weather", "arguments": {"city": "paris"}} failed: {"error": "unknown city"}. '
    'Retrying: {"name": "get_weather", "arguments": {"city": "Paris"}}',
    'Draft: [{"name": "get_time", "arguments": {"zone": "CET"}}]\nCorrected: '
    '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
]
FC_CALL = '{"name": "get_weather", "arguments": {"city": "Paris"}}'


def countdown_hostile() -> list[str]:
    return [
        "a" * KB100,
        "(" * KB100,
        "<answer>" * 12_000,
        "</answer>" * 11_000,
        "<answer>" + "1+" * 49_990 + "1</answer>",
        "<answer>" + "(" * 49_990 + "1" + ")" * 49_990 + "</answer>",
        "<answer>" + "-" * 99_000 + "3</answer>",
        "<answer>" + "9" * 99_000 + "</answer>",
        "<answer>" + "3*" * 400 + "3</answer>",
        "<answer> 3 + 5 + 7 + 11 = " + "9" * 99_000 + "</answer>",
        ("<answer>" + "(" * 200 + "1" + ")" * 200 + "</answer>") * 200,
        "<answer>" + "\x00\ud800" * 49_000 + "</answer>",
        "<answer>" + "3 / (5 - 5) " * 8000 + "</answer>",
    ]


def fc_hostile() -> list[str]:
    return [
        "[" * KB100,
        "{" * 50_000,
        '{"a":' * 20_000,
        '[{"name": "get_weather", "arguments": ' + "[" * 5000 + "]" * 5000 + "}]",
        "```" * 33_000,
        "<tool_call>" * 9_000,
        "<tool_call>[</tool_call>" * 4_000,
        "[1," * 33_000,
        '["' + "a" * 99_000,
        "{}" * 50_000,
        "[{" * 50_000,
        '[{"name": "get_weather", "arguments": {"city": 1' + "0" * 99_000 + "}}]",
        "[" + ",".join([FC_CALL] * 1700) + "]",
        "<think>" * 14_000,
        "\n<think>" * 12_000 + "</think>",
        "<think></think>" * 6_600,
        "x<think>" * 12_000 + "</think>",
        "</think>\n" * 11_000,
        ("<think>" + FC_CALL + "</think>\n") * 1_400,
        (FC_CALL + " retry ") * 1_600,
        "[" + ",".join([FC_CALL] * 800) + "] " + "{" * 50_000,
    ]


def random_texts(alphabet: str, count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=KB100)) for _ in range(count)]


def time_call(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def quietly(fn: Callable[[str], Any]) -> Callable[[str], Any]:
    def call(text: str) -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return fn(text)
            except Exception:  # the baseline parsers raise on most of these inputs; that is the point
                return None

    return call


def measure(
    verify: Callable[[str], Any], baseline: Callable[[str], Any], texts: list[str], repeats: int
) -> dict[str, float]:
    ours, base = [], []
    for text in texts:
        ours.append(time_call(lambda t=text: verify(t), repeats))
        base.append(time_call(lambda t=text: baseline(t), repeats))
    return {
        "inputs": len(texts),
        "max_chars": max(len(t) for t in texts),
        "worst_ms": 1000 * max(ours),
        "median_ms": 1000 * statistics.median(ours),
        "baseline_worst_ms": 1000 * max(base),
        "baseline_median_ms": 1000 * statistics.median(base),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--random", type=int, default=100, help="random 100 KB strings per verifier")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    sys.setrecursionlimit(10_000)  # ast.parse's own limit, not the verifiers' (they do not recurse)

    countdown, fc = CountdownTask(), FunctionCallingTask()
    fc_lenient = FunctionCallingTask(defaults_as_omitted=True)

    def cd_verify(text: str) -> Any:
        return countdown.verify(COUNTDOWN_EXAMPLE, text)

    def fc_verify(text: str) -> Any:
        return fc.verify(FC_EXAMPLE, text)

    def fc_lenient_verify(text: str) -> Any:
        return fc_lenient.verify(FC_EXAMPLE, text)

    cd_base = quietly(lambda text: ast.parse(text, mode="eval"))
    fc_base = quietly(json.loads)
    cd_random = random_texts("0123456789+-*/() =<>answer/\n", args.random, args.seed)
    fc_random = random_texts('[]{}":,0123456789.truefalsn <>/tool_call`\\', args.random, args.seed + 1)
    cases = {
        ("countdown", "hostile, fixed"): (cd_verify, cd_base, countdown_hostile()),
        ("countdown", f"random 100 KB x{args.random}"): (cd_verify, cd_base, cd_random),
        ("countdown", "ordinary answers"): (cd_verify, cd_base, COUNTDOWN_ORDINARY),
        ("function calling", "hostile, fixed"): (fc_verify, fc_base, fc_hostile()),
        ("function calling", f"random 100 KB x{args.random}"): (fc_verify, fc_base, fc_random),
        ("function calling", "ordinary answers"): (fc_verify, fc_base, FC_ORDINARY),
        ("function calling, defaults_as_omitted", "hostile, fixed"): (
            fc_lenient_verify,
            fc_base,
            fc_hostile(),
        ),
        ("function calling, defaults_as_omitted", "ordinary answers"): (
            fc_lenient_verify,
            fc_base,
            FC_ORDINARY,
        ),
    }
    results = []
    for (task, kind), (verify, base, texts) in cases.items():
        row = {"task": task, "inputs_kind": kind, **measure(verify, base, texts, args.repeats)}
        results.append(row)
        print(f"... {task}, {kind}: worst {row['worst_ms']:.3f} ms", file=sys.stderr)

    print(f"\nMachine: {platform.processor() or platform.machine()}, Python {platform.python_version()}\n")
    print(
        "| verifier | inputs | n | largest | worst ms | median ms | baseline worst ms | "
        "baseline median ms | worst / baseline worst |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        ratio = r["worst_ms"] / r["baseline_worst_ms"] if r["baseline_worst_ms"] else float("nan")
        print(
            f"| {r['task']} | {r['inputs_kind']} | {r['inputs']} | {r['max_chars']:,} | "
            f"{r['worst_ms']:.3f} | {r['median_ms']:.3f} | {r['baseline_worst_ms']:.3f} | "
            f"{r['baseline_median_ms']:.3f} | {ratio:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"results": results, "args": vars(args)}, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
