"""`--backend openai` against a real OpenAI-compatible server: `transformers serve` on 127.0.0.1 with the
tiny model, started for real. Greedy results must equal the transformers backend's; a refused
connection, a server killed mid-run and a 429 are each tried for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest

from r3.cli import main as r3_main
from r3.generation.base import SamplingConfig, request_seeds, sample_seed
from r3.generation.openai_backend import calls_as_text
from servers import Server, free_port

TRANSFORMERS_CLI = Path(sys.executable).with_name("transformers")
EVAL_FLAGS = ["--limit", "6", "--max-new-tokens", "12", "--reflection-max-new-tokens", "12", "--no-progress"]
COMPARED = ("attempt", "reflection", "retry", "attempt_ok", "retry_ok", "first_try_ok", "second_try_ok")


# ----------------------------------------------------------------------------- pure parts


def test_sample_seeds_differ_per_request_and_repeat_per_call() -> None:
    seeds = {sample_seed(s, j) for s in request_seeds(SamplingConfig(seed=5), 3) for j in range(4)}
    assert len(seeds) == 12 and all(0 <= s < 2**31 for s in seeds)
    assert request_seeds(SamplingConfig(seeds=(9, 4)), 2) == [9, 4]  # given seeds win over positions
    assert sample_seed(9, 1) == sample_seed(9, 1) != sample_seed(4, 1)


def test_structured_tool_calls_become_the_json_list_the_verifier_reads() -> None:
    call = SimpleNamespace(function=SimpleNamespace(name="get_weather", arguments='{"city": "Paris"}'))
    bad = SimpleNamespace(function=SimpleNamespace(name="f", arguments="{not json"))
    assert json.loads(calls_as_text([call])) == [{"name": "get_weather", "arguments": {"city": "Paris"}}]
    assert json.loads(calls_as_text([bad])) == [{"name": "f", "arguments": "{not json"}]


# ----------------------------------------------------------------------------- a real server


def transformers_serve(port: int, log: Path) -> Server:
    """`transformers serve` on CPU in float32 (the same greedy rows as the local backend)."""
    command = [str(TRANSFORMERS_CLI), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--device", "cpu", "--dtype", "float32"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return Server(command, port, log, env=env, timeout=120.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if not TRANSFORMERS_CLI.exists():
        pytest.skip("transformers serve is not installed (pip install 'transformers[serving]')")
    srv = transformers_serve(free_port(), tmp_path_factory.mktemp("serve") / "serve.log")
    srv.start()
    yield srv
    srv.kill()


def rows(folder: Path) -> list[dict]:
    """The rows of `samples.jsonl` with round 1's fields (the second try) beside the attempt's."""
    rows = [json.loads(line) for line in (folder / "samples.jsonl").open()]
    return [{**row, **(row["rounds"][0] if row["rounds"] else {})} for row in rows]


def api_eval(model: Path, url: str, out: Path, *extra: str) -> int:
    return r3_main(
        [
            "eval",
            "--backend",
            "openai",
            "--base-url",
            url,
            "--model",
            str(model),
            *EVAL_FLAGS,
            "--output-dir",
            str(out),
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def local_rows(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The transformers backend's greedy rows, one prompt per batch (no padding), as reference."""
    out = tmp_path_factory.mktemp("local")
    argv = ["eval", "--model", str(tiny_model_dir), *EVAL_FLAGS, "--batch-size", "1", "--device", "cpu"]
    assert r3_main([*argv, "--output-dir", str(out)]) == 0
    return rows(out)


def same_rows(a: list[dict], b: list[dict]) -> bool:
    return [{k: r.get(k) for k in COMPARED} for r in a] == [{k: r.get(k) for k in COMPARED} for r in b]


def test_eval_through_the_server_equals_the_transformers_backend(
    server: Server, tiny_model_dir: Path, local_rows: list[dict], tmp_path: Path
) -> None:
    assert api_eval(tiny_model_dir, server.url, tmp_path / "api", "--batch-size", "3") == 0
    assert same_rows(rows(tmp_path / "api"), local_rows)
    results = json.loads((tmp_path / "api" / "results.json").read_text())
    assert results["config"]["backend"] == "openai" and results["config"]["base_url"] == server.url
    usage = results["usage_this_run"]
    attempts = len(local_rows) + sum(1 for r in local_rows if not r["attempt_ok"]) * 2
    assert usage["requests"] == attempts and usage["completion_tokens"] > 0 and usage["prompt_tokens"] > 0


