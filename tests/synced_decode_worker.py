"""One rank of `test_training_engines.py::test_synced_token_loop_keeps_processes_in_step` (torchrun).

    torchrun --nproc_per_node 2 tests/synced_decode_worker.py OUT_DIR

Rank 0 samples three rows (a seeded draw, so they end at different steps), rank 1 one short row;
both in synced mode over gloo. Writes the forward calls made and the rows, synced and alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from accelerate import PartialState

from r3.generation.base import SamplingConfig
from r3.generation.transformers_backend import TransformersBackend
from test_training_support import make_model, make_tokenizer


def main() -> None:
    out = Path(sys.argv[1])
    state = PartialState(cpu=True)
    tokenizer = make_tokenizer()
    model = make_model(tokenizer).eval()
    backend = TransformersBackend(model, tokenizer, batch_size=8)
    forwards = []
    model.register_forward_pre_hook(lambda module, args: forwards.append(1))
    ids = tokenizer("q0 reflect", add_special_tokens=False)["input_ids"]
    rows = [ids, ids, ids[:1]] if state.process_index == 0 else [ids[:1]]
    sampling = SamplingConfig(max_new_tokens=12, temperature=1.5, seeds=tuple(range(len(rows))))
    synced = backend.sample_tokens(rows, sampling, synced=True)
    count = len(forwards)
    alone = backend.sample_tokens(rows, sampling)
    result = {
        "forwards": count,
        "synced": [list(c.token_ids) for c in synced],
        "alone": [list(c.token_ids) for c in alone],
    }
    (out / f"rank{state.process_index}.json").write_text(json.dumps(result))
    state.destroy_process_group()


if __name__ == "__main__":
    main()
