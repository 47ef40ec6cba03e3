#!/bin/bash
# The held-out run: evaluations in two chains (one thread each), then the driver (report, forgetting).
# Run from the repository root; ../exp-tree is a copy of the source tree the run used.
export PYTHONPATH=../exp-tree/src HF_HUB_OFFLINE=1
OMP_NUM_THREADS=1 .venv/bin/python runs/experiment/chain.py A warmstart trained warmstart:resample trained:resample > runs/experiment/chain-A.out 2>&1 &
OMP_NUM_THREADS=1 .venv/bin/python runs/experiment/chain.py B shuffled grpo shuffled:resample grpo:resample > runs/experiment/chain-B.out 2>&1 &
wait
.venv/bin/python ../exp-tree/experiments/countdown_r3.py --config runs/experiment/heldout-config.yaml --split heldout > runs/experiment/driver.out 2>&1
echo "driver exit $?" >> runs/experiment/driver.out
