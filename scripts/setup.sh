#!/usr/bin/env bash
# Create .venv (once) and install the studio into it. Usage: scripts/setup.sh [test]
# "test" adds the test extras and the system packages the end-to-end tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: a bare `torch` can pull a multi-GB build the machine may not need.
if ! python -c "import torch" 2>/dev/null; then
  pip install -q "torch==${ZAOXIANG_TORCH_VERSION:-2.13.0}"
fi
if [ "${1:-}" = "test" ]; then
  pip install -q -e ".[test]"
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
  command -v desktop-file-validate >/dev/null 2>&1 || need+=(desktop-file-utils)
  command -v trayer >/dev/null 2>&1 || need+=(trayer)  # a system tray host for the tray tests
  fc-list 2>/dev/null | grep -qi "noto sans cjk" || need+=(fonts-noto-cjk)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
      echo "setup: please install: ${need[*]} (tests that need them will be skipped)" >&2
    fi
  fi
else
  pip install -q -e .
fi
