#!/usr/bin/env bash
# Start the studio, setting it up first when needed. Extra arguments go to `zaoxiang`.
# The setup runs only when pyproject.toml or the installed version changed since the last one (a
# stamp in .venv), so a start of an installed studio costs nothing beyond the studio itself.
set -euo pipefail
cd "$(dirname "$0")/.."
stamp=.venv/.zaoxiang-install-stamp
if [ ! -x .venv/bin/zaoxiang ] || [ ! -f "$stamp" ] || [ "$(bash scripts/install_stamp.sh)" != "$(cat "$stamp")" ]; then
  bash scripts/setup.sh
fi
exec .venv/bin/zaoxiang "$@"
