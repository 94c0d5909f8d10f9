"""One DDP training step on two gloo ranks: different data per rank, equal gradients after."""

from __future__ import annotations

import queue
import socket
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from .helpers import hierarchical, images, prompts

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, port: int, results: Any) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=timedelta(seconds=60),
    )
    try:
        vlm = hierarchical(levels=2).train()  # same seed: same initial weights on both ranks
        model = DistributedDataParallel(vlm, find_unused_parameters=True)
        ids, mask = prompts(2 + rank)
        x = images(2 + rank, seed=rank)
        loss = model(x, ids, mask, labels=torch.where(mask.bool(), ids, -100)).loss
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in vlm.parameters() if p.grad is not None])
        results.put((rank, float(loss.detach()), grads.detach().numpy().copy()))
    finally:
        dist.destroy_process_group()


def test_ddp_step_gives_equal_gradients() -> None:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_worker, args=(r, port, results)) for r in range(WORLD)]
    for p in procs:
        p.start()
    got = {}
    try:
        for _ in range(WORLD):
            rank, loss, grads = results.get(timeout=120)
            got[rank] = (loss, torch.from_numpy(grads))
    except queue.Empty as error:  # pragma: no cover - a hang is the failure
        raise AssertionError("DDP workers did not report") from error
    finally:
        for p in procs:
            p.join(timeout=60)
    assert all(p.exitcode == 0 for p in procs)
    assert got[0][0] != got[1][0]  # different data per rank
    assert got[0][1].abs().sum() > 0
    torch.testing.assert_close(got[0][1], got[1][1], rtol=1e-5, atol=1e-6)
