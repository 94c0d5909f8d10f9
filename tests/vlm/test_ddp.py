"""One DDP training step on two gloo ranks: different data per rank, equal gradients after."""

from __future__ import annotations

import torch
from torch.nn.parallel import DistributedDataParallel

from tests.gloo import init_gloo, run_ranks

from .helpers import hierarchical, images, prompts


def _worker(rank: int, port: int) -> tuple[float, torch.Tensor]:
    torch.set_num_threads(1)
    init_gloo(rank, port)
    vlm = hierarchical(levels=2).train()  # same seed: same initial weights on both ranks
    model = DistributedDataParallel(vlm, find_unused_parameters=True)
    ids, mask = prompts(2 + rank)
    x = images(2 + rank, seed=rank)
    loss = model(x, ids, mask, labels=torch.where(mask.bool(), ids, -100)).loss
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in vlm.parameters() if p.grad is not None])
    return float(loss.detach()), grads.detach()


def test_ddp_step_gives_equal_gradients() -> None:
    got = run_ranks(_worker)
    assert got[0][0] != got[1][0]  # different data per rank
    assert got[0][1].abs().sum() > 0
    torch.testing.assert_close(got[0][1], got[1][1], rtol=1e-5, atol=1e-6)
