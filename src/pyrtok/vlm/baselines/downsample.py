"""Downsampling: a content-blind regular sub-grid of the token grid (the resolution cap)."""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.vlm.baselines.budget import GridSelector, keep_top


def lattice_rank(rows: int, cols: int) -> Tensor:
    """``(rows * cols,)`` ordered-dither (Bayer) rank of each cell, raster order.

    Any prefix of the rank order is spread evenly over the grid; on a ``2**a x 2**b`` grid the
    first ``rows * cols / 4**k`` cells are exactly the stride-``2**k`` lattice.

    Examples:
        >>> lattice_rank(2, 2).tolist()
        [0.0, 0.5, 0.75, 0.25]
    """
    side = 1 << (max(rows, cols) - 1).bit_length()
    ranks = torch.zeros(1, 1)
    while ranks.shape[0] < side:
        ranks = torch.cat(
            [torch.cat([4 * ranks, 4 * ranks + 2], 1), torch.cat([4 * ranks + 3, 4 * ranks + 1], 1)]
        )
    return (ranks / ranks.numel())[:rows, :cols].flatten()


class DownsampleSelector(GridSelector):
    """Keep a regular sub-grid of ``budget`` tokens: nearest-neighbour downsampling of the
    token grid, the same cells for every image.

    At a budget of ``(h / s) * (w / s)`` on a power-of-two grid it keeps exactly the
    stride-``s`` lattice; other budgets take the first cells of an ordered-dither order, which
    stays spread over the image. At the full budget every token is kept.

    Args:
        budget: tokens kept per image.

    Shapes:
        grid ``(B, h, w, D)`` -> keep ``(B, h, w)`` bool, ``budget`` True per row.

    Examples:
        >>> keep = DownsampleSelector(4)(None, [torch.zeros(1, 4, 4, 8)], None, 8)
        >>> keep[0][0].int().tolist()
        [[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    """

    def select(self, images: Tensor | None, tokens: Tensor, rows: int, cols: int) -> Tensor:
        rank = lattice_rank(rows, cols).to(tokens.device)
        return keep_top(-rank.expand(tokens.shape[0], -1), self.budget)
