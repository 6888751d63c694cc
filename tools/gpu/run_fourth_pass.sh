#!/usr/bin/env bash
# Issue 7 fourth pass in one device call (run from the repo root on the GPU machine, wheels installed):
#   ZX_LIMIT_S=560 bash tools/gpu/run_fourth_pass.sh          (call 1: every variant)
#   ZX_LIMIT_S=560 bash tools/gpu/run_fourth_pass.sh verify   (call 2: no micro-benchmarks; then two
#                   restarts on the cache the variants filled, with the new defaults)
#   ZX_LIMIT_S=560 bash tools/gpu/run_fourth_pass.sh graphs   (call 3: step graphs off/on, bf16 and FP8;
#                   then the restarts and the GPU tests)
#   ZX_LIMIT_S=560 bash tools/gpu/run_fourth_pass.sh final    (call 4: the shipped defaults, bf16 and FP8,
#                   the VAE decoder NCHW vs channels-last; then the restarts and the GPU tests)
#   ZX_LIMIT_S=560 bash tools/gpu/run_fourth_pass.sh profiles (call 6: the 24gb profile in bf16 and FP8 and
#                   the 16gb profile under their caps, bench_fastpath.py's profile stage; nothing else)
# One process measures every variant (tools/gpu/bench_fourth_pass.py), then the GPU tests run on the
# compile cache it filled. JSON, logs and kernel profiles land in $OUT; the table is printed last.
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
export ZAOXIANG_HOME=${ZAOXIANG_HOME:-/tmp/zx-home} PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
export ZX_COMPILE_CACHE=/tmp/zx-compile-cache
LIMIT=${ZX_LIMIT_S:-560}
MODE=${1:-all}; SKIP=""; [[ $MODE == verify ]] && SKIP="--skip mm,ENC"
[[ $MODE == graphs ]] && SKIP="--mode graphs"
[[ $MODE == final ]] && SKIP="--mode final"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
if [[ $MODE == profiles ]]; then
  B="python3 tools/gpu/bench_fastpath.py profile --out $OUT --cache $ZX_COMPILE_CACHE"
  for run in "p24 --profile 24gb" "p24-fp8 --profile 24gb --engine-fp8" "p16 --profile 16gb --runs 3 --no-big"; do
    set -- $run; tag=$1; shift
    left=$((LIMIT - SECONDS)); (( left < 40 )) && { echo "=== $tag skipped"; continue; }
    echo "=== $tag"; timeout $((left < 200 ? left : 200)) $B --tag "$tag" "$@" 2>&1 \
      | grep -v -E "Warning|warnings.warn" >"$OUT/$tag.log"; grep -E "^(warm_image|single|batch4|== )|Error" "$OUT/$tag.log" | tail -n 8 | cut -c1-500
  done
  exit 0
fi
timeout $((LIMIT - 200)) python3 tools/gpu/bench_fourth_pass.py --out "$OUT" --cache "$ZX_COMPILE_CACHE" \
  --budget $((LIMIT - 215)) $SKIP 2>&1 | grep -v -E "Warning|warnings.warn" >"$OUT/fourth_pass.log"
tail -n 30 "$OUT/fourth_pass.log" | cut -c1-700
if [[ $MODE == verify || $MODE == graphs || $MODE == final ]]; then
  for st in restart restart-bg; do
    echo "=== $st"; timeout 110 python3 tools/gpu/bench_fastpath.py $st --out "$OUT" --cache "$ZX_COMPILE_CACHE" \
      --tag "$st" 2>&1 | grep -v -E "Warning|warnings.warn" >"$OUT/$st.log"; grep -E "^\[" "$OUT/$st.log" | tail -n 2 | cut -c1-900
  done
fi
left=$((LIMIT - SECONDS))
echo "=== gpu tests (${left}s max)"
timeout "$left" python3 -m pytest -q -s -p no:cacheprovider -m gpu tests/test_gpu_fastpath.py 2>&1 \
  | grep -E "PSNR|peak|relative|passed|failed|Error|assert" | tail -n 20 | tee "$OUT/pytest-gpu.log"
# only a few files come back from the device: everything goes in one tarball, the main log stays beside it
tar -czf /tmp/results.tgz -C "$OUT" . && mv /tmp/results.tgz "$OUT/" \
  && find "$OUT" -type f ! -name results.tgz ! -name fourth_pass.json ! -name pytest-gpu.log -delete
