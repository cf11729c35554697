"""Worker processes for data work that runs clip by clip."""

from __future__ import annotations

import multiprocessing as mp
import signal
from concurrent.futures import ProcessPoolExecutor


def _ignore_interrupts() -> None:
    """Workers leave Ctrl-C to the parent, which stops them and reports once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """Started fresh ("spawn"), never forked: a fork copies locks that torch's, FFmpeg's or
    tqdm's threads hold in the parent, and a child that needs one waits for ever."""
    return ProcessPoolExecutor(max(1, workers), mp_context=mp.get_context("spawn"), initializer=_ignore_interrupts)
