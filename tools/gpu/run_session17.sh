#!/usr/bin/env bash
# Issues 16 and 20 on a 4-GPU host in one device call (repo root, .whl carried):
#   ZX_LIMIT_S=560 bash tools/gpu/run_session17.sh
# cuda:0,1  issue 16's engine-level split bench (torchrun; ZX_LATENCY_ARGS replaces its flags)
# cuda:2    issue 20's bench_images_in.py, 24gb profile capped at 22 GiB, Union 2.1 and every other task
# cuda:3    the same for the Union 1.0 and lite layouts (their ControlNet rows and text-to-image)
# cuda:2,3  then issue 16's pool "auto": the first image after ready against the next ones (ZX_FIRST=0 skips)
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ZAOXIANG_HOME=/tmp/zx-home ZX_COMPILE_CACHE=/tmp/zx-compile-cache
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
LIMIT=${ZX_LIMIT_S:-560}
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader; nvidia-smi topo -m | head -6
left() { echo $((LIMIT - SECONDS - 8)); }
show() { grep -v -E 'Warning|warnings.warn|^\s*$|UserWarning' "$1" | tail -n "${2:-25}" | cut -c1-600; }
LAT=${ZX_LATENCY_ARGS:---sizes 1024,2048 --variants ours+cachedit+graphs+overlap,ours+cachedit --profile 1024 --runs 2}
CUDA_VISIBLE_DEVICES=0,1 timeout "$(left)" torchrun --master-port 29611 --nproc-per-node 2 tools/gpu/bench_latency.py \
  --out "$OUT/lat" --limit-s $(( $(left) - 60 )) $LAT >"$OUT/lat.log" 2>&1 &
IMG="python3 tools/bench_images_in.py --profile 24gb --cap-gib 22 --runs 2 --control-ends 0.5 --host-timesteps both"
( CUDA_VISIBLE_DEVICES=2 timeout 330 $IMG --controlnet-layout 2.1 --out "$OUT/imgin21" >"$OUT/imgin21.log" 2>&1 &
  CUDA_VISIBLE_DEVICES=3 timeout 330 $IMG --controlnet-layout 1.0,lite --tasks text2img,adopt,controlnet \
    --out "$OUT/imgin10" >"$OUT/imgin10.log" 2>&1 &
  wait
  if [[ ${ZX_FIRST:-1} == 1 ]] && (( $(left) > 120 )); then
    CUDA_VISIBLE_DEVICES=2,3 timeout "$(left)" python3 tools/gpu/bench_pool_split.py --workers cuda:0,cuda:1 \
      --random-weights full --sizes 1024 --first-after-ready --runs 5 --batch 0 --out "$OUT/first" >"$OUT/first.log" 2>&1
    echo "first rc=$? recompiles logged: $(grep -c -i 'recompil' "$OUT/first.log")"
  fi ) &
wait
for f in imgin21 imgin10; do echo "--- $f"; show "$OUT/$f.log" 20
  python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['meta']; print({k: m.get(k) for k in ('fits_cap', 'placements', 'notes', 'controlnet_flops_per_step_vs_transformer')})" \
    "$OUT/$f/images_in.json" 2>&1 | tail -2; done
echo "--- first"; [[ -f $OUT/first.log ]] && show "$OUT/first.log" 10
echo "--- latency"; show "$OUT/lat.log" 70
echo "=== done at ${SECONDS}s"
