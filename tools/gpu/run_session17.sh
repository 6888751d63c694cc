#!/usr/bin/env bash
# Issues 16 and 20 on a 4-GPU host, one device call each (repo root, .whl carried):
#   ZX_LIMIT_S=560 bash tools/gpu/run_session17.sh call1|call2
# call1  cuda:0,1  issue 16's engine-level split bench, profile at 1024² (ZX_LATENCY_ARGS replaces its flags)
#        cuda:2    issue 20's bench_images_in.py, 24gb profile capped at 22 GiB, Union 2.1 and every other task
#        cuda:3    the same for the Union 1.0 and lite layouts (their ControlNet rows and text-to-image)
#        cuda:2,3  then issue 16's pool "auto": the first image after ready against the next five
# call2  cuda:0,1  the split bench's FP8-exchange and reordering variants, profile at 2048² (lost: see call3)
#        cuda:2    the Union 1.0 and lite rows again (call1 lost them to a shared cache file)
#        cuda:2,3  then the split over PCIe (NCCL_P2P_DISABLE=1 as the stand-in)
#        cuda:0-3  last, one image over all four GPUs (Ulysses 4) where time is left
# call3  cuda:0,1  the reordering and FP8-exchange variants again (FP8 now on Triton), profile at 2048²
#        cuda:2,3  a request of 16 through `zaoxiang bench` at the default split setting (auto)
# call4  (2 GPUs, alone) auto's first image after ready at 1024², then the same with the split
#        steps kept in CUDA graphs (ZAOXIANG_SPLIT_STEP_GRAPHS=1)
# call5  (2 GPUs) the VAE decode shared row by row (+vaesplit) against the whole decode, 2048² and 1024²,
#        then auto's first image with it on (ZAOXIANG_SPLIT_DECODE=1) where time is left
source tools/gpu/prelude.sh
nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader; nvidia-smi topo -m | head -6
left() { echo $((LIMIT - SECONDS - 8)); }
show() { grep -v -E 'Warning|warnings.warn|^\s*$|UserWarning|__recompiles' "$1" | tail -n "${2:-25}" | cut -c1-600; }
lat() {  # lat NAME DEVICES NPROC ARGS...: the split bench under its own name
  local name=$1 devices=$2 n=$3; shift 3
  CUDA_VISIBLE_DEVICES=$devices timeout "$(left)" torchrun --master-port $((29600 + RANDOM % 300)) \
    --nproc-per-node "$n" tools/gpu/bench_latency.py --out "$OUT/$name" --limit-s $(( $(left) - 60 )) "$@" \
    >"$OUT/$name.log" 2>&1
}
IMG="python3 tools/bench_images_in.py --profile 24gb --cap-gib 22 --runs 2 --control-ends 0.5 --host-timesteps both"
imgin_meta() { python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['meta']; print({k: m.get(k) for k in ('fits_cap', 'placements', 'notes', 'controlnet_flops_per_step_vs_transformer')})" \
  "$OUT/$1/images_in.json" 2>&1 | tail -2; }
case ${1:-call1} in
  call1)
    lat lat 0,1 2 ${ZX_LATENCY_ARGS:---sizes 1024,2048 --variants ours+cachedit+graphs+overlap,ours+cachedit --profile 1024 --runs 2} &
    ( CUDA_VISIBLE_DEVICES=2 timeout 330 $IMG --controlnet-layout 2.1 --out "$OUT/imgin21" >"$OUT/imgin21.log" 2>&1 &
      CUDA_VISIBLE_DEVICES=3 timeout 330 $IMG --controlnet-layout 1.0,lite --tasks text2img,adopt,controlnet \
        --out "$OUT/imgin10" >"$OUT/imgin10.log" 2>&1 &
      wait
      if (( $(left) > 120 )); then
        CUDA_VISIBLE_DEVICES=2,3 timeout "$(left)" python3 tools/gpu/bench_pool_split.py --workers cuda:0,cuda:1 \
          --random-weights full --sizes 1024 --first-after-ready --runs 5 --batch 0 --out "$OUT/first" >"$OUT/first.log" 2>&1
        echo "first rc=$?"
      fi ) &
    wait
    for f in imgin21 imgin10; do echo "--- $f"; show "$OUT/$f.log" 20; imgin_meta $f; done
    echo "--- first"; [[ -f $OUT/first.log ]] && show "$OUT/first.log" 10
    echo "--- latency"; show "$OUT/lat.log" 70 ;;
  call2)
    lat lat 0,1 2 --sizes 2048,1024 --runs 2 --profile 2048 \
      --variants ours+cachedit+fp8comm,ours+cachedit+reorder,ours+cachedit+graphs+overlap+fp8comm &
    ( CUDA_VISIBLE_DEVICES=2 timeout 300 $IMG --controlnet-layout 1.0,lite --tasks text2img,adopt,controlnet \
        --out "$OUT/imgin10" >"$OUT/imgin10.log" 2>&1
      (( $(left) > 150 )) && NCCL_P2P_DISABLE=1 lat pcie 2,3 2 --sizes 1024,2048 --runs 2 --variants ours+cachedit ) &
    wait
    echo "--- imgin10"; show "$OUT/imgin10.log" 14; imgin_meta imgin10
    echo "--- pcie"; [[ -f $OUT/pcie.log ]] && show "$OUT/pcie.log" 8
    echo "--- latency"; show "$OUT/lat.log" 75
    if (( $(left) > 150 )); then
      lat four 0,1,2,3 4 --sizes 2048,1024 --runs 2 --variants ours+cachedit
      echo "--- four GPUs"; show "$OUT/four.log" 8
    fi ;;
  call3)
    lat lat 0,1 2 --sizes 2048,1024 --runs 2 --profile 2048 \
      --variants ours+cachedit+reorder,ours+cachedit+graphs+overlap+fp8comm,ours+cachedit+fp8comm &
    CUDA_VISIBLE_DEVICES=2,3 timeout 300 python3 -m studio bench --random-weights full --size 1024 --steps 9 \
      --batch 16 --runs 3 --json --workers cuda:0,cuda:1 >"$OUT/p2auto.json" 2>"$OUT/p2auto.err" &
    wait
    echo "--- p2 at auto"; show "$OUT/p2auto.err" 4; tail -c 1500 "$OUT/p2auto.json"
    echo "--- latency"; show "$OUT/lat.log" 80 ;;
  call4)
    for g in 0 1; do
      (( $(left) < 100 )) && break
      env $([[ $g == 1 ]] && echo ZAOXIANG_SPLIT_STEP_GRAPHS=1) timeout "$(left)" python3 tools/gpu/bench_pool_split.py \
        --workers cuda:0,cuda:1 --random-weights full --sizes 1024 --first-after-ready --runs 6 --batch 0 \
        --out "$OUT/first$g" >"$OUT/first$g.log" 2>&1
      echo "--- first, split step graphs $g: rc=$?"; grep -E "^first image|^split" "$OUT/first$g.log" | cut -c1-400
      grep '"size"' "$OUT/first$g.log" | cut -c1-300
    done ;;
  call5)
    lat lat 0,1 2 --sizes 2048,1024 --runs 3 --variants ours+cachedit+vaesplit,ours+cachedit+graphs+overlap+vaesplit,ours+cachedit
    echo "--- latency"; show "$OUT/lat.log" 12
    if (( $(left) > 200 )); then
      ZAOXIANG_SPLIT_DECODE=1 timeout "$(left)" python3 tools/gpu/bench_pool_split.py --workers cuda:0,cuda:1 \
        --random-weights full --sizes 2048 --runs 3 --batch 0 --out "$OUT/pool" >"$OUT/pool.log" 2>&1
      echo "--- pool, decode shared: rc=$?"; grep '"size"' "$OUT/pool.log" | cut -c1-400
    fi ;;
esac
echo "=== done at ${SECONDS}s"
