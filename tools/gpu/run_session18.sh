#!/usr/bin/env bash
# Issue 16's shared VAE decode on 2 GPUs, one device call each (repo root, .whl carried):
#   ZX_LIMIT_S=560 bash tools/gpu/run_session18.sh call1|call2
# call1  the decode alone, whole against shared row by row (bench_split_decode.py), then the engine-level
#        split bench with the shared decode (+vaesplit) against without, 2048² and 1024²
# call3  1024² alone: the split steps in CUDA graphs with the shared decode, then without the graphs
# call2  the pool: one 2048² image split with the decode shared (ZAOXIANG_SPLIT_DECODE=1) against one GPU
source tools/gpu/prelude.sh
nvidia-smi --query-gpu=index,name --format=csv,noheader; nvidia-smi topo -m | head -3
left() { echo $((LIMIT - SECONDS - 8)); }
show() { grep -v -E 'Warning|warnings.warn|^\s*$|UserWarning|__recompiles' "$1" | tail -n "${2:-25}" | cut -c1-600; }
case ${1:-call1} in
  call1)
    timeout 300 torchrun --master-port 29611 --nproc-per-node 2 tools/gpu/bench_split_decode.py --sizes 2048,1024 \
      --runs 5 --out "$OUT/dec" >"$OUT/dec.log" 2>&1
    echo "--- decode alone: rc=$?"; show "$OUT/dec.log" 40
    timeout "$(left)" torchrun --master-port 29612 --nproc-per-node 2 tools/gpu/bench_latency.py --out "$OUT/lat" \
      --limit-s $(( $(left) - 30 )) --sizes 2048,1024 --runs 3 --variants ours+cachedit+vaesplit,ours+cachedit \
      >"$OUT/lat.log" 2>&1
    echo "--- latency: rc=$?"; show "$OUT/lat.log" 10 ;;
  call2)
    ZAOXIANG_SPLIT_DECODE=${ZX_SPLIT_DECODE:-1} timeout "$(left)" python3 tools/gpu/bench_pool_split.py \
      --workers cuda:0,cuda:1 --random-weights full --sizes ${ZX_SIZES:-2048} --runs 3 --batch 0 --out "$OUT/pool" \
      >"$OUT/pool.log" 2>&1
    echo "--- pool: rc=$?"; grep '"size"' "$OUT/pool.log" | cut -c1-500 ;;
  call3)
    timeout "$(left)" torchrun --master-port 29613 --nproc-per-node 2 tools/gpu/bench_latency.py --out "$OUT/lat" \
      --limit-s $(( $(left) - 20 )) --sizes 1024 --runs 3 \
      --variants ours+cachedit+graphs+overlap+vaesplit,ours+cachedit+vaesplit >"$OUT/lat.log" 2>&1
    echo "--- latency: rc=$?"; show "$OUT/lat.log" 8 ;;
esac
echo "=== done at ${SECONDS}s"
