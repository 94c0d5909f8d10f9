"""Two gloo ranks on the CPU: identical codebooks, no hang with zero tokens, errors on all ranks."""

from __future__ import annotations

from typing import Any

import torch

from pyrtok.quantize import MultiScaleResidualQuantizer, VectorQuantizer
from tests.gloo import init_gloo, run_ranks


def _batch(rank: int, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rank 0: a growing batch. Rank 1: no tokens, all padded, then a few real ones."""
    if rank == 0:
        return torch.randn(40 + 7 * step, 4), None
    if step % 3 == 0:
        return torch.randn(0, 4), None
    x = torch.randn(9, 4) + 2.0
    return x, torch.arange(9) < (0 if step % 3 == 1 else 4)


def _worker(rank: int, port: int) -> dict[str, Any]:
    torch.manual_seed(100 + rank)  # different random codebooks on purpose
    # built before init_process_group: syncing must be decided at forward time
    vq = VectorQuantizer(4, 16, kmeans_init=True, dead_code_threshold=2.0, decay=0.8)
    msq = MultiScaleResidualQuantizer(4, 8, scales=(1, 2, 4), kmeans_init=True)
    init_gloo(rank, port)
    counts = []
    for step in range(6):
        x, mask = _batch(rank, step)
        q, _, loss = vq(x.requires_grad_(), mask)
        (q.sum() + loss).backward()
        assert vq.stats is not None
        counts.append(vq.stats.counts.sum().item())
        msq(torch.randn(3 if rank == 0 else 1, 4, 4, 4))
    vq.apply_update()
    bad = torch.randn(10, 4)
    if rank == 1:
        bad[0, 0] = float("nan")
    try:
        vq(bad)
        raised = ""
    except ValueError as err:
        raised = str(err)
    return {
        "codebook": vq.codebook.detach(),
        "ema_count": vq.ema_count.detach(),
        "msq_codebook": msq.quantizers[0].codebook.detach(),
        "counts": counts,
        "raised": raised,
    }


def test_two_gloo_ranks_stay_identical_and_never_hang() -> None:
    a, b = run_ranks(_worker)
    assert torch.equal(a["codebook"], b["codebook"])
    assert torch.equal(a["ema_count"], b["ema_count"])
    assert torch.equal(a["msq_codebook"], b["msq_codebook"])
    # statistics are global: rank 0's tokens plus rank 1's unmasked ones
    expected = [40 + 7 * s + (0 if s % 3 != 2 else 4) for s in range(6)]
    assert a["counts"] == b["counts"] == expected
    # NaN on rank 1 only: both ranks raise, neither hangs
    assert "this rank's input" in b["raised"]
    assert "another rank's input" in a["raised"]
