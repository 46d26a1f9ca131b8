#!/usr/bin/env bash
# Does bf16 autocast cost accuracy? The same seed and steps in 32-true and bf16-mixed, then the
# test set: patch2image Light (patch phase, 8 epochs of 666 steps) and DPN (1 epoch of 200 steps)
# on DRIVE, one thread pinned to core CORE. Results: benchmarks/results/precision_accuracy.md.
# usage: DRIVE=/data/DRIVE [RUNS=runs] scripts/precision_accuracy.sh CORE
set -euo pipefail
CORE=$1
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1
R="taskset -c $CORE .venv/bin/retina"
D=--data.init_args.dataset.init_args.root=${DRIVE:?set DRIVE to the DRIVE folder}
for prec in 32-true bf16-mixed; do
  $R fit --config configs/drive/patch2image_light.yaml $D --trainer.max_epochs=8 --trainer.precision=$prec \
    --runs_dir ${RUNS:-runs} --experiment precision/light/$prec
  $R test --config configs/drive/patch2image_light.yaml $D --trainer.precision=$prec \
    --runs_dir ${RUNS:-runs} --experiment precision/light/$prec --ckpt_path last
  $R fit --config configs/drive/dpn.yaml $D --trainer.max_epochs=1 --trainer.precision=$prec \
    --runs_dir ${RUNS:-runs} --experiment precision/dpn/$prec
  $R test --config configs/drive/dpn.yaml $D --trainer.precision=$prec \
    --runs_dir ${RUNS:-runs} --experiment precision/dpn/$prec --ckpt_path last
done
