#!/usr/bin/env bash
# Install, then run the fast tier of the tests (`bash scripts/test.sh -m slow` runs the slow tier:
# several processes, training loops, set generation and the browser).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
if [[ " $* " == *" -m "* ]]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -m "not slow" "$@"