def test_a_refused_connection_is_one_line(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    assert api_eval(tiny_model_dir, url, tmp_path / "out", "--max-retries", "1") == 2
    err = capsys.readouterr().err
    assert f"r3: error: cannot reach the server at {url}" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_a_server_killed_mid_run_loses_nothing_on_rerun(
    tiny_model_dir: Path, local_rows: list[dict], tmp_path: Path
) -> None:
    """SIGKILL the server while `r3 eval` runs (in a child process): the rows done are kept; with the
    server back, the same command finishes with no row lost or duplicated."""
    srv = transformers_serve(free_port(), tmp_path / "serve.log")
    srv.start()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "r3.cli", "eval", "--backend", "openai", "--base-url", srv.url]
    command += ["--model", str(tiny_model_dir), *EVAL_FLAGS, "--batch-size", "1", "--max-retries", "1"]
    command += ["--limit", "30", "--output-dir", str(out)]
    try:
        child = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        samples = out / "samples.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            if samples.exists() and len(samples.read_text().splitlines()) >= 2:
                break
            time.sleep(0.02)
        srv.kill()
        _, err = child.communicate(timeout=120)
        assert child.returncode == 2, err
        assert "cannot reach the server" in err or "answered 5" in err
        kept = rows(out)
        assert 2 <= len(kept) < 30
        srv.start()
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
    finally:
        srv.kill()
    done = rows(out)
    assert [r["index"] for r in done] == list(range(30))
    assert done[: len(kept)] == kept
    assert same_rows(done[:6], local_rows)  # the same greedy answers as the local backend


class TooManyRequestsOnce(BaseHTTPRequestHandler):
    """A real HTTP proxy in front of the server: the first request gets 429 with Retry-After: 1, the
    rest are forwarded."""

    target = ""
    seen: list[tuple[float, int]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        arrived = time.monotonic()
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if not self.seen:
            self.seen.append((arrived, 429))
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            payload = b'{"error": {"message": "slow down"}}'
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        request = urllib.request.Request(
            self.target + self.path, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            payload = response.read()
            self.seen.append((arrived, response.status))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_a_429_is_answered_by_waiting(
    server: Server, tiny_model_dir: Path, local_rows: list[dict], tmp_path: Path
) -> None:
    TooManyRequestsOnce.target = f"http://127.0.0.1:{server.port}"
    TooManyRequestsOnce.seen = []
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), TooManyRequestsOnce)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{proxy.server_address[1]}/v1"
        assert api_eval(tiny_model_dir, url, tmp_path / "out", "--batch-size", "1") == 0
    finally:
        proxy.shutdown()
    statuses = [status for _, status in TooManyRequestsOnce.seen]
    assert statuses[0] == 429 and set(statuses[1:]) == {200}
    assert TooManyRequestsOnce.seen[1][0] - TooManyRequestsOnce.seen[0][0] >= 0.9  # waited Retry-After
    assert same_rows(rows(tmp_path / "out"), local_rows)


def test_mine_through_the_server(server: Server, tiny_model_dir: Path, tmp_path: Path) -> None:
    """`r3 mine --backend openai`: sampled attempts through the server, seeded per request, so a second
    run into another folder writes the same rows."""
    argv = ["mine", "--backend", "openai", "--base-url", server.url, "--model", str(tiny_model_dir)]
    argv += ["--limit", "3", "--budget", "2", "--round-size", "2", "--max-new-tokens", "8", "--no-progress"]
    argv += ["--batch-size", "1"]  # one request at a time: the server seeds its global generator per request
    for name in ("a", "b"):
        assert r3_main([*argv, "--output-dir", str(tmp_path / name)]) == 0
    rows = (tmp_path / "a" / "failures.jsonl").read_text()
    assert len(rows.splitlines()) == 3  # the tiny model solves nothing: every query is kept
    assert rows == (tmp_path / "b" / "failures.jsonl").read_text()
    run = json.loads((tmp_path / "a" / "run.json").read_text())
    assert run["backend"] == "openai" and run["base_url"] == server.url
