"""Downsampling: average-pool the token grid to the budget (the resolution cap)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.vlm.baselines.budget import GridSelector


def pool_budgets(rows: int, cols: int) -> dict[int, int]:
    """Budget -> window side ``s`` of every ``s x s`` pooling of a ``rows x cols`` grid with
    ``s`` dividing both sides (largest budget first).

    Examples:
        >>> pool_budgets(4, 6)
        {24: 1, 6: 2}
    """
    sides = [s for s in range(1, min(rows, cols) + 1) if rows % s == 0 and cols % s == 0]
    return {(rows // s) * (cols // s): s for s in sides}


def pool_tokens(grid: Tensor, budget: int) -> Tensor:
    """Average-pool a token grid to ``budget`` tokens: the means of ``s x s`` windows with
    ``(h / s) * (w / s) = budget`` (LLaVA-style pooling, e.g. ``s = 2``), raster order.

    Only those budgets exist (``s`` must divide ``h`` and ``w``); any other budget is refused
    with the feasible ones named.

    Args:
        grid: ``(B, h, w, D)`` tokens.
        budget: tokens per image, one of :func:`pool_budgets` ``(h, w)``.

    Returns:
        ``(B, budget, D)``, ``F.avg_pool2d`` of the grid with kernel and stride ``s``.

    Examples:
        >>> grid = torch.arange(16.0).reshape(1, 4, 4, 1)
        >>> pool_tokens(grid, 4)[0, :, 0].tolist()
        [2.5, 4.5, 10.5, 12.5]
    """
    rows, cols = grid.shape[1:3]
    budgets = pool_budgets(rows, cols)
    if budget not in budgets:
        raise ValueError(
            f"budget: pooling a {rows}x{cols} token grid by s x s windows (s dividing both "
            f"sides) gives one of {list(budgets)} tokens, got {budget}; pick one of those"
        )
    pooled = F.avg_pool2d(grid.permute(0, 3, 1, 2), budgets[budget])
    return pooled.flatten(2).transpose(1, 2)


class DownsampleSelector(GridSelector):
    """Average-pool each image's token grid to ``budget`` tokens (:func:`pool_tokens`): the
    resolution cap, content-blind.

    It keeps no grid token and sends the pooled tokens as extra tokens (a
    :class:`~pyrtok.vlm.selection.Selection`), so the LM reads ``budget`` means of
    ``s x s`` windows. The feasible budgets are ``(h / s) * (w / s)`` with ``s`` dividing
    both sides (16x16 grid: 256, 64, 16, 4, 1); others raise a ValueError naming them. At the
    full budget (``s = 1``) the pooled tokens are the grid itself.

    Args:
        budget: tokens per image.

    Shapes:
        grid ``(B, h, w, D)`` -> keep ``(B, h, w)`` all False, extra ``(B, budget, D)``.

    Examples:
        >>> grid = torch.arange(16.0).reshape(1, 4, 4, 1)
        >>> selection = DownsampleSelector(4)(None, [grid], None, 8)
        >>> selection.keep[0].any().item(), selection.extra[0, :, 0].tolist()
        (False, [2.5, 4.5, 10.5, 12.5])
    """

    def select(
        self, images: Tensor | None, tokens: Tensor, rows: int, cols: int
    ) -> tuple[Tensor, Tensor]:
        grid = tokens.reshape(tokens.shape[0], rows, cols, -1)
        none = torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        return none, pool_tokens(grid, self.budget)
