"""Paired statistics for two allocators read on the same scenes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from scipy.stats import binomtest  # type: ignore[import-untyped]
from torch import Tensor


@dataclass(frozen=True)
class Paired:
    """``a`` against ``b`` on the same scenes: accuracy difference (points), its paired
    bootstrap 95 % interval, the discordant counts and McNemar's exact two-sided p."""

    difference: float
    low: float
    high: float
    a_only: int
    b_only: int
    p_value: float


def paired(a: Tensor, b: Tensor, resamples: int = 2000, seed: int = 0) -> Paired:
    """Compare per-scene correctness ``a`` and ``b`` (bool ``(N,)``, same scenes).

    Examples:
        >>> a = torch.tensor([True] * 30 + [False] * 10)
        >>> b = torch.tensor([True] * 20 + [False] * 20)
        >>> r = paired(a, b)
        >>> round(r.difference, 1), r.a_only, r.b_only, r.p_value < 0.01
        (25.0, 10, 0, True)
    """
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"a, b: expected two (N,) bool tensors, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    a_only, b_only = int((a & ~b).sum()), int((b & ~a).sum())
    discordant = a_only + b_only
    p_value = binomtest(a_only, discordant, 0.5).pvalue if discordant else 1.0
    delta = a.float() - b.float()
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(delta), (resamples, len(delta)), generator=generator)
    means = delta[picks].mean(1).sort().values * 100
    low, high = float(means[int(0.025 * resamples)]), float(means[int(0.975 * resamples) - 1])
    return Paired(float(delta.mean()) * 100, low, high, a_only, b_only, float(p_value))
