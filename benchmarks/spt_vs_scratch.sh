#!/usr/bin/env bash
# From scratch vs self-pretraining (SPT, Amos et al. 2024) then fine-tuning, at equal fine-tuning steps, on Tecator
# (time-series regression, fat %). A small bidirectional model, so SPT uses the masked-denoising objective on the
# train inputs (labels ignored). Prints test RMSE per seed and the mean over seeds. Not a test; never run in CI.
#
#   bash benchmarks/spt_vs_scratch.sh [OUT_DIR]        # default OUT_DIR: /tmp/spt-vs-scratch
#   env: SEEDS="0 1 2" SPT_STEPS=100 FT_STEPS=100 PYTHON=python
set -euo pipefail
OUT=${1:-/tmp/spt-vs-scratch}
PYTHON=${PYTHON:-python}
SEEDS=${SEEDS:-"0 1 2"}
SPT_STEPS=${SPT_STEPS:-100}
FT_STEPS=${FT_STEPS:-100}
SIZE=(--d-model 32 --n-layers 2 --d-state 16 --bidirectional)
COMMON=(--dataset tecator --batch-size 16 --lr 5e-3 --eval-steps 25 --no-progress --overwrite)
mkdir -p "$OUT"
for seed in $SEEDS; do
  if [ ! -f "$OUT/spt-$seed/config.json" ]; then  # a backbone of an earlier run in OUT is reused
    $PYTHON -m s4d_hf.train --task self-pretraining "${COMMON[@]}" "${SIZE[@]}" --max-steps "$SPT_STEPS" \
      --seed "$seed" --output-dir "$OUT/spt-$seed" > "$OUT/spt-$seed.log" 2>&1
  fi
  $PYTHON -m s4d_hf.train --task time-series-regression "${COMMON[@]}" --init-from "$OUT/spt-$seed" \
    --max-steps "$FT_STEPS" --seed "$seed" --output-dir "$OUT/spt-ft-$seed" > "$OUT/spt-ft-$seed.log" 2>&1
  $PYTHON -m s4d_hf.train --task time-series-regression "${COMMON[@]}" "${SIZE[@]}" \
    --max-steps "$FT_STEPS" --seed "$seed" --output-dir "$OUT/scratch-$seed" > "$OUT/scratch-$seed.log" 2>&1
done
$PYTHON - "$OUT" $SEEDS <<'PY'
import json, sys
import numpy as np
out, seeds = sys.argv[1], sys.argv[2:]
for name in ("scratch", "spt-ft"):
    rmse = [json.load(open(f"{out}/{name}-{s}/all_results.json"))["test_rmse"] for s in seeds]
    print(f"{name:8s} test RMSE per seed {', '.join(f'{v:.3f}' for v in rmse)}; mean {np.mean(rmse):.3f} "
          f"(std {np.std(rmse):.3f}, {len(rmse)} seeds)")
from s4d_hf.training.datasets import load_builtin
splits = load_builtin("tecator", seed=0)
y_train, y_test = (np.array([e["labels"] for e in split]) for split in (splits.train, splits.test))
print(f"train-mean predictor test RMSE {np.sqrt(np.mean((y_test - y_train.mean()) ** 2)):.3f}")
PY
