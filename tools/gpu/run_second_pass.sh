#!/usr/bin/env bash
# Issue 7 second pass in one device call (run from the repo root on the GPU machine, wheels installed):
#   bash tools/gpu/run_second_pass.sh          (call 1: every variant)
#   bash tools/gpu/run_second_pass.sh verify   (call 2: the adopted defaults against A, FP8 on them)
# One process measures every variant (tools/gpu/bench_second_pass.py), then the GPU tests run;
# the variant table is printed last. JSON, logs and kernel profiles land in $OUT.
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
export ZAOXIANG_HOME=${ZAOXIANG_HOME:-/tmp/zx-home} PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
export ZX_COMPILE_CACHE=/tmp/zx-compile-cache
LIMIT=${ZX_LIMIT_S:-280}  # stay inside the call's own timeout
MODE=${1:-all}; V=""; J=second_pass
[[ $MODE == verify ]] && V=--verify && J=second_pass_verify
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
timeout $((LIMIT - 90)) python3 tools/gpu/bench_second_pass.py --out "$OUT" --cache "$ZX_COMPILE_CACHE" \
  --budget $((LIMIT - 105)) $V 2>&1 | grep -v -E "Warning|warnings.warn" >"$OUT/$J.log"
tail -n 25 "$OUT/$J.log" | cut -c1-600
left=$((LIMIT - SECONDS))
echo "=== gpu tests (${left}s max)"
timeout "$left" python3 -m pytest -q -s -p no:cacheprovider -m gpu tests/test_gpu_fastpath.py 2>&1 \
  | grep -E "PSNR|peak|passed|failed|Error|assert" | tail -n 20 | tee "$OUT/pytest-gpu.log"
python3 tools/gpu/second_pass_table.py "$OUT/$J.json"
