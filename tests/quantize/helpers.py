"""Shared references for the quantize tests: float64 brute force nearest codes."""

from __future__ import annotations

import torch
from torch import Tensor


def brute_force_nearest(x: Tensor, codebook: Tensor) -> Tensor:
    """``argmin_k ||x - e_k||^2`` in float64 by explicit differences (lowest index on ties)."""
    x64, e64 = x.double(), codebook.double()
    rows = max(1, 2**22 // max(1, e64.numel()))
    return torch.cat(
        [
            ((x64[s : s + rows, None] - e64[None]) ** 2).sum(-1).argmin(1)
            for s in range(0, len(x64), rows)
        ]
        or [torch.zeros(0, dtype=torch.int64)]
    )
