#!/bin/bash
# Difficulty probe (issue 18): the v3 warm-start, mining seed 2000, 24 queries, the screen's retry success.
# Run from the repository root.
W=runs/experiment-v3/warmstart
run() { name=$1; shift
  OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/r3 mine --model $W --output-dir runs/difficulty/$name --seed 2000 \
    --limit 24 --budget 8 --round-size 8 --full --keep 1 --max-new-tokens 24 --window 8 --batch-size 64 \
    --temperature 1.0 --device cpu --no-progress --screen 8 --screen-retry-temperature 1.0 \
    --reflection-max-new-tokens 48 "$@" > runs/difficulty/$name.log 2>&1
}
run n2 --task-arg min_nums=2 --task-arg max_nums=2 --task-arg max_number=20 --task-arg max_target=60 &
run n3small --task-arg min_nums=3 --task-arg max_nums=3 --task-arg max_number=6 --task-arg max_target=20 &
wait
