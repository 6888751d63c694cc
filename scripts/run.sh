#!/usr/bin/env bash
# Set up (first time) and start the studio. Extra arguments go to `zaoxiang`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/zaoxiang "$@"
