#!/usr/bin/env bash
# The prepared GPU check (issue 43; benchmarks/gpu_check.py says what it measures), for a lent
# GPU machine: about 8 minutes. Writes $OUT/gpu-check.json and its log; keep the JSON as
# benchmarks/results/gpu-check.json with the card it ran on.
# PACKAGES: a folder of wheels for what the machine's Python lacks (installed into /tmp/site).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-check}
mkdir -p "$OUT"
PY=${PY:-python3}
if [ -n "${PACKAGES:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PACKAGES"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
timeout "${CHECK_TIMEOUT:-540}" "$PY" benchmarks/gpu_check.py --out "$OUT/gpu-check.json" ${QUICK:+--quick} 2>&1 | tee "$OUT/gpu-check.log"
