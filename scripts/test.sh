#!/usr/bin/env bash
# Set up (first time) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
. .venv/bin/activate
ruff check studio tests scripts tools
set +e
python -m pytest -q -ra "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then echo "test.sh: no tests were collected" >&2; exit 1; fi
exit "$rc"
