#!/usr/bin/env bash
# The paper preset's GPU benchmark as run on a lent H100/H200 (docs/paper-scale.md): the reduced
# stream on CUDA, then the full-size preset in every memory mode. Results (JSON, log) go to $OUT.
# PACKAGES: a folder of wheels for what the machine's Python lacks (installed into /tmp/site).
set -uo pipefail
OUT=${OUT:-runs/gpu-paper}
mkdir -p "$OUT"
if [ -n "${PACKAGES:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PACKAGES"/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, diffusers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'diffusers', diffusers.__version__)" | tee -a "$OUT/gpu.txt"
if [ "${REDUCED:-1}" = 1 ]; then
  timeout 150 python3 -m streamchar bench paper --device cuda --reduced --chunks 3 --out /tmp/reduced.mp4 --result "$OUT/paper-reduced-cuda.json" \
    > "$OUT/reduced.log" 2>&1; echo "reduced: rc $?"; tail -3 "$OUT/reduced.log"
fi
timeout "${FULL_TIMEOUT:-420}" python3 -m streamchar bench paper --device cuda --chunks "${CHUNKS:-8}" --teacher-chunks "${TEACHER_CHUNKS:-3}" \
  --out /tmp/paper.mp4 --result "$OUT/paper-gpu.json" > "$OUT/full.log" 2>&1; echo "full: rc $?"
grep -v -i "warn" "$OUT/full.log" | tail -40
