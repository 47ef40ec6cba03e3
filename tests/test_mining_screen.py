"""`r3 mine --screen K`: each kept failed attempt screened by K sampled reflections and their retries.

A scripted model whose retries succeed with a known probability per query checks the counts; goldens
taken before screening existed check that `--screen 0` writes the same bytes; crashes, windows and the
tiny model check that the screen is seeded like everything else in mining; `records` checks the field
and the `learnable` selection `r3 train` uses."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from r3.cli import main as cli_main
from r3.cli import mine_cmd
from r3.errors import DataError, R3Error
from r3.generation.base import SamplingConfig, derive_seed
from r3.generation.scripted import ScriptedGenerator
from r3.mining.mine import MineConfig, attempt_key, mine
from r3.mining.records import FAILURES_FORMAT, FORMAT_KEY, FailedAttempt, Screen, learnable, read_failures
from r3.rundir import FINGERPRINT_VERSION
from r3.tasks.base import Example, Prompt, Verdict
from test_mining_fakes import CoinTask, coin_generator, outcome


class ScreenCoin(CoinTask):
    """A coin whose first attempts succeed with probability `p` and whose retries after a reflection
    succeed with probability `r` (0 and 1 give known screens, 0.5 mixed ones)."""

    name = "screen-coin"
    required_fields = ("id", "p", "r")

    def load(self, data: str | None, limit: int | None = None, seed: int = 0) -> list[Example]:
        rng = random.Random(seed)
        rows = [{"id": i, "p": rng.choice([0.0, 0.5]), "r": rng.choice([0.0, 0.5, 1.0])} for i in range(12)]
        return rows[:limit] if limit is not None else rows

    def prompt(self, example: Example) -> Prompt:
        return Prompt(
            [{"role": "user", "content": f"coin {example['id']} p={example['p']} r={example['r']}"}]
        )


TASK = ScreenCoin()


def kind(prompt: Prompt) -> str:
    """Which step a chat asks for: the first attempt, a reflection or a retry."""
    if len(prompt.messages) == 1:
        return "attempt"
    return "reflection" if prompt.messages[-1]["content"] == TASK.reflection_instruction else "retry"


def respond(prompt: Prompt, sampling: SamplingConfig, index: int) -> str:
    """Attempts succeed with probability p, retries with probability r, both drawn from their seed."""
    _, _, p, r = prompt.messages[0]["content"].split()
    step = kind(prompt)
    if step == "reflection":
        return f"reflection {sampling.seed}"
    ok = outcome(float(p[2:]) if step == "attempt" else float(r[2:]), sampling.seed, index)
    return f"<answer>{'heads' if ok else 'tails'} {sampling.seed}:{index}</answer> trailing"


class Recording(ScriptedGenerator):
    """`respond`, remembering every prompt's step and sampling settings."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Prompt, SamplingConfig]] = []

        def script(prompt: Prompt, sampling: SamplingConfig, index: int) -> str:
            self.seen.append((kind(prompt), prompt, sampling))
            return respond(prompt, sampling, index)

        super().__init__(script, model_name="screen-model")


def mine_screen(folder: Path, generator=None, limit: int = 12, **fields) -> list[dict]:
    """Mine `limit` ScreenCoin queries into `folder` and return the failures file's rows."""
    settings = {"budget": 4, "round_size": 2, "keep": 2, "seed": 3, "reflection_max_new_tokens": 8}
    config = MineConfig(**{**settings, **fields})
    examples = TASK.load(None, limit=limit, seed=2)
    mine(TASK, examples, generator or Recording(), folder, config, identity={"model": "screen-model"})
    return rows(folder)


