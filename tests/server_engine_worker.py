"""One rank of `test_training_engines.py::test_server_engine_in_two_processes` (run by torchrun).

    torchrun --nproc_per_node 2 tests/server_engine_worker.py OUT_DIR

Calls `vllm_server_engine` twice on two CPU processes (gloo), with a stand-in `VLLMClient` on the
main process only, as TRL sets it up, and writes what this rank got back to OUT_DIR/rank{R}.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

from accelerate import PartialState

from r3.generation.base import SamplingConfig
from r3.training.engines import vllm_server_engine
from test_training_engines import EchoClient
from test_training_support import make_tokenizer


def main() -> None:
    out = Path(sys.argv[1])
    state = PartialState(cpu=True)
    client = EchoClient() if state.is_main_process else None
    trainer = SimpleNamespace(
        accelerator=state,
        vllm_generation=SimpleNamespace(vllm_client=client),
        processing_class=make_tokenizer(),
    )
    first_prompts = [[1, 2, 3], [4, 5]] if state.process_index == 0 else [[6, 7, 8, 9]]
    second_prompts = [[10, 11]] if state.process_index == 0 else []
    first = vllm_server_engine(trainer, first_prompts, SamplingConfig(max_new_tokens=4, logprobs=True))
    second = vllm_server_engine(trainer, second_prompts, SamplingConfig(max_new_tokens=4, temperature=0.0))
    result = {
        "world": state.num_processes,
        "first": [list(c.token_ids) for c in first],
        "first_logprobs": [list(c.logprobs or ()) for c in first],
        "second": [list(c.token_ids) for c in second],
        "requests": sorted([r["prompts"][0], r["generation_kwargs"]["seed"]] for r in client.requests)
        if client
        else [],
    }
    (out / f"rank{state.process_index}.json").write_text(json.dumps(result))
    state.destroy_process_group()


if __name__ == "__main__":
    main()
