# Sourced by the GPU drivers (repo root, .whl carried): $OUT, the carried wheels on the path, one home and
# compile cache per machine, NVLink multicast off (KINDS.md), and $LIMIT, the call's seconds (ZX_LIMIT_S).
set -u
OUT=${OUT:-/tmp/zx-out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
  .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 ZAOXIANG_HOME=/tmp/zx-home ZX_COMPILE_CACHE=/tmp/zx-compile-cache
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
LIMIT=${ZX_LIMIT_S:-560}