def rows(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "failures.jsonl").read_text().splitlines()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def digest_before_format(path: Path, chains: bool = False) -> str:
    """The digest of a failures file as written before rows carried `failures_format` and before a
    failed attempt was an episode or every query had a row: each row must carry the current format, the
    rows of kept queries with their attempts read back
    in the shape of then ({completion, reason} and, with `chains`, the failed rounds as {reflection,
    retry, reason}) must be byte for byte what was written before: the same samples."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows and all(row.pop(FORMAT_KEY) == FAILURES_FORMAT for row in rows)
    assert all(isinstance(row.pop("sampled_tokens"), int) for row in rows)
    rows = [row for row in rows if row["failed_attempts"]]
    for row in rows:
        older = []
        for attempt in row["failed_attempts"]:
            assert attempt["screen"] is None
            old = {"completion": attempt["attempt"], "reason": attempt["attempt_reason"]}
            if chains:
                failed = [r for r in attempt["rounds"] if not r["retry_ok"]]
                old["rounds"] = [
                    {"reflection": r["reflection"], "retry": r["retry"], "reason": r["retry_reason"]}
                    for r in failed
                ]
            older.append(old)
        row["failed_attempts"] = older
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_before_shared_fingerprint(path: Path) -> str:
    """The digest of a mining run.json as written before every command shared `rundir.fingerprint`
    (version 3 of mining's own, no `command`, the digest before `stop`): what it holds besides the
    version and the command must not have changed."""
    run = json.loads(path.read_text())
    assert (run.pop("version"), run.pop("command")) == (FINGERPRINT_VERSION, "mine")
    assert run.pop("failures_format") == FAILURES_FORMAT
    head = ["task", "task_class", "model", "num_queries", "examples_sha256", "stop"]
    before = {"version": 3, **{k: run[k] for k in head}, **{k: v for k, v in run.items() if k not in head}}
    return hashlib.sha256((json.dumps(before, indent=2, ensure_ascii=False) + "\n").encode()).hexdigest()


def expected_successes(row: dict, number: int, config: MineConfig) -> int:
    """Replay the documented seeds: sample j's retry is seeded by
    `derive_seed(derive_seed(seed, "mine-screen"), "retry", key * K + j, 1)`."""
    parent = derive_seed(config.seed, "mine-screen")
    key = attempt_key(row["query_index"], number, config.keep)
    seeds = [derive_seed(parent, "retry", key * config.screen + j, 1) for j in range(config.screen)]
    return sum(outcome(row["r"], seed, 0) for seed in seeds)


# --------------------------------------------------------------------------------------------------
# The counts


def test_screen_counts_the_retries_that_succeed(tmp_path: Path) -> None:
    generator = Recording()
    config = MineConfig(
        budget=4,
        round_size=2,
        keep=2,
        seed=3,
        reflection_max_new_tokens=8,
        screen=5,
        screen_retry_temperature=0.7,
    )
    found = mine_screen(tmp_path, generator, screen=5, screen_retry_temperature=0.7)
    attempts = [(row, n, a) for row in found for n, a in enumerate(row["failed_attempts"])]
    assert {row["r"] for row in found} == {0.0, 0.5, 1.0}  # all three kinds of query were kept
    for row, number, attempt in attempts:
        successes = attempt["screen"]["successes"]
        assert attempt["screen"]["samples"] == 5
        assert attempt["screen"]["retry_temperature"] == 0.7  # what training's selection checks
        assert successes == {0.0: 0, 1.0: 5}.get(row["r"], expected_successes(row, number, config))
    mixed = [a["screen"]["successes"] for row, _, a in attempts if row["r"] == 0.5]
    assert any(0 < s < 5 for s in mixed)  # the replay is not trivially all or nothing

    # Reflections at the mining temperature and the reflection budget, unstopped; retries at the
    # screen's temperature with the attempt's budget and the task's stop strings.
    steps = {step: [s for k, _, s in generator.seen if k == step] for step in ("reflection", "retry")}
    assert len(steps["reflection"]) == len(steps["retry"]) == 5 * len(attempts)
    assert {(s.temperature, s.max_new_tokens, s.stop) for s in steps["reflection"]} == {(1.0, 8, ())}
    assert {(s.temperature, s.max_new_tokens, s.stop) for s in steps["retry"]} == {(0.7, 256, ("</answer>",))}
    # Five distinct reflections per attempt: each sample has its own seed.
    assert len({s.seed for s in steps["reflection"]}) == 5 * len(attempts)
    # The retry is asked in the task's own retry chat, the one `r3 train` builds.
    row, _, attempt = attempts[0]
    example = {k: row[k] for k in ("id", "p", "r")}
    retry_chats = [p.messages for k, p, _ in generator.seen if k == "retry"]
    reflection = retry_chats[0][3]["content"]
    assert retry_chats[0] == TASK.retry_prompt(example, attempt["attempt"], reflection).messages


def test_summary_progress_and_records_report_the_screen(tmp_path: Path) -> None:
    found = mine_screen(tmp_path, screen=4)
    screens = [a["screen"] for row in found for a in row["failed_attempts"]]
    want_learnable = sum(0 < s["successes"] < s["samples"] for s in screens)
    assert 0 < want_learnable < len(screens)

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["attempts_screened"], summary["attempts_learnable"]) == (len(screens), want_learnable)
    assert summary["learnable_rate"] == round(want_learnable / len(screens), 4)

    records = read_failures(tmp_path / "failures.jsonl", TASK)
    loaded = [a for r in records for a in r.failed_attempts]
    assert [a.screen.to_json() if a.screen else None for a in loaded] == screens
    assert sum(learnable(a) is True for a in loaded) == want_learnable
    import datasets

    table = datasets.load_dataset("json", data_files=str(tmp_path / "failures.jsonl"), split="train")
    assert len(table) == len(found)
    assert table[0]["failed_attempts"][0]["screen"] == found[0]["failed_attempts"][0]["screen"]


def test_screening_adds_only_its_field_to_the_chains_rows(tmp_path: Path) -> None:
    """With --rounds, the chains are sampled as without the screen (their own seeds): dropping `screen`
    from every attempt gives the unscreened run's rows."""
    plain = mine_screen(tmp_path / "plain", rounds=3)
    screened = mine_screen(tmp_path / "screened", rounds=3, screen=3)
    assert all(a["rounds"] and a["screen"] for row in screened for a in row["failed_attempts"])
    assert all(a["screen"] is None for row in plain for a in row["failed_attempts"])
    for row in screened:
        for attempt in row["failed_attempts"]:
            attempt["screen"] = None
    assert screened == plain


def test_progress_shows_the_screen_advancing(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("R3_NO_PROGRESS", "0")
    examples = TASK.load(None, limit=12, seed=2)
    config = MineConfig(budget=4, round_size=2, keep=2, seed=3, screen=4, window=5)
    mine(TASK, examples, Recording(), tmp_path, config, progress=True)
    summary = json.loads((tmp_path / "summary.json").read_text())
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("mine: 12/12")
    assert f"screened {summary['attempts_screened']}" in last
    assert f"learnable {summary['attempts_learnable']}" in last
    # A callback sees each query's screen as it is committed.
    seen: list[tuple[int | None, int | None]] = []
    mine(
        TASK,
        examples,
        Recording(),
        tmp_path / "callback",
        config,
        progress=lambda record, *_: seen.append([learnable(a) for a in record.failed_attempts]),
    )
    assert len(seen) == 12 and sum(v is not None for s in seen for v in s) == summary["attempts_screened"]


# --------------------------------------------------------------------------------------------------
# Today's bytes, resumes, windows


def test_screen_zero_writes_the_bytes_mined_before_screening_existed(tmp_path: Path) -> None:
    """Digests taken with the code before `--screen` existed: attempts only, and chains of 3 rounds."""
    task = CoinTask()
    examples = task.load(None, limit=40, seed=1)
    config = MineConfig(budget=8, round_size=2, keep=2, seed=4, window=4, screen=0)
    mine(task, examples, coin_generator(), tmp_path / "coin", config, identity={"model": "coin-model"})
    assert digest_before_format(tmp_path / "coin" / "failures.jsonl") == (
        "1f6f76ebd22038125922291e880b88930bcdea9f2791cbbc3502a194d10e821e"
    )
    # The fingerprint holds what it held; only its version (now shared by every command) and the
    # command are new, so folders mined before are refused with one line rather than resumed.
    assert digest_before_shared_fingerprint(tmp_path / "coin" / "run.json") == (
        "9d71175a416b4447e968e9d1e5cd620025d13f17eef457e37c1577ebc419450a"
    )
    mine_screen(tmp_path / "chain", budget=4, keep=2, seed=3, rounds=3, window=5)
    assert digest_before_format(tmp_path / "chain" / "failures.jsonl", chains=True) == (
        "dd3c94b9c05bb8ba7e1c63148a40e322f3ff815ceb7653fd5a674ba3e2523e06"
    )
    summary = json.loads((tmp_path / "chain" / "summary.json").read_text())
    assert not any(key.startswith(("attempts_", "learnable")) for key in summary)
    assert "screen" not in json.loads((tmp_path / "chain" / "run.json").read_text())


class _Crash(Exception):
    pass


def crashing(after_calls: int) -> Recording:
    """`Recording` that raises on its call number `after_calls + 1`."""
    generator = Recording()
    inner = generator.generate

    def generate(prompts, n, sampling):
        if generator.calls >= after_calls:
            raise _Crash
        return inner(prompts, n, sampling)

    generator.generate = generate  # type: ignore[method-assign]
    return generator


def test_a_crashed_then_resumed_screened_run_writes_the_same_bytes(tmp_path: Path) -> None:
    """Crashes between a window's sampling rounds, between its reflections and its retries, and after
    a window is done; the last session resumes with another window."""
    fields = {"screen": 3, "rounds": 2, "window": 4}
    mine_screen(tmp_path / "ref", **fields)
    last_steps = []
    for after in (1, 3, 4, 7, 9):
        generator = crashing(after)
        with pytest.raises(_Crash):
            mine_screen(tmp_path / "cut", generator, **fields)
        last_steps.append(generator.seen[-1][0])
    assert "reflection" in last_steps  # some session died with reflections sampled, retries not
    committed = len((tmp_path / "cut" / "failures.jsonl").read_text().splitlines())
    assert 0 < committed < 12  # the sessions made progress, and the last one still had work to do
    mine_screen(tmp_path / "cut", **{**fields, "window": 5})
    assert (tmp_path / "cut" / "failures.jsonl").read_bytes() == (
        tmp_path / "ref" / "failures.jsonl"
    ).read_bytes()
    done, ref = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("cut", "ref"))
    assert (done["attempts_screened"], done["attempts_learnable"]) == (
        ref["attempts_screened"],
        ref["attempts_learnable"],
    )
    assert done["complete"] and done["attempts_screened"] > 0


def test_windows_change_the_calls_not_the_screen(tmp_path: Path) -> None:
    bytes_by_window, calls = {}, {}
    for window in (1, 5, 12):
        generator = Recording()
        mine_screen(tmp_path / str(window), generator, screen=3, window=window)
        bytes_by_window[window] = (tmp_path / str(window) / "failures.jsonl").read_bytes()
        calls[window] = generator.calls
    assert bytes_by_window[1] == bytes_by_window[5] == bytes_by_window[12]
    assert calls[12] < calls[5] < calls[1]


class HashCoin(CoinTask):
    """For a real (random) model: an answer succeeds when its text hashes to an even byte, so attempts
    and retries succeed about half the time whatever the model writes."""

    name = "hash-coin"

    def verify(self, example: Example, completion: str) -> Verdict:
        if hashlib.sha256(completion.encode()).digest()[0] % 2 == 0:
            return Verdict.success()
        return Verdict.failure("odd")


def test_windows_on_the_tiny_model_give_the_same_screen(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The tiny model on CPU in float32 (rows do not depend on their batch): screening one query at a
    time and a whole window at once writes the same bytes."""
    from r3.generation.loader import load_generator

    task = HashCoin()
    examples = task.load(None, limit=6, seed=3)
    generator = load_generator(str(tiny_model_dir), device="cpu")
    outputs = {}
    for window in (1, 6):
        config = MineConfig(
            budget=2,
            round_size=2,
            keep=1,
            seed=1,
            max_new_tokens=6,
            reflection_max_new_tokens=6,
            screen=3,
            window=window,
        )
        mine(task, examples, generator, tmp_path / str(window), config, identity={"model": "tiny"})
        outputs[window] = (tmp_path / str(window) / "failures.jsonl").read_bytes()
    assert outputs[1] == outputs[6]
    screens = [a["screen"] for line in outputs[1].splitlines() for a in json.loads(line)["failed_attempts"]]
    assert screens and all(s["samples"] == 3 for s in screens)
    assert any(s["successes"] > 0 for s in screens)  # retries were verified, not all failed by default


# --------------------------------------------------------------------------------------------------
# Refusals


def test_other_screen_settings_do_not_resume(tmp_path: Path) -> None:
    mine_screen(tmp_path / "s", screen=2)
    cases = [
        ({"screen": 3}, "screen: 2 -> 3"),
        ({"screen": 2, "screen_retry_temperature": 0.0}, "screen_retry_temperature: 1.0 -> 0.0"),
        ({"screen": 2, "reflection_max_new_tokens": 9}, "reflection_max_new_tokens: 8 -> 9"),
        ({}, "screen: 2 -> None"),
    ]
    for fields, change in cases:
        with pytest.raises(R3Error, match="holds another run.s output") as info:
            mine_screen(tmp_path / "s", **fields)
        assert change in str(info.value) and "\n" not in str(info.value)
    assert mine_screen(tmp_path / "s", screen=2)  # the same settings resume
    # A folder mined without screening is not continued with it.
    mine_screen(tmp_path / "plain")
    with pytest.raises(R3Error, match=r"screen: None -> 2"):
        mine_screen(tmp_path / "plain", screen=2)


@pytest.mark.parametrize(
    "fields",
    [{"screen": -1}, {"screen": True}, {"screen": 1.5}, {"screen": 2, "screen_retry_temperature": -0.1}],
)
def test_bad_screen_settings_are_refused(fields: dict) -> None:
    with pytest.raises(R3Error, match="--screen"):
        MineConfig(**fields)


@pytest.mark.parametrize(
    "screen",
    [
        {"samples": 0, "successes": 0},
        {"samples": 2, "successes": 3},
        {"samples": 2, "successes": -1},
        {"samples": "2", "successes": 1},
        {"samples": True, "successes": 0},
        {"samples": 2},
        {"samples": 2, "successes": 1, "retry_temperature": -1.0},
        {"samples": 2, "successes": 1, "retry_temperature": "1"},
        [2, 1],
        "2/1",
    ],
)
def test_a_bad_screen_in_a_failures_file_is_one_line(tmp_path: Path, screen: object) -> None:
    found = mine_screen(tmp_path / "m", screen=2)
    found[-1]["failed_attempts"][-1]["screen"] = screen
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in found))
    number = len(found[-1]["failed_attempts"]) - 1
    with pytest.raises(DataError) as info:
        read_failures(path, TASK)
    message = str(info.value)
    assert message.startswith(f"{path}, row {len(found)}, field 'failed_attempts[{number}].screen'")
    assert "\n" not in message


def test_a_null_screen_reads_as_unscreened(tmp_path: Path) -> None:
    """As `datasets` writes a missing struct field back: null, hence not screened."""
    found = mine_screen(tmp_path / "m", screen=2)
    found[0]["failed_attempts"][0]["screen"] = None
    path = tmp_path / "null.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in found))
    first = read_failures(path, TASK)[0].failed_attempts[0]
    assert first.screen is None and learnable(first) is None


# --------------------------------------------------------------------------------------------------
# learnable


@pytest.mark.parametrize(
    ("samples", "successes", "want"),
    [(4, 0, False), (4, 1, True), (4, 3, True), (4, 4, False), (2, 1, True), (1, 0, False), (1, 1, False)],
)
def test_learnable_means_the_retries_disagreed(samples: int, successes: int, want: bool) -> None:
    attempt = FailedAttempt.of({"id": 0}, "x", screen=Screen(samples, successes, 1.0))
    assert learnable(attempt) is want


def test_learnable_is_unknown_without_a_screen() -> None:
    assert learnable(FailedAttempt.of({"id": 0}, "x")) is None


# --------------------------------------------------------------------------------------------------
# The command line


def test_cli_screens_and_refuses_bad_values(tmp_path: Path, monkeypatch, capsys) -> None:
    loads = []

    def load(args):
        loads.append(args)
        return Recording()

    monkeypatch.setattr(mine_cmd, "_load_generator", load)
    argv = ["mine", "--task", "test_mining_screen:ScreenCoin", "--no-progress", "--budget", "4"]
    out = tmp_path / "out"
    flags = ["--screen", "3", "--screen-retry-temperature", "0", "--output-dir", str(out)]
    assert cli_main([*argv, *flags]) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["screen"], run["screen_retry_temperature"], run["reflection_max_new_tokens"]) == (3, 0.0, 256)
    summary = json.loads((out / "summary.json").read_text())
    said = capsys.readouterr().out
    assert (
        f"{summary['attempts_learnable']} of {summary['attempts_screened']} failed attempts learnable" in said
    )
    assert all(a["screen"]["samples"] == 3 for row in rows(out) for a in row["failed_attempts"])

    assert cli_main([*argv, "--screen", "-2", "--output-dir", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--screen must be a whole number >= 0 (got -2)" in err and len(err.splitlines()) == 1
    assert len(loads) == 1 and not (tmp_path / "bad").exists()
