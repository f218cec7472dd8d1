#!/usr/bin/env bash
# The exact commands that produced the shipped checkpoints (2-core CPU unless noted; each card states its hardware and time).
# Usage: bash checkpoints/recipes.sh [NAME ...]   (default: all). Then render each card:
#   s4d-hf release checkpoints/NAME --methods benchmarks/methods_results.json
#   (s4d-spoken-digits also: --extra real --extra unseen --extra families --extra rate:16000)
# The same-size Transformer next to S4D in a card (run before release; it reads the folder's budget):
#   s4d-hf baseline checkpoints/NAME        # writes checkpoints/NAME/transformer_baseline.json
# After a change to the package's model, processor or pipeline code, refresh the copies every folder carries
# (tests/test_remote_pipelines.py checks they are byte-identical to s4d_hf/):
#   s4d-hf remote-code checkpoints/s4d-*
set -euo pipefail
cd "$(dirname "$0")/.."
SELECTED="${*:-}"

if [ -z "$SELECTED" ] || [[ " $SELECTED " == *" s4d-tecator "* ]]; then
  s4d-hf train --task time-series-regression --dataset tecator --d-model 64 --n-layers 4 --d-state 64 \
    --bidirectional --epochs 40 --batch-size 16 --lr 5e-3 --seed 0 \
    --output-dir checkpoints/s4d-tecator --overwrite --no-progress
fi
if [ -z "$SELECTED" ] || [[ " $SELECTED " == *" s4d-plaid "* ]]; then
  s4d-hf train --task time-series-classification --dataset plaid --dataset-option downsample=4 \
    --dataset-option features=log,standardized,log_rms --dataset-option crops=3 \
    --d-model 64 --n-layers 4 --d-state 64 --bidirectional --epochs 25 --batch-size 32 --lr 1e-2 \
    --dropout 0.2 --weight-decay 0.05 --seed 0 \
    --output-dir checkpoints/s4d-plaid --overwrite --no-progress
fi
if [ -z "$SELECTED" ] || [[ " $SELECTED " == *" s4d-shakespeare "* ]]; then
  s4d-hf train --task causal-lm --dataset shakespeare --d-model 128 --n-layers 4 --d-state 64 --prenorm \
    --init legs-ptd --max-steps 1000 --eval-steps 250 --batch-size 32 --lr 5e-3 --dataset-option max_eval_samples=200 --seed 0 \
    --output-dir checkpoints/s4d-shakespeare --overwrite --no-progress
fi
if [ -z "$SELECTED" ] || [[ " $SELECTED " == *" s4d-fashion-mnist "* ]]; then
  s4d-hf train --task image-classification --dataset fashion-mnist --d-model 64 --n-layers 4 --d-state 64 \
    --bidirectional --epochs 4 --batch-size 64 --lr 1e-2 --seed 0 \
    --output-dir checkpoints/s4d-fashion-mnist --overwrite --no-progress
fi
# Full 28x28 resolution read pixel by pixel (L = 784, the sequential-image setting of the S4 papers). Trained on one
# NVIDIA H200 (2 min); the same command runs on a CPU (device chosen automatically), far slower.
if [ -z "$SELECTED" ] || [[ " $SELECTED " == *" s4d-fashion-mnist-784 "* ]]; then
  s4d-hf train --task image-classification --dataset fashion-mnist --dataset-option image_size=28 --d-model 128 \
    --n-layers 4 --d-state 64 --bidirectional --epochs 5 --batch-size 128 --lr 1e-2 --dropout 0.1 --weight-decay 0.05 \
    --seed 0 --output-dir checkpoints/s4d-fashion-mnist-784 --overwrite --no-progress
fi
if [ -z "$SELECTED" ] || [[ " $SELECTED " == *" s4d-spoken-digits "* ]]; then
  s4d-hf train --task audio-classification --dataset spoken-digits --dataset-option n_per_class=500 \
    --dataset-option n_eval_per_class=30 --dataset-option n_test_per_class=100 --d-model 32 --n-layers 3 \
    --d-state 32 --bidirectional --max-steps 3000 --eval-steps 250 --batch-size 16 --lr 1e-2 --weight-decay 0.05 \
    --seed 0 --output-dir checkpoints/s4d-spoken-digits --overwrite --no-progress
fi
