#!/usr/bin/env bash
# Issue 20 on one GPU (repo root, .whl carried: diffusers, platformdirs, tomli_w):
#   ZX_LIMIT_S=560 bash tools/gpu/run_images_in.sh
# Under the 24gb profile with the process capped at 22 GiB (what the profile plans for on a 24 GB card):
# text-to-image, img2img, inpaint, hires fix, and random ControlNets of the Union 2.1 and 1.0 layouts
# (compiled, control end 1.0 and 0.5). Every row should run (no "out of memory") with its peak under
# 22 GiB; the meta says where the text encoder went (placements) and fits_cap. ZX_IMGIN_ARGS adds flags.
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ZAOXIANG_HOME=/tmp/zx-home ZX_COMPILE_CACHE=/tmp/zx-compile-cache
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
timeout $(( ${ZX_LIMIT_S:-560} - 20 )) python3 tools/bench_images_in.py --profile 24gb --cap-gib 22 --runs 2 \
  --controlnet-layout 2.1,1.0 --control-ends 0.5 --host-timesteps both ${ZX_IMGIN_ARGS:-} --out "$OUT/imgin-cap22" >"$OUT/imgin-cap22.log" 2>&1
echo "rc=$?"
grep -v -E 'Warning|warnings.warn|^\s*$|UserWarning' "$OUT/imgin-cap22.log" | tail -n 22 | cut -c1-400
python3 -c "import json,sys; m=json.load(open(sys.argv[1]))['meta']; print({k: m[k] for k in ('fits_cap', 'placements', 'notes', 'controlnet_flops_per_step_vs_transformer')})" \
  "$OUT/imgin-cap22/images_in.json"
