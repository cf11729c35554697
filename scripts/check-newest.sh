#!/usr/bin/env bash
# The fast tier on the newest versions the dependency ranges allow, in a venv of its own
# (.venv-newest): says what breaks and which versions differ from the lock. Exits 1 on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p out
if ! VENV=.venv-newest NEWEST=1 bash scripts/install.sh > out/newest-install.log 2>&1; then
  echo "[newest] the install failed:"; tail -20 out/newest-install.log; exit 1
fi
.venv-newest/bin/pip freeze --all --exclude-editable > out/newest-freeze.txt
echo "[newest] versions that differ from the lock:"
.venv-newest/bin/python - <<'PY'
import re
def pins(path):
    out = {}
    for line in open(path):
        m = re.match(r"([A-Za-z0-9_.-]+)==([^\s\\;]+)", line)
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out
locked, newest = pins("requirements/cpu-py311.lock"), pins("out/newest-freeze.txt")
moved = [f"  {n}: {locked[n]} -> {newest[n]}" for n in sorted(locked) if n in newest and newest[n] != locked[n]]
print("\n".join(moved) or "  none")
PY
# -vv names each test as it starts, so a test that hangs is named by the log's last line
timeout -k 10 900 .venv-newest/bin/python -m pytest -m "not slow" -p no:cacheprovider -vv > out/newest-tests.log 2>&1
rc=$?
if [ $rc -eq 0 ]; then
  echo "[newest] the fast tier passes: $(tail -1 out/newest-tests.log)"
elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
  echo "[newest] the fast tier did not finish in 15 minutes; it was running:"; tail -1 out/newest-tests.log; exit 1
else
  echo "[newest] the fast tier fails on the newest versions:"; grep -E "^(FAILED|ERROR)" out/newest-tests.log; tail -1 out/newest-tests.log; exit 1
fi
