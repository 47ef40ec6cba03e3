#!/bin/bash
# After mining: R3 and plain GRPO side by side (one thread each), then the validation evaluations.
# Run from the repository root.
export HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
while [ ! -f runs/experiment-v5/mine/summary.json ] || ! grep -q '"complete": true' runs/experiment-v5/mine/summary.json; do sleep 10; done
.venv/bin/python runs/difficulty/chain.py A train:trained eval:trained eval:warmstart > runs/difficulty/chain-A.out 2>&1 &
.venv/bin/python runs/difficulty/chain.py B train:grpo eval:grpo > runs/difficulty/chain-B.out 2>&1 &
wait
echo all-done > runs/difficulty/v5.done
