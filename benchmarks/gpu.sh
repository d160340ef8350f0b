#!/usr/bin/env bash
# The accelerator rows of the scale benchmark (issue 13): class removal from the small CNN on
# mnist-aug:20000/60000/120000 (14k/42k/84k training images), 3 seeds, GIF with a 1,000-example
# Hessian sample against full retraining, retraining to GIF's F1, projecting and fine-tuning at
# GIF's compute. About 6 minutes on one H200; every finished row is appended to
# $OUT_DIR/scale_removal_gpu.jsonl, so a run cut short keeps what it finished
# (summarize it with: python benchmarks/scale_removal.py --from-partial FILE --out FILE.json).
# The HVP-cost table (benchmarks/hvp_cost.py) has no device option yet and is not run here.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-benchmarks/results}
python benchmarks/scale_removal.py --device cuda --sizes "${SIZES:-20000,60000,120000}" \
    --seeds "${SEEDS:-0,1,2}" --epochs 8 --partial "$OUT_DIR/scale_removal_gpu.jsonl" \
    --out "$OUT_DIR/scale_removal_gpu.json"
