#!/usr/bin/env bash
# Installs streamchar and everything it needs on a fresh Debian/Ubuntu machine, into ./.venv.
# torch: a GPU machine's existing torch is kept (the venv sees system packages); elsewhere the
# CPU build 2.13.0 is installed first, so that no dependency pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && SUDO="sudo"
# espeak-ng speaks SynthTalk; Debian's chromium (its H.264 decoder) plays the live page in the browser tests and `bench serve`
APT=()
{ ldconfig -p 2>/dev/null | grep -q libespeak-ng.so.1 && command -v espeak-ng >/dev/null; } || APT+=(espeak-ng)
command -v chromium >/dev/null || APT+=(chromium)
# Festival (two voices) and Flite speak SynthTalk's other voices (streamchar/data/engines.py)
command -v festival >/dev/null && [ -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ] && [ -d /usr/share/festival/voices/english/kal_diphone ] \
  || APT+=(festival festvox-us-slt-hts festvox-kallpc16k)
command -v flite >/dev/null || APT+=(flite)
# SynthTalk's open-English corpus (streamchar/data/corpus.py): quotations and WordNet's example sentences
[ -f /usr/share/games/fortunes/wisdom ] || APT+=(fortunes)
[ -f /usr/share/wordnet/data.noun ] || APT+=(wordnet-base)
if [ ${#APT[@]} -gt 0 ]; then
  echo "[install] apt: ${APT[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q "${APT[@]}" >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q "${APT[@]}" >/dev/null; }
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[install] venv: .venv ($($PY --version))"
  "$PY" -m venv --system-site-packages .venv
fi
. .venv/bin/activate
if ! python -c "import torch" >/dev/null 2>&1; then
  echo "[install] pip: torch==2.13.0 (CPU)"
  pip install -q "torch==2.13.0"
fi
echo "[install] pip: streamchar and its pinned dependencies"
pip install -q -e ".[train,eval,serve,cluster,gpu,phonemes,test]"
