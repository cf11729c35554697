"""Two CPU processes on gloo, as the FSDP tests run them (the training, FSDP and distillation
tests): each rank joins, works, meets the other and leaves with no teardown."""

import datetime
import faulthandler
import os
import shutil
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def spawn_two(monkeypatch, worker, *args, out: str) -> None:
    """`worker(rank, world, port, *args, out)` on two processes, writing to `out`. A rank killed
    by a signal is gloo's C++ side aborting (seen now and then in CI at set-up or teardown, never
    in our Python, which fails with an exception instead): the pair runs once more from an empty
    `out`, and says so."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # CPU processes on gloo, also on a machine with a GPU
    for attempt in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            mp.spawn(worker, args=(2, port, *args, out), nprocs=2, join=True)
            return
        except mp.ProcessExitedException as e:
            if e.signal_name is None or attempt:
                raise
            print(f"two ranks: {e}; once more", file=sys.stderr)
            if Path(out).is_dir():
                shutil.rmtree(out)
            Path(out).unlink(missing_ok=True)


def join(rank: int, world: int, port: int) -> None:
    faulthandler.enable()  # a rank that crashes prints where
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))  # a mismatch fails, not hangs
    torch.set_num_threads(1)


def leave() -> None:
    """Both ranks done; no process-group or interpreter teardown: gloo workers have crashed there
    in CI ("terminate called without an active exception", once a SIGSEGV). The tests check what
    the ranks wrote."""
    dist.barrier()
    os._exit(0)
