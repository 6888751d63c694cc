#!/usr/bin/env bash
# This wave's GPU figures in few device calls (repo root, .whl carried: diffusers, platformdirs, tomli_w, cache-dit):
#   ZX_LIMIT_S=560 bash tools/gpu/run_session15.sh "STAGE ..."
# Stages:
#   lora+imgin  issue 19's bench_lora.py on cuda:0 beside issue 20's bench_images_in.py (24gb profile) on cuda:1
#   cn+p1       bench_images_in.py (ZX_CN_ARGS) on cuda:1 beside issue 15's one-GPU pool on cuda:0
#   imginfull   bench_images_in.py under the full profile on cuda:0
#   latency     issue 16's engine-level split bench (torchrun, 2 GPUs; ZX_LATENCY_ARGS adds flags)
#   latency-pcie  the same over PCIe (NCCL_P2P_DISABLE=1)
#   p1 p2 p1b p2b  issue 15's pool: a request of 16 on cuda:0, then on cuda:0,1 (zaoxiang bench, random weights)
#   split       issue 16 through the pool (see docs/benchmarks.md for its command)
#   first first-pcie  issue 16's "auto" on cuda:0,1: the first image after ready against the next five
#               (bench_pool_split.py --first-after-ready; -pcie: NCCL_P2P_DISABLE=1); p2 then gives the same
#               figure through `zaoxiang bench` (its "first single ÷ median single")
# JSON and logs land in $OUT.
source tools/gpu/prelude.sh
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
left() { echo $((LIMIT - SECONDS - 5)); }
cap() { local t=$1 l; l=$(left); (( t > l )) && t=$l; echo "$t"; }
show() { grep -v -E 'Warning|warnings.warn|^\s*$|UserWarning' "$1" | tail -n "${2:-25}" | cut -c1-400; }
B="python3 -m studio bench --random-weights full --size 1024 --steps 9 --batch 16 --runs 3 --json"
for s in ${1:-lora+imgin latency}; do
  (( $(left) < 60 )) && { echo "=== $s skipped: $(left)s left"; continue; }
  echo "=== $s (at ${SECONDS}s)"
  case $s in
    lora+imgin)
      t=$(cap 300)
      CUDA_VISIBLE_DEVICES=0 timeout "$t" python3 tools/gpu/bench_lora.py --out "$OUT/lora" >"$OUT/lora.log" 2>&1 &
      CUDA_VISIBLE_DEVICES=1 timeout "$t" python3 tools/bench_images_in.py --profile 24gb --out "$OUT/imgin24" \
        >"$OUT/imgin24.log" 2>&1 &
      wait; echo "--- lora"; show "$OUT/lora.log"; echo "--- images in, 24gb"; show "$OUT/imgin24.log" 14 ;;
    cn+p1)  # ZX_CN_ARGS: bench_images_in.py's flags, on cuda:1, beside the one-GPU pool on cuda:0
      t=$(cap 240)
      eval "CUDA_VISIBLE_DEVICES=1 timeout $t python3 tools/bench_images_in.py ${ZX_CN_ARGS:-} --out $OUT/cn" >"$OUT/cn.log" 2>&1 &
      timeout "$t" $B --workers cuda:0 >"$OUT/p1.json" 2>"$OUT/p1.err"; echo "p1 rc=$?"; show "$OUT/p1.err" 3
      wait; echo "--- images in"; show "$OUT/cn.log" 16 ;;
    imginfull)
      timeout "$(cap 240)" python3 tools/bench_images_in.py --profile full --out "$OUT/imginfull" >"$OUT/imginfull.log" 2>&1
      show "$OUT/imginfull.log" 14 ;;
    latency|latency-pcie)
      p2p=""; [[ $s == latency-pcie ]] && p2p="NCCL_P2P_DISABLE=1"
      env $p2p timeout "$(cap 400)" torchrun --nproc-per-node 2 tools/gpu/bench_latency.py --out "$OUT/$s" \
        ${ZX_LATENCY_ARGS:-} >"$OUT/$s.log" 2>&1; echo "rc=$?"; show "$OUT/$s.log" 30 ;;
    p1|p1b) timeout "$(cap 150)" $B --workers cuda:0 >"$OUT/$s.json" 2>"$OUT/$s.err"; echo "rc=$?"; show "$OUT/$s.err" 3 ;;
    p2|p2b) timeout "$(cap 150)" $B --workers cuda:0,cuda:1 >"$OUT/$s.json" 2>"$OUT/$s.err"; echo "rc=$?"; show "$OUT/$s.err" 3 ;;
    first|first-pcie)
      p2p=""; [[ $s == first-pcie ]] && p2p="NCCL_P2P_DISABLE=1"
      env $p2p timeout "$(cap 300)" python3 tools/gpu/bench_pool_split.py --workers cuda:0,cuda:1 --random-weights full \
        --sizes 1024 --first-after-ready --runs 5 --out "$OUT/$s" >"$OUT/$s.log" 2>&1; echo "rc=$?"
      echo "recompiles logged: $(grep -c -i 'recompil' "$OUT/$s.log")"; show "$OUT/$s.log" 8 ;;
    split) timeout "$(cap 300)" bash -c "${ZX_SPLIT_CMD:?set ZX_SPLIT_CMD}" >"$OUT/split.log" 2>&1; echo "rc=$?"; show "$OUT/split.log" 30 ;;
  esac
done
ls "$OUT"/p[12]*.json >/dev/null 2>&1 && python3 tools/gpu/pool_pass_table.py "$OUT"
echo "=== done at ${SECONDS}s"
