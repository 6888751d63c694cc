#!/usr/bin/env bash
# Train the demo model on the lent GPU (tools/train_demo.py), then assemble it and time it on
# one CPU core there. Run from the repo root with .whl carried; results land in $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 tools/train_demo.py train --out "$OUT" --seed 0 --vae-steps 1400 --vae-budget-s "${VAE_BUDGET:-65}" \
  --dit-steps 6000 --lr 7e-4 --budget-s "${DIT_BUDGET:-215}" "$@" 2>&1 | tee "$OUT/train.log" || exit 1
python3 tools/train_demo.py assemble --weights "$OUT" --out /tmp/demo-model --version check 2>&1 | tail -2
python3 tools/eval_demo.py --model /tmp/demo-model --threads 1 --limit 8 2>&1 | tee -a "$OUT/train.log"
