"""Codebook usage statistics: perplexity, fraction of codes used, dead codes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class CodebookStats:
    """Usage of a codebook over one training step (all ranks when synced) or one eval batch.

    Attributes:
        counts: ``(K,)`` float32 hits per code in the step (masked tokens excluded).
        perplexity: scalar ``exp(entropy(counts / counts.sum()))``; at most ``K`` (uniform use),
            1 when one code takes everything, 0 for an empty step.
        used_fraction: scalar share of codes hit at least once in the step.
        dead_count: scalar int64, codes whose EMA hit count (hits per step, smoothed) is below
            the dead-code threshold (``dead_code_threshold``, or ``1e-3`` when restarts are
            off: not used for roughly ``log(1e-3) / log(decay)`` steps).
    """

    counts: Tensor
    perplexity: Tensor
    used_fraction: Tensor
    dead_count: Tensor


def perplexity(counts: Tensor) -> Tensor:
    """``exp`` of the entropy of the empirical code distribution (0 for no hits).

    Args:
        counts: ``(..., K)`` non-negative hit counts.

    Returns:
        ``(...)`` float32 perplexities.

    Examples:
        >>> perplexity(torch.tensor([5.0, 5.0, 0.0, 0.0]))
        tensor(2.)
    """
    counts = counts.float()
    total = counts.sum(dim=-1, keepdim=True)
    p = counts / total.clamp_min(1e-30)
    entropy = -(p * p.clamp_min(1e-30).log()).sum(dim=-1)
    return torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.zeros_like(entropy))


def usage_stats(counts: Tensor, ema_counts: Tensor, dead_threshold: float) -> CodebookStats:
    """Build :class:`CodebookStats` from one step's hits and the EMA hit counts.

    Args:
        counts: ``(K,)`` hits in the step.
        ema_counts: ``(K,)`` exponential moving average of the hits per step.
        dead_threshold: EMA count below which a code is dead.

    Examples:
        >>> s = usage_stats(torch.tensor([3.0, 1.0, 0.0]), torch.tensor([2.0, 1.0, 0.0]), 0.5)
        >>> round(s.perplexity.item(), 3), round(s.used_fraction.item(), 3), s.dead_count.item()
        (1.755, 0.667, 1)
    """
    counts = counts.detach().float()
    return CodebookStats(
        counts=counts,
        perplexity=perplexity(counts),
        used_fraction=(counts > 0).float().mean(),
        dead_count=(ema_counts.detach() < dead_threshold).sum(),
    )
