#!/usr/bin/env bash
# Installs streamchar and everything it needs on a fresh Debian/Ubuntu machine, into ./.venv.
# Python packages: the versions and hashes of requirements/cpu-py311.lock (CPU Linux, Python
# 3.11, torch 2.13.0's CPU build), into a venv that sees no system packages. On a GPU machine,
# name the torch to keep: TORCH_SPEC="torch==2.9.1+cu128" (any pip requirement, or a wheel's
# path); the rest then installs at the lock's versions, without its hashes.
# NEWEST=1 installs the newest versions pyproject.toml's ranges allow instead (CI's check).
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
VENV=${VENV:-.venv}
if [ -f "$VENV/pyvenv.cfg" ] && grep -q "include-system-site-packages = true" "$VENV/pyvenv.cfg"; then
  echo "[install] $VENV saw the system's packages: made again without them"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[install] venv: $VENV ($($PY --version))"
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"
EXTRAS="train,eval,serve,cluster,gpu,phonemes,test"
LOCK=requirements/cpu-py311.lock
if [ -n "${NEWEST:-}" ]; then
  echo "[install] pip: the newest versions the ranges allow"
  pip install -q "torch==2.13.0"
  pip install -q --upgrade --upgrade-strategy eager -e ".[$EXTRAS]"
elif [ -n "${TORCH_SPEC:-}" ]; then
  echo "[install] pip: $TORCH_SPEC, then the lock's versions"
  pip install -q "$TORCH_SPEC"
  grep -E '^[A-Za-z0-9_.-]+==' "$LOCK" | sed 's/ .*//' | grep -v '^torch==' > "$VENV/constraints.txt"
  pip install -q -c "$VENV/constraints.txt" -e ".[$EXTRAS]"
else
  echo "[install] pip: $LOCK (hashes checked)"
  # torch's CPU build is on PyTorch's own index, unless pip is configured with a place that has it
  FROM=()
  { pip config list 2>/dev/null | grep -q "find-links" || [ -n "${PIP_FIND_LINKS:-}" ]; } || FROM=(--extra-index-url https://download.pytorch.org/whl/cpu)
  pip install -q --require-hashes "${FROM[@]}" -r "$LOCK"
  pip install -q --no-deps -e .
fi
