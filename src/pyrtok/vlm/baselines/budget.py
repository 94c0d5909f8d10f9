"""What every pre-LLM baseline shares: the budget check, top-k keep masks, the one-grid rule.

A baseline selector sends exactly ``budget`` tokens per image from its ViT token grid (a
LLaVA-style full-image encoding: :class:`~pyrtok.vlm.HierarchicalVLM` with ``levels=1``). It
follows the :class:`~pyrtok.vlm.Selector` protocol: ``selector(images, [grid], query, p)`` ->
``[keep]`` with ``keep`` a ``(B, h, w)`` bool map of ``budget`` True entries per row, or a
:class:`~pyrtok.vlm.selection.Selection` ``([keep], extra)`` whose kept and extra tokens add
up to ``budget`` per row (VisionZip's contextual tokens, the pooled grid).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyrtok.vlm.selection import Selection, selector_name


def check_budget(budget: object) -> int:
    """Validate a per-image token budget (an int >= 1).

    Examples:
        >>> check_budget(16)
        16
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget: expected an int >= 1 (visual tokens per image), got {budget!r}")
    return budget


def keep_top(scores: Tensor, budget: int) -> Tensor:
    """``(B, N)`` bool mask of the ``budget`` highest scores per row (ties: lower index first).

    Examples:
        >>> keep_top(torch.tensor([[0.1, 0.9, 0.5, 0.9]]), 2).tolist()
        [[False, True, False, True]]
    """
    order = torch.sort(scores.float(), dim=1, descending=True, stable=True).indices
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return keep.scatter_(1, order[:, :budget], True)


class GridSelector(nn.Module):
    """Base of the baselines: checks the grid and the budget, calls :meth:`select`.

    Subclasses implement ``select(images, tokens (B, N, D), rows, cols)`` (``N = rows * cols``,
    raster order) returning a ``(B, N)`` bool keep mask with exactly ``budget`` True per row,
    or ``(keep (B, N), extra (B, M, D))`` with ``budget`` kept plus extra tokens per row.

    Args:
        budget: tokens kept per image.
    """

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget = check_budget(budget)

    def select(
        self, images: Tensor | None, tokens: Tensor, rows: int, cols: int
    ) -> Tensor | tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(
        self, images: Tensor | None, grids: list[Tensor], query: Tensor | None, patch_size: int
    ) -> list[Tensor] | Selection:
        if len(grids) != 1:
            raise ValueError(
                f"grids: {selector_name(self)} selects among the tokens of one full-image "
                f"encoding, got {len(grids)} scales; use it with levels=1 "
                f"(HierarchicalVLM.from_llava(model, levels=1, selector=...))"
            )
        grid = grids[0]
        batch, rows, cols, _ = grid.shape
        if self.budget > rows * cols:
            raise ValueError(
                f"budget: {selector_name(self)} was asked for {self.budget} tokens per image but "
                f"the encoder gives {rows * cols} ({rows}x{cols}); give a budget <= {rows * cols}"
            )
        selected = self.select(images, grid.reshape(batch, rows * cols, -1), rows, cols)
        if isinstance(selected, tuple):
            keep, extra = selected
            return Selection([keep.reshape(batch, rows, cols)], extra)
        return [selected.reshape(batch, rows, cols)]
