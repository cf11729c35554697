#!/usr/bin/env bash
# The open-English training chain (issue 40) in one go, for a lent GPU (or, with small step
# counts, as a check on a CPU): the teacher's joint run from the shipped teacher, its duration
# head, DMD, the rollout and the student's duration head, each from the one before. Everything
# runs under runs/ in the repository; the finals, logs and TensorBoard records are copied to $OUT.
#
# What travels to a GPU machine (64 MiB at most): the working tree, `runs/latents-open` (the
# latent cache, float16; `carry` it) and, for the Python packages its image lacks, a folder of
# wheels (`PACKAGES`, installed into /tmp/site; the machine's torch is kept).
# Steps: JOINT, DURATIONS, DMD, ROLLOUT (defaults: the CPU recipe of configs/tiny-*-open.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-train}
JOINT=${JOINT:-1200} DURATIONS=${DURATIONS:-600} DMD=${DMD:-600} ROLLOUT=${ROLLOUT:-400}
PY=${PY:-python3}
[ -x .venv/bin/python ] && [ -z "${PACKAGES:-}" ] && PY=.venv/bin/python
if [ -n "${PACKAGES:-}" ]; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$PACKAGES"/*.whl
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda' if torch.cuda.is_available() else 'cpu')" | tee "$OUT/device.txt"
[ -f runs/latents-open/latents.json ] || { echo "no latent cache at runs/latents-open (configs/tiny-teacher-open.yaml says how it is made)"; exit 2; }

step() {  # name, then the streamchar arguments; a finished stage (its final folder) is not run again
  local name=$1; shift
  if [ -f "runs/$name/final/model.safetensors" ]; then echo "[$name] done before"; return; fi
  echo "[$name] $*"; local t0=$SECONDS
  "$PY" -m streamchar "$@" > "$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; exit 1; }
  echo "[$name] $((SECONDS - t0)) s" | tee -a "$OUT/times.txt"
}
step teacher-open train joint --config configs/tiny-teacher-open.yaml --run runs/teacher-open --init tiny-teacher --out runs/teacher-open/final --steps "$JOINT"
step teacher-open-durations train durations --config configs/tiny-durations-open.yaml --run runs/teacher-open-durations --init runs/teacher-open/final --out runs/teacher-open-durations/final --steps "$DURATIONS"
step student-open-dmd train dmd --config configs/tiny-student-open.yaml --run runs/student-open-dmd --init runs/teacher-open-durations/final --out runs/student-open-dmd/final --steps "$DMD"
step student-open-rollout train rollout --config configs/tiny-student-open.yaml --run runs/student-open-rollout --init runs/student-open-dmd/final --out runs/student-open-rollout/final --steps "$ROLLOUT"
step student-open-durations train durations --config configs/tiny-durations-open.yaml --run runs/student-open-durations --init runs/student-open-rollout/final --out runs/student-open-durations/final --steps "$DURATIONS"
for name in teacher-open-durations student-open-durations; do
  mkdir -p "$OUT/$name" && cp -r "runs/$name/final/." "$OUT/$name/"
done
find runs/teacher-open runs/teacher-open-durations runs/student-open-* -maxdepth 2 -name "events.out.tfevents*" -exec cp --parents {} "$OUT/" \; 2>/dev/null || true
echo "finals in $OUT"
