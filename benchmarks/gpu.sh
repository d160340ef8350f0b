#!/usr/bin/env bash
# The accelerator rows of the scale benchmark (issue 13), small CNN (width 0.5) on
# mnist-aug:20000/60000/120000 (14k/42k/84k training images), 3 seeds, GIF with a 1,000-example
# Hessian sample against full retraining, retraining to GIF's score, projecting and fine-tuning
# at GIF's compute:
#   1. class removal (class 8)                  -> $OUT_DIR/scale_removal_gpu.json / .md
#   2. the HVP-cost table on the GPU             -> $OUT_DIR/hvp_cost_gpu.json
#   3. label correction (40% of the class-8 training images trained as 3, put back)
#                                                -> $OUT_DIR/scale_relabel_gpu.json / .md
#   4. with RESNET=1: class removal with ResNet-18 at width 0.25 (same sizes and seeds)
#                                                -> $OUT_DIR/scale_removal_resnet18_gpu.json / .md
# About 3 + 1 + 3 minutes on one H200 without RESNET (the removal rows took 3 minutes there;
# the relabel rows should cost the same: same training, same GIF settings). Every finished row is
# appended to $OUT_DIR/<name>.jsonl, so a run cut short keeps what it finished (summarize it with
# python benchmarks/scale_removal.py --task TASK --from-partial FILE.jsonl --out FILE.json).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=${OUT_DIR:-benchmarks/results}
SIZES=${SIZES:-20000,60000,120000}
SEEDS=${SEEDS:-0,1,2}
python benchmarks/scale_removal.py --device cuda --task remove --sizes "$SIZES" \
    --seeds "$SEEDS" --epochs 8 --partial "$OUT_DIR/scale_removal_gpu.jsonl" \
    --out "$OUT_DIR/scale_removal_gpu.json"
python benchmarks/hvp_cost.py --device cuda --out "$OUT_DIR/hvp_cost_gpu.json"
python benchmarks/scale_removal.py --device cuda --task relabel --sizes "$SIZES" \
    --seeds "$SEEDS" --epochs 8 --partial "$OUT_DIR/scale_relabel_gpu.jsonl" \
    --out "$OUT_DIR/scale_relabel_gpu.json"
if [[ "${RESNET:-0}" == 1 ]]; then
    python benchmarks/scale_removal.py --device cuda --task remove --models resnet18 \
        --width 0.25 --sizes "$SIZES" --seeds "$SEEDS" --epochs 8 \
        --partial "$OUT_DIR/scale_removal_resnet18_gpu.jsonl" \
        --out "$OUT_DIR/scale_removal_resnet18_gpu.json"
fi
