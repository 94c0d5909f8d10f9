"""Run a test body on two gloo ranks in spawned CPU processes, failing (never hanging) on a hang."""

from __future__ import annotations

import queue
import socket
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

WORLD = 2


def init_gloo(rank: int, port: int) -> None:
    """Join the two-rank gloo group the parent set up on ``port``."""
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )


def run_ranks(worker: Callable[[int, int, Any], None], timeout_s: float = 120) -> list[Any]:
    """Spawn ``worker(rank, port, results)`` on each rank; return what the ranks put on
    ``results`` (one item each, in arrival order). A rank that reports nothing within
    ``timeout_s`` fails the test as a hang."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    procs = [ctx.Process(target=worker, args=(rank, port, results)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    items: list[Any] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(items) < WORLD:
            try:
                items.append(results.get(timeout=1))
            except queue.Empty:
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if crashed:
                    raise AssertionError(f"a rank crashed (exit codes {crashed})") from None
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"a rank did not report within {timeout_s} s (hang)"
                    ) from None
        return items
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
