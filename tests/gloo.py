"""Run a test body on two gloo ranks in spawned CPU processes, failing (never hanging) on a hang."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import socket
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed as dist

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


def _rank(worker: Callable[[int, int], Any], rank: int, port: int, results: Any) -> None:
    """Run ``worker`` and send back its result, or its traceback, as plain pickled bytes:
    a tensor put on the queue as such travels as a shared-memory handle that dies with this
    process, so the parent could find it gone."""
    try:
        report = (rank, True, worker(rank, port))
    except BaseException:
        report = (rank, False, traceback.format_exc())
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    results.put(pickle.dumps(report))


def run_ranks(worker: Callable[[int, int], Any], timeout_s: float = 120) -> list[Any]:
    """Spawn ``worker(rank, port)`` on each rank (it calls :func:`init_gloo` when it is ready);
    return what the ranks return, in rank order. A rank that raises fails the test with its
    traceback; a rank that reports nothing within ``timeout_s`` fails it as a hang."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    procs = [ctx.Process(target=_rank, args=(worker, r, port, results)) for r in range(WORLD)]
    for p in procs:
        p.start()
    returned: dict[int, Any] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(returned) < WORLD:
            try:
                rank, ok, value = pickle.loads(results.get(timeout=1))
            except queue.Empty:
                crashed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                if crashed:
                    raise AssertionError(f"a rank crashed (exit codes {crashed})") from None
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"a rank did not report within {timeout_s} s (hang)"
                    ) from None
                continue
            if not ok:
                raise AssertionError(f"rank {rank} raised:\n{value}")
            returned[rank] = value
    except BaseException:
        for p in procs:
            p.kill()
        raise
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
    return [returned[r] for r in range(WORLD)]
