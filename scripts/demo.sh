#!/usr/bin/env bash
# The main job: install, then run `streamchar demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/streamchar demo "$@"
