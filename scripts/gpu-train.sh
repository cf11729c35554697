#!/usr/bin/env bash
# The open-English training chain (issue 40) in one go, for a lent GPU (or, with small step
# counts, as a check on a CPU): the teacher's joint run from the shipped teacher, its duration
# head, DMD, the rollout and the student's duration head, each from the one before. Everything
# runs under runs/ in the repository; the finals, logs and TensorBoard records are copied to $OUT.
#
# What travels to a GPU machine (64 MiB at most): the working tree, the latent cache (`carry` it)
# and, for the Python packages its image lacks, a folder of wheels (`PACKAGES`, installed into
# /tmp/site; the machine's torch is kept). The whole open-English cache does not fit: it is 757 MB
# though already float16 (1,995 clips; video latents 87% of it, audio 6.5%, the reference voices 4%),
# so a GPU run gets a subset of about 130 clips, or speech alone (about 70 MB for every clip).
# Steps: JOINT, DURATIONS, DMD, ROLLOUT (defaults: the CPU recipe of configs/tiny-*-open.yaml).
# FRONT=phonemes (default: the front end under test, docs/results.md) or characters.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu-train}
R=runs  # the stages' run folders (configs/experiments/tiny-student-open-phonemes.yaml names its teacher there)
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
  if [ -f "$R/$name/final/model.safetensors" ]; then echo "[$name] done before"; return; fi
  echo "[$name] $*"; local t0=$SECONDS
  "$PY" -m streamchar "$@" > "$OUT/$name.log" 2>&1 || { tail -20 "$OUT/$name.log"; exit 1; }
  echo "[$name] $((SECONDS - t0)) s" | tee -a "$OUT/times.txt"
}
if [ "${FRONT:-phonemes}" = phonemes ]; then
  T=teacher-open-phon E=configs/experiments; TC=$E/tiny-teacher-open-phonemes.yaml DC=$E/tiny-durations-open-phonemes.yaml SC=$E/tiny-student-open-phonemes.yaml
else
  T=teacher-open TC=configs/tiny-teacher-open.yaml DC=configs/tiny-durations-open.yaml SC=configs/tiny-student-open.yaml
fi
step $T train joint --config $TC --run $R/$T --init tiny-teacher --out $R/$T/final --steps "$JOINT"
step $T-durations train durations --config $DC --run $R/$T-durations --init $R/$T/final --out $R/$T-durations/final --steps "$DURATIONS"
step student-open-dmd train dmd --config $SC --run $R/student-open-dmd --init $R/$T-durations/final --out $R/student-open-dmd/final --steps "$DMD"
step student-open-rollout train rollout --config $SC --run $R/student-open-rollout --init $R/student-open-dmd/final --out $R/student-open-rollout/final --steps "$ROLLOUT"
step student-open-durations train durations --config $DC --run $R/student-open-durations --init $R/student-open-rollout/final --out $R/student-open-durations/final --steps "$DURATIONS"
for name in $T-durations student-open-durations; do
  mkdir -p "$OUT/$name" && cp -r "$R/$name/final/." "$OUT/$name/"
done
find $R/$T $R/$T-durations $R/student-open-* -maxdepth 2 -name "events.out.tfevents*" -exec cp --parents {} "$OUT/" \; 2>/dev/null || true
echo "finals in $OUT"
