"""`r3 mine` end to end on the embedded model (slow: loads SmolLM2-135M and samples on the CPU).

Uses the default `$R3_CACHE`, so the GGUF-to-safetensors conversion happens once per machine.
"""

from __future__ import annotations

import json

import pytest

from r3.cli import main as cli_main
from r3.mining.records import read_failures
from r3.tasks import get_task


@pytest.mark.slow
def test_mine_countdown_on_the_embedded_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "mine"
    argv = ["mine", "--task", "countdown", "--limit", "3", "--budget", "4", "--round-size", "2",
            "--max-new-tokens", "48", "--no-progress", "--output-dir", str(out)]  # fmt: skip
    assert cli_main(argv) == 0

    summary = json.loads((out / "summary.json").read_text())
    assert summary["queries_seen"] == 3 and summary["complete"] is True
    assert summary["model"].startswith("SmolLM2-135M-Instruct")
    assert 2 * 3 <= summary["samples"] <= 4 * 3 and summary["tokens"] > 0
    rows = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [row["query_index"] for row in rows] == [0, 1, 2]

    # A 135M model practically never solves Countdown, so there are failures to load back.
    assert summary["queries_kept"] >= 1
    records = read_failures(out / "failures.jsonl", get_task("countdown"))
    assert len(records) == summary["queries_kept"]
    for record in records:
        assert record.failed_attempts[0].episode.attempt_verdict.reason
        assert set(record.example) >= {"nums", "target"}
    import datasets

    ds = datasets.load_dataset("json", data_files=str(out / "failures.jsonl"), split="train")
    assert len(ds) == 3 and "failed_attempts" in ds.column_names

    # Running the same command again is a no-op resume (nothing sampled, same rows).
    before = (out / "failures.jsonl").read_bytes()
    assert cli_main(argv) == 0
    assert (out / "failures.jsonl").read_bytes() == before
