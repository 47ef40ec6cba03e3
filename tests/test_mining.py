"""`r3 mine`: the adaptive rule, resumes after crashes, refusals, and the CLI (scripted models)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r3.cli import main as cli_main
from r3.cli import mine_cmd
from r3.errors import DataError, R3Error
from r3.mining.mine import MineConfig, RunStore, mine, query_seed, run_fingerprint
from r3.mining.records import read_failures
from test_mining_fakes import KILL_CONFIG, CoinTask, coin_generator, expected_cost

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"


def _all_rows(folder: Path) -> list[dict]:
    """Every row of the failures file: one per mined query."""
    return [json.loads(line) for line in (folder / "failures.jsonl").read_text().splitlines()]


def _rows(folder: Path) -> list[dict]:
    """The rows of the queries kept (with failed attempts)."""
    return [row for row in _all_rows(folder) if row["failed_attempts"]]


def _mine(folder: Path, config: MineConfig, limit: int = 40, **kw):
    task = CoinTask()
    examples = task.load(None, limit=limit, seed=1)
    gen = coin_generator()
    summary = mine(task, examples, gen, folder, config, identity={"model": "coin-model"}, **kw)
    return task, examples, gen, summary


# --------------------------------------------------------------------------------------------------
# The adaptive rule


@pytest.mark.parametrize("keep", [1, 3])
@pytest.mark.parametrize(("budget", "round_size"), [(16, 4), (10, 4), (8, 8), (5, 1)])
def test_adaptive_and_full_keep_the_same_queries_at_the_predicted_cost(tmp_path, keep, budget, round_size):
    config = MineConfig(budget=budget, round_size=round_size, keep=keep, seed=7)
    full_config = MineConfig(budget=budget, round_size=round_size, keep=keep, seed=7, full=True)
    task, examples, gen_a, sum_a = _mine(tmp_path / "a", config)
    _, _, gen_f, sum_f = _mine(tmp_path / "f", full_config)
    want_kept, want_adaptive, want_full = expected_cost(examples, config)

    rows_a, rows_f = _rows(tmp_path / "a"), _rows(tmp_path / "f")
    assert {r["query_index"] for r in rows_a} == {r["query_index"] for r in rows_f} == want_kept
    assert 0 < len(want_kept) < len(examples)  # the script has both kinds of query
    # Same failed attempts (the first `keep` failures in sampling order); only the counts differ.
    assert [r["failed_attempts"] for r in rows_a] == [r["failed_attempts"] for r in rows_f]
    assert gen_a.samples == sum_a.samples == want_adaptive
    assert gen_f.samples == sum_f.samples == want_full == budget * len(examples)
    assert sum_a.queries_kept == sum_f.queries_kept == len(want_kept)
    for row in rows_a + rows_f:
        assert 1 <= len(row["failed_attempts"]) <= keep
        assert all(a["attempt"].endswith("</answer>") for a in row["failed_attempts"])  # stop applied
        assert all(a["attempt_reason"].startswith("tails") for a in row["failed_attempts"])
    for row in rows_f:
        assert row["samples_drawn"] == budget
        assert len(row["failed_attempts"]) == min(keep, budget - row["successes"])


def test_query_that_always_fails_costs_one_round_and_one_that_never_fails_costs_the_budget(tmp_path):
    data = tmp_path / "coins.jsonl"
    data.write_text('{"id": 0, "p": 0.0}\n{"id": 1, "p": 1.0}\n')
    task = CoinTask()
    examples = task.load(str(data))
    gen = coin_generator()
    summary = mine(task, examples, gen, tmp_path / "out", MineConfig(budget=64, round_size=8))
    (row,) = _rows(tmp_path / "out")
    assert row["query_index"] == 0 and row["samples_drawn"] == 8 and row["successes"] == 0
    assert row["id"] == 0 and row["p"] == 0.0 and row["task"] == "coin"
    # One window: round 0 samples both queries in one call, then query 1 alone draws 7 more rounds.
    assert summary.samples == 8 + 64 and gen.calls == 8
    rows = [
        (r["query_index"], len(r["failed_attempts"]), r["samples_drawn"]) for r in _all_rows(tmp_path / "out")
    ]
    assert rows == [(0, 1, 8), (1, 0, 64)]


def test_query_seeds_are_distinct_and_stable():
    seeds = {query_seed(s, q, r) for s in range(3) for q in range(50) for r in range(8)}
    assert len(seeds) == 3 * 50 * 8
    assert query_seed(0, 1, 2) == query_seed(0, 1, 2)
    assert all(0 <= s < 2**31 for s in seeds)


def test_full_gives_a_success_rate(tmp_path):
    _, _, _, summary = _mine(tmp_path, MineConfig(budget=16, round_size=4, full=True))
    assert summary.mean_success_rate is not None and 0 < summary.mean_success_rate < 1
    payload = json.loads((tmp_path / "summary.json").read_text())
    for key in ("queries_seen", "queries_kept", "samples", "tokens", "wall_seconds", "config", "complete"):
        assert key in payload
    assert payload["complete"] is True and payload["config"]["budget"] == 16 and payload["tokens"] > 0


def test_bad_config_is_refused():
    for bad in ({"budget": 0}, {"round_size": 0}, {"keep": 0}, {"temperature": 0.0}, {"top_p": 0.0}):
        with pytest.raises(R3Error):
            MineConfig(**bad)


# --------------------------------------------------------------------------------------------------
# Nothing lost


class _Crash(Exception):
    pass


def _crashing_generator(after_calls: int):
    gen = coin_generator()
    inner = gen.generate

    def generate(prompts, n, sampling):
        if gen.calls >= after_calls:
            raise _Crash
        return inner(prompts, n, sampling)

    gen.generate = generate  # type: ignore[method-assign]
    return gen


def test_resume_after_an_exception_writes_the_same_rows(tmp_path):
    config = MineConfig(budget=8, round_size=2, keep=2, seed=4, window=4)
    _mine(tmp_path / "ref", config)
    task = CoinTask()
    examples = task.load(None, limit=40, seed=1)
    for after in (2, 5, 7):  # calls into each session: the crashes cut windows at different rounds
        with pytest.raises(_Crash):
            mine(
                task,
                examples,
                _crashing_generator(after),
                tmp_path / "cut",
                config,
                identity={"model": "coin-model"},
            )
        partial = json.loads((tmp_path / "cut" / "summary.json").read_text())
        assert partial["complete"] is False
    # The window decides the cost of calls, not the rows, so it is not in the fingerprint: the last
    # session resumes with another window and still writes the reference's bytes.
    _mine(tmp_path / "cut", MineConfig(budget=8, round_size=2, keep=2, seed=4, window=3))
    assert (tmp_path / "cut" / "failures.jsonl").read_bytes() == (
        tmp_path / "ref" / "failures.jsonl"
    ).read_bytes()
    assert [r["query_index"] for r in _all_rows(tmp_path / "cut")] == list(range(40))


def test_resume_repairs_a_torn_write(tmp_path):
    """A half-written last row (a kill mid-write) is cut off and its query mined again."""
    config = MineConfig(budget=8, round_size=2, seed=4, window=8)  # two windows: the crash hits the second
    _mine(tmp_path / "ref", config, limit=12)
    task = CoinTask()
    examples = task.load(None, limit=12, seed=1)
    out = tmp_path / "torn"
    with pytest.raises(_Crash):
        mine(task, examples, _crashing_generator(6), out, config, identity={"model": "coin-model"})
    assert 0 < len(_all_rows(out)) < 12
    with (out / "failures.jsonl").open("a") as f:
        f.write('{"task": "coin", "query_in')
    _mine(out, config, limit=12)
    assert (out / "failures.jsonl").read_bytes() == (tmp_path / "ref" / "failures.jsonl").read_bytes()


def test_corruption_in_the_middle_is_refused(tmp_path):
    config = MineConfig(budget=4, round_size=2)
    _mine(tmp_path, config, limit=6)
    lines = (tmp_path / "failures.jsonl").read_text().splitlines()
    lines[1] = "garbage"
    (tmp_path / "failures.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(R3Error, match="line 2"):
        _mine(tmp_path, config, limit=6)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{SRC}", "HF_HUB_OFFLINE": "1"}
    driver = [sys.executable, str(TESTS / "test_mining_fakes.py")]
    subprocess.run([*driver, str(tmp_path / "ref"), "0"], env=env, check=True, timeout=60)

    killed = tmp_path / "killed"
    for round_ in range(2):  # kill twice, at different points
        proc = subprocess.Popen([*driver, str(killed), "0.01"], env=env)
        progress = killed / "failures.jsonl"
        deadline = time.monotonic() + 30
        target = 4 + 7 * round_
        while time.monotonic() < deadline:
            if progress.exists() and len(progress.read_text().splitlines()) >= target:
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
        assert len(progress.read_text().splitlines()) < 24
    subprocess.run([*driver, str(killed), "0"], env=env, check=True, timeout=60)

    assert (killed / "failures.jsonl").read_bytes() == (tmp_path / "ref" / "failures.jsonl").read_bytes()
    assert [r["query_index"] for r in _all_rows(killed)] == list(range(24))
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["queries_seen"] == 24 and summary["complete"] is True
    assert KILL_CONFIG.keep == 2 and any(len(r["failed_attempts"]) == 2 for r in _rows(killed))


# --------------------------------------------------------------------------------------------------
# Refusals


def test_another_runs_folder_is_refused_and_overwrite_starts_afresh(tmp_path):
    config = MineConfig(budget=4, round_size=2)
    task = CoinTask()
    examples = task.load(None, limit=10, seed=1)
    mine(task, examples, coin_generator(), tmp_path, config, identity={"model": "a"})
    before = (tmp_path / "failures.jsonl").read_bytes()
    cases = [
        (examples, config, {"model": "b"}, "model: 'a' -> 'b'"),
        (task.load(None, limit=10, seed=2), config, {"model": "a"}, "examples"),
        (examples[:5], config, {"model": "a"}, "num_queries"),
        (examples, MineConfig(budget=8, round_size=2), {"model": "a"}, "budget"),
        (examples, MineConfig(budget=4, round_size=4), {"model": "a"}, "round_size"),
        (examples, MineConfig(budget=4, round_size=2, keep=2), {"model": "a"}, "keep"),
        (examples, MineConfig(budget=4, round_size=2, full=True), {"model": "a"}, "full"),
        (examples, MineConfig(budget=4, round_size=2, seed=1), {"model": "a"}, "seed"),
    ]
    for exs, cfg, identity, what in cases:
        with pytest.raises(R3Error, match="holds another run.s output") as info:
            mine(task, exs, coin_generator(), tmp_path, cfg, identity=identity)
        assert what in str(info.value) and "--overwrite" in str(info.value)
        assert (tmp_path / "failures.jsonl").read_bytes() == before
    # Same options: a no-op resume.
    gen = coin_generator()
    mine(task, examples, gen, tmp_path, config, identity={"model": "a"})
    assert gen.samples == 0 and (tmp_path / "failures.jsonl").read_bytes() == before
    # --overwrite: a new run.
    mine(
        task,
        examples,
        coin_generator(),
        tmp_path,
        MineConfig(budget=8, round_size=2),
        identity={"model": "b"},
        overwrite=True,
    )
    assert json.loads((tmp_path / "run.json").read_text())["model"] == "b"


def test_stray_output_without_run_file_is_refused(tmp_path):
    (tmp_path / "failures.jsonl").write_text("{}\n")
    with pytest.raises(R3Error, match="no run.json"):
        _mine(tmp_path, MineConfig(budget=4, round_size=2), limit=3)


def test_two_writers_into_one_folder_are_refused(tmp_path):
    task = CoinTask()
    examples = task.load(None, limit=3)
    fp = run_fingerprint(task, examples, MineConfig())
    with RunStore.open(tmp_path, fp), pytest.raises(R3Error, match="another `r3 mine`"):
        RunStore.open(tmp_path, fp)
    RunStore.open(tmp_path, fp).close()  # released


def test_empty_examples_are_refused(tmp_path):
    with pytest.raises(R3Error, match="no queries"):
        mine(CoinTask(), [], coin_generator(), tmp_path, MineConfig())


# --------------------------------------------------------------------------------------------------
# The command line (scripted model in place of the loader)


@pytest.fixture
def scripted_loader(monkeypatch):
    calls = []

    def load(args):
        calls.append(args)
        return coin_generator()

    monkeypatch.setattr(mine_cmd, "_load_generator", load)
    return calls


def _cli(*argv: str) -> int:
    return cli_main(["mine", "--task", "test_mining_fakes:CoinTask", "--no-progress", *argv])


def test_cli_writes_a_dataset_that_datasets_and_read_failures_load(tmp_path, scripted_loader, capsys):
    out = tmp_path / "out"
    assert (
        _cli("--limit", "20", "--budget", "8", "--round-size", "4", "--keep", "2", "--output-dir", str(out))
        == 0
    )
    assert len(scripted_loader) == 1
    assert "queries kept" in capsys.readouterr().out
    records = read_failures(out / "failures.jsonl", CoinTask())
    assert records and all(1 <= len(r.failed_attempts) <= 2 for r in records)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(out / "failures.jsonl"), split="train")
    assert len(ds) == 20 and len(ds.filter(lambda row: row["failed_attempts"])) == len(records)
    assert set(ds.column_names) >= {"id", "p", "failed_attempts", "query_index"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries_seen"] == 20 and summary["model"] == "coin-model"
    # Everything already mined: the model is not even loaded.
    assert (
        _cli("--limit", "20", "--budget", "8", "--round-size", "4", "--keep", "2", "--output-dir", str(out))
        == 0
    )
    assert len(scripted_loader) == 1
    # A different model into the same folder: refused (exit 2, one line).
    code = _cli(
        "--limit",
        "20",
        "--budget",
        "8",
        "--round-size",
        "4",
        "--keep",
        "2",
        "--model",
        "other",
        "--output-dir",
        str(out),
    )
    assert code == 2 and "holds another run's output" in capsys.readouterr().err


def test_cli_config_file_sets_defaults_and_flags_win(tmp_path, scripted_loader):
    cfg = tmp_path / "mine.yaml"
    cfg.write_text("budget: 6\nround_size: 3\nlimit: 5\nfull: true\n")
    out = tmp_path / "out"
    assert _cli("--config", str(cfg), "--round-size", "2", "--output-dir", str(out)) == 0
    run = json.loads((out / "run.json").read_text())
    assert (run["budget"], run["round_size"], run["num_queries"], run["full"]) == (6, 2, 5, True)


def test_cli_malformed_row_is_named_before_the_model_loads(tmp_path, scripted_loader, capsys):
    data = tmp_path / "coins.jsonl"
    data.write_text('{"id": 0, "p": 0.5}\n{"id": 1}\n{"id": 2, "p": 0.5}\n')
    assert _cli("--data", str(data), "--limit", "1", "--output-dir", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "row 2" in err and "'p'" in err and "missing" in err
    assert not scripted_loader and not (tmp_path / "o").exists()


def test_cli_reserved_field_is_refused_before_the_model_loads(tmp_path, scripted_loader, capsys):
    data = tmp_path / "coins.jsonl"
    data.write_text('{"id": 0, "p": 0.5}\n{"id": 1, "p": 0.5, "successes": 3}\n')
    assert _cli("--data", str(data), "--output-dir", str(tmp_path / "o")) == 2
    err = capsys.readouterr().err
    assert "coins.jsonl, row 2, field 'successes'" in err and "rename the column" in err
    assert not scripted_loader


def test_cli_empty_data_and_zero_limit_are_refused(tmp_path, scripted_loader, capsys):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    assert _cli("--data", str(data), "--output-dir", str(tmp_path / "o")) == 2
    assert "no rows" in capsys.readouterr().err
    assert _cli("--limit", "0", "--output-dir", str(tmp_path / "o")) == 2
    assert "no queries" in capsys.readouterr().err
    assert _cli("--limit", "3") == 2
    assert "--output-dir" in capsys.readouterr().err
    assert not scripted_loader


def test_data_error_type_for_library_users(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"id": 0, "p": 7}\n')
    with pytest.raises(DataError, match="row 1, field 'p'"):
        CoinTask().load(str(data))


def test_function_calling_failures_keep_tools_as_json_strings_and_load_back(tmp_path):
    """Rows of many tool schemas: `tools` and `answers` are written as JSON strings (as in xLAM), so
    `datasets` sees two string columns; `read_failures` parses them back into lists for training."""
    import datasets

    from r3.generation.scripted import ScriptedGenerator
    from r3.tasks import get_task

    task = get_task("function_calling")
    examples = task.load(None, limit=12)
    wrong = ScriptedGenerator(lambda prompt, sampling, i: '[{"name": "nothing", "arguments": {}}]')
    config = MineConfig(budget=2, round_size=2, seed=0, max_new_tokens=16)
    mine(task, examples, wrong, tmp_path / "fc", config)
    path = tmp_path / "fc" / "failures.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 12
    assert all(isinstance(row["tools"], str) and isinstance(row["answers"], str) for row in rows)
    loaded = datasets.load_dataset("json", data_files=str(path), split="train")
    assert loaded.features["tools"].dtype == "string" and loaded.features["answers"].dtype == "string"
    records = read_failures(path, task)
    assert [r.example["answers"] for r in records] == [e["answers"] for e in examples]
    assert all(isinstance(r.example["tools"], list) for r in records)


# --------------------------------------------------------------------------------------------------
# Windows: queries mined together, each with its own seeds


@pytest.mark.parametrize("full", [False, True])
def test_the_window_changes_the_cost_of_calls_not_the_rows(tmp_path, full):
    """A window of 1 is the sequential rule; any window keeps the same queries with the same attempts."""
    rows = {}
    for window in (1, 3, 8, 40):
        config = MineConfig(budget=8, round_size=2, keep=2, seed=5, full=full, window=window)
        _, _, gen, _ = _mine(tmp_path / str(window), config)
        rows[window] = (tmp_path / str(window) / "failures.jsonl").read_bytes()
        if window == 1:
            sequential_calls = gen.calls
        else:
            assert gen.calls < sequential_calls
    assert rows[1] == rows[3] == rows[8] == rows[40]


def test_windows_on_a_real_model_give_the_sequential_rows(tmp_path, tiny_model_dir):
    """The tiny model sampled for real: each query's samples come from its own seeds, whichever other
    queries share the batch (a window of 1, 3 or 6 queries)."""
    from r3.generation.loader import load_generator
    from r3.tasks import get_task

    task = get_task("countdown")
    examples = task.load(None, limit=6, seed=3)
    generator = load_generator(str(tiny_model_dir), device="cpu")
    outputs = {}
    for window in (1, 3, 6):
        config = MineConfig(
            budget=4, round_size=2, keep=2, seed=1, full=True, max_new_tokens=8, window=window
        )
        mine(task, examples, generator, tmp_path / str(window), config, identity={"model": "tiny"})
        outputs[window] = (tmp_path / str(window) / "failures.jsonl").read_text()
    assert outputs[1] == outputs[3] == outputs[6]
    attempts = [a["attempt"] for line in outputs[1].splitlines() for a in json.loads(line)["failed_attempts"]]
    assert len(set(attempts)) > len(attempts) // 2  # sampled, not one answer repeated


def test_cli_puts_the_window_in_the_run_where_rows_depend_on_the_batch(tmp_path, scripted_loader, capsys):
    """A server backend batches as it pleases (`models.batch_invariant`), so the window and batch size
    are part of its run: a resume with another window is refused, the same window resumes."""
    out = tmp_path / "out"
    argv = ["--limit", "4", "--budget", "4", "--round-size", "2", "--output-dir", str(out)]
    server = ["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]
    assert _cli(*argv, *server, "--window", "2") == 0
    assert json.loads((out / "run.json").read_text())["window"] == 2
    assert _cli(*argv, *server, "--window", "2") == 0
    assert _cli(*argv, *server, "--window", "4") == 2
    assert "window" in capsys.readouterr().err
