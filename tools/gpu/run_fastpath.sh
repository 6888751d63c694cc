#!/usr/bin/env bash
# Issue 7 GPU measurements in one device call. Run from the repo root on the GPU machine:
#   bash tools/gpu/run_fastpath.sh [all|profiles|tests|restart]
# Needs diffusers (carried as wheels in .whl/). Writes JSON and logs under $OUT.
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
RES=/tmp/zx-res; mkdir -p "$RES"  # everything lands here; $OUT gets all.json, all.log and a tarball
export ZAOXIANG_HOME=${ZAOXIANG_HOME:-/tmp/zx-home} PYTHONUNBUFFERED=1 PYTHONPATH="$PWD:${PYTHONPATH:-}"
CACHE=/tmp/zx-compile-cache
B="python3 tools/gpu/bench_fastpath.py --out $RES --cache $CACHE"
export ZX_COMPILE_CACHE=$CACHE
what=${1:-all}
LIMIT=${ZX_LIMIT_S:-570}  # the device call's own limit is 600 s: never run past it
pack() {
  python3 - "$RES" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1]); merged = {}
for f in sorted(out.glob("*.json")):
    if f.name != "all.json": merged[f.stem] = json.loads(f.read_text())
(out / "all.json").write_text(json.dumps(merged, indent=1, ensure_ascii=False))
print("stages:", ", ".join(f"{k}{'(ERR)' if 'error' in v else ''}" for k, v in merged.items()))
PY
  cp "$RES/all.json" "$OUT/" 2>/dev/null
  for f in "$RES"/*.log; do echo "##### $(basename "$f")"; cat "$f"; done >"$OUT/all.log"
}
stage() {  # stage TIMEOUT TAG ARGS... (env prefixes allowed via `env`)
  local t=$1 tag=$2; shift 2
  local left=$((LIMIT - SECONDS))
  if (( left < 30 )); then echo "=== $tag skipped: ${left}s left"; return; fi
  (( t > left )) && t=$left
  echo "=== $tag ($(date +%T), ${t}s max)"; timeout "$t" "$@" 2>&1 | grep -v -E "Warning|warnings.warn" >>"$RES/$tag.log"
  tail -n 4 "$RES/$tag.log"; pack >/dev/null
}
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader
if [[ $what == all ]]; then
  stage 330 main $B main --tag main
  stage 100 restart $B restart --tag restart
fi
if [[ $what == restart ]]; then  # restart time alone: a cold process fills the cache, a second reads it
  stage 240 restart-cold $B restart --tag restart-cold
  stage 120 restart $B restart --tag restart
  stage 120 restart-bg $B restart-bg --tag restart-bg
fi
if [[ $what == attn ]]; then
  stage 120 attn $B attn --tag attn
fi
if [[ $what == all || $what == profiles || $what == attn ]]; then
  stage 90 p24-expandable env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $B profile --profile 24gb --tag p24-expandable
  stage 90 p24-maxsplit env PYTORCH_CUDA_ALLOC_CONF=max_split_size_mb:512 $B profile --profile 24gb --tag p24-maxsplit
  stage 90 p16 $B profile --profile 16gb --runs 3 --tag p16
  stage 90 p12 $B profile --profile 12gb --runs 2 --no-big --tag p12
  [[ $what != attn ]] && stage 60 dynfalse env ZAOXIANG_COMPILE_BACKEND=eager $B dynfalse --tag dynfalse
fi
if [[ $what == final ]]; then  # after the attention default and the 16gb layer swap changed
  stage 90 p24-expandable env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True $B profile --profile 24gb --tag p24-expandable
fi
if [[ $what == final || $what == verify ]]; then  # verify: after 16gb got tiles at 1024² and batch chunks
  stage 90 p16 $B profile --profile 16gb --runs 3 --tag p16
fi
if [[ $what == all || $what == tests || $what == attn || $what == final || $what == verify ]]; then
  left=$((LIMIT - SECONDS)); (( left > 240 )) && left=240
  echo "=== gpu tests (${left}s max)"; timeout $left python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_gpu_fastpath.py 2>&1 | tail -n 25 | tee "$RES/pytest-gpu.log"
fi
pack
tar -czf "$OUT/results.tar.gz" -C "$RES" .
