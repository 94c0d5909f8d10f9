"""Frequency-aware token allocation: :func:`allocate` and its module twin."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from pyrtok.allocation.allocation import Allocation, LeafOrder, allocation_from_splits, check_order
from pyrtok.allocation.cell_pyramid import check_cell_pyramid
from pyrtok.allocation.quadtree import QuadtreeGeometry, geometry_for
from pyrtok.allocation.scorers import Pyramid, Scorer, resolve_scorer
from pyrtok.allocation.scorers import score_nodes as score_nodes
from pyrtok.allocation.strategies import uniform_splits
from pyrtok.allocation.strategy_registry import (
    SplitRequest,
    Strategy,
    check_splits,
    name_of,
    resolve_strategy,
)


def allocate(
    images: Tensor,
    budget: int,
    min_patch: int = 16,
    max_patch: int = 64,
    strategy: str | Strategy = "greedy",
    scorer: str | Scorer = "laplacian",
    *,
    order: LeafOrder = "raster",
    pyramid: Pyramid = None,
) -> Allocation:
    """Give every image exactly ``budget`` quadtree leaves (tokens).

    The image is tiled into ``max_patch`` cells (bottom/right edges reflect-padded to whole
    cells); a cell splits into 4 children down to ``min_patch``; a leaf of side
    ``min_patch * 2**k`` is one token read from Gaussian pyramid level ``k``. With ``c`` cells
    the feasible budgets are ``c + 3 * s`` for ``s`` splits; any other budget raises a
    ValueError naming the nearest feasible ones.

    Strategies:
        - ``"greedy"``: repeatedly split the leaf with the highest score (for ``laplacian``:
          the one whose split recovers the most band energy).
        - ``"optimal"``: the valid tree whose split nodes have the highest total score (exact,
          by dynamic programming); equals greedy when scores never grow from parent to child.
        - ``"proportional"``: the seed's per-patch counts: cells get splits in proportion to
          their total score (largest remainder, so the total is exact); inside a cell, whole
          levels (1, 4, 16, ... leaves) first, then the best nodes of the next level.
        - ``"threshold"``: as proportional, with the seed's literal 5%/1% rule as cell weights
          (:func:`~pyrtok.allocation.scorers.threshold_weights`).
        - ``"uniform"``: a regular grid of equal tokens; ``budget`` must be ``cells * 4**d``.

    Args:
        images: ``(B, C, H, W)`` floating images (finite), each side ``>= max_patch``.
        budget: tokens per image.
        min_patch: smallest leaf side in pixels (a level-0 token).
        max_patch: cell side in pixels, ``min_patch * 2**depth``.
        strategy: one of ``"greedy"``, ``"optimal"``, ``"proportional"``, ``"threshold"``,
            ``"uniform"`` (the keys of :data:`~pyrtok.allocation.STRATEGIES`), or a callable
            ``(SplitRequest) -> split maps`` (see
            :mod:`~pyrtok.allocation.strategy_registry`); what it returns is checked with
            :func:`~pyrtok.allocation.check_splits`.
        scorer: ``"laplacian"``, ``"entropy"``, ``"blur"`` (see
            :mod:`pyrtok.allocation.scorers`) or a callable with the same contract.
        order: leaf order, ``"raster"`` (row-major by box, a ViT's grid order) or
            ``"morton"`` (cell by cell, Z order inside); see :class:`Allocation`.
        pyramid: the images' :func:`~pyrtok.allocation.cell_pyramid`, if already built (it is
            then scored instead of a new one; give the same to
            :func:`~pyrtok.allocation.tokenize`).

    Returns:
        An :class:`~pyrtok.allocation.Allocation` with ``budget`` leaves per image.

    Examples:
        >>> a = allocate(torch.rand(4, 3, 256, 256), budget=64, min_patch=16, max_patch=64)
        >>> a.lengths.tolist(), tuple(a.boxes.shape)
        ([64, 64, 64, 64], (4, 64, 3))
        >>> try:
        ...     allocate(torch.rand(1, 3, 256, 256), budget=65, max_patch=64)
        ... except ValueError as error:
        ...     print(str(error).split("; ")[-1])
        the nearest feasible budgets are 64 and 67
    """
    geometry = geometry_for(images, min_patch, max_patch)
    strategy_fn = resolve_strategy(strategy)
    order = check_order(order)
    score_fn = resolve_scorer(scorer)
    splits = geometry.splits_for(budget)
    batch, device = images.shape[0], images.device
    if pyramid is not None:
        check_cell_pyramid(pyramid, geometry, batch, images.shape[1])
    if splits in (0, geometry.max_splits):  # one tree only (coarsest or full detail): no scoring
        depth = 0 if splits == 0 else geometry.depth
        maps = uniform_splits(batch, geometry, depth, device)
    else:
        request = SplitRequest(images, geometry, splits, score_fn, pyramid)
        with torch.no_grad(), torch.autocast(device.type, enabled=False):
            maps = strategy_fn(request)
        maps = check_splits(maps, geometry, batch, splits, device, name_of(strategy))
    return allocation_from_splits(maps, geometry, batch, device, order)


class FrequencyAwareAllocator(nn.Module):
    """Module twin of :func:`allocate` with fixed budget, patch sizes, strategy and scorer.

    Shapes:
        ``(B, C, H, W)`` -> :class:`~pyrtok.allocation.Allocation` with ``budget`` leaves each.

    Examples:
        >>> allocator = FrequencyAwareAllocator(budget=64, min_patch=16, max_patch=64)
        >>> allocator(torch.rand(2, 3, 256, 256)).level_counts().sum(dim=1).tolist()
        [64, 64]
    """

    def __init__(
        self,
        budget: int,
        min_patch: int = 16,
        max_patch: int = 64,
        strategy: str | Strategy = "greedy",
        scorer: str | Scorer = "laplacian",
        order: LeafOrder = "raster",
    ) -> None:
        super().__init__()
        QuadtreeGeometry.create(max_patch, max_patch, min_patch, max_patch)
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise ValueError(f"budget: expected an int >= 1 number of tokens, got {budget!r}")
        self.budget = budget
        self.min_patch = min_patch
        self.max_patch = max_patch
        resolve_strategy(strategy)
        resolve_scorer(scorer)
        self.strategy = strategy
        self.scorer = scorer
        self.order = check_order(order)

    def forward(self, images: Tensor, pyramid: Pyramid = None) -> Allocation:
        return allocate(
            images,
            self.budget,
            self.min_patch,
            self.max_patch,
            self.strategy,
            self.scorer,
            order=self.order,
            pyramid=pyramid,
        )

    def extra_repr(self) -> str:
        return (
            f"budget={self.budget}, min_patch={self.min_patch}, max_patch={self.max_patch}, "
            f"strategy={name_of(self.strategy)!r}, scorer={name_of(self.scorer)!r}, "
            f"order={self.order!r}"
        )
