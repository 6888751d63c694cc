#!/usr/bin/env bash
# Issue 15 in one device call on a 2-GPU machine (repo root, .whl carried: diffusers, platformdirs, tomli_w):
#   ZX_LIMIT_S=570 bash tools/gpu/run_pool_pass.sh [stages]
# Stages (default "e1 p2 cap p1"), each one `zaoxiang bench` through the pool on random full-size weights
# that every worker builds itself, 1024x1024, 9 steps, a request of 16:
#   e1  the engine alone in this process (the 16 images one by one), then a pool on cuda:0
#   p2  a pool on cuda:0 and cuda:1          cap  the same with cuda:1 under the 24gb profile
#   p1  a pool on cuda:0 again (the spread between two one-GPU runs)
#   p1b p2b  one- and two-GPU pools once more   cap16  cuda:1 under the 16gb profile (streams, no compile)
#   tests  the GPU tests (tests/test_gpu_fastpath.py) in the time left
# (issue 15's calls ran the default, then "p1 p2 cap p1b p2b cap16", then "e1 p2 p2b tests")
# JSON and logs land in $OUT; the table (tools/gpu/pool_pass_table.py) is printed last.
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ZAOXIANG_HOME=/tmp/zx-home
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
LIMIT=${ZX_LIMIT_S:-570}
nvidia-smi --query-gpu=index,name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
nvidia-smi topo -m 2>/dev/null | head -4
B="python3 -m studio bench --random-weights full --size 1024 --steps 9 --batch 16 --runs 4 --json"
stage() {  # stage TAG TIMEOUT ARGS...
  local tag=$1 t=$2; shift 2
  local left=$((LIMIT - SECONDS - 5))
  if (( left < 60 )); then echo "=== $tag skipped: ${left}s left"; return; fi
  (( t > left )) && t=$left
  echo "=== $tag (${t}s max, at ${SECONDS}s)"
  timeout "$t" $B "$@" >"$OUT/$tag.json" 2>"$OUT/$tag.err"
  echo "rc=$? $(grep -v -E 'Warning|warnings.warn|^\s*$' "$OUT/$tag.err" | tail -n 3 | cut -c1-300)"
}
for s in ${1:-e1 p2 cap p1}; do
  case $s in
    e1) stage e1 300 --workers cuda:0 --engine-baseline ;;
    p2) stage p2 200 --workers cuda:0,cuda:1 ;;
    cap) stage cap 240 --workers cuda:0,cuda:1 --profile full,24gb ;;
    p1|p1b) stage "$s" 150 --workers cuda:0 ;;
    p2b) stage p2b 150 --workers cuda:0,cuda:1 ;;
    cap16) stage cap16 200 --workers cuda:0,cuda:1 --profile full,16gb ;;
    tests) left=$((LIMIT - SECONDS - 10)); echo "=== gpu tests (${left}s max)"
           timeout "$left" python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_fastpath.py 2>&1 \
             | grep -E "passed|failed|Error|assert" | tail -n 15 | tee "$OUT/pytest-gpu.log" ;;
  esac
done
python3 tools/gpu/pool_pass_table.py "$OUT" | tee "$OUT/table.md"
