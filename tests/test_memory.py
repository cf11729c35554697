"""The server's heap setting: a large block freed goes back to the OS."""

import platform
import subprocess
import sys

import pytest

PROBE = """
import sys
import numpy as np
from streamchar.utils.memory import steady_heap
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
if sys.argv[1] == "steady":
    assert steady_heap()
a = np.ones((8 << 20) // 8); del a  # by default this raises the size kept in the heap to 8 MB
base = rss()
b = np.ones((6 << 20) // 8); del b
print(rss() - base)
"""


def _kept_mb(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_a_freed_6_mb_block_stays_resident_by_default_and_is_returned_with_steady_heap():
    assert _kept_mb("default") > 5.0
    assert _kept_mb("steady") < 1.0
