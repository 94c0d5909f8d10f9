"""Frequency-aware token allocation: :func:`allocate` and its module twin."""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

from pyrtok.allocation.allocation import Allocation, LeafOrder, allocation_from_splits, check_order
from pyrtok.allocation.cell_pyramid import check_cell_pyramid
from pyrtok.allocation.optimal import optimal_splits
from pyrtok.allocation.quadtree import QuadtreeGeometry, geometry_for
from pyrtok.allocation.scorers import (
    Pyramid,
    Scorer,
    check_scores,
    resolve_scorer,
    threshold_weights,
)
from pyrtok.allocation.strategies import greedy_splits, proportional_splits, uniform_splits

STRATEGIES = ("greedy", "optimal", "proportional", "threshold", "uniform")


def _check_strategy(strategy: str) -> str:
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy: unknown name {strategy!r}; valid names are {list(STRATEGIES)}")
    return strategy


def _takes_pyramid(scorer: Scorer) -> bool:
    try:
        parameters = inspect.signature(scorer).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return "pyramid" in parameters or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
    )


def score_nodes(
    scorer: Scorer, images: Tensor, geometry: QuadtreeGeometry, pyramid: Pyramid = None
) -> list[Tensor]:
    """Run ``scorer`` (with ``pyramid`` where it takes one) and check its output."""
    kwargs = {"pyramid": pyramid} if pyramid is not None and _takes_pyramid(scorer) else {}
    raw = scorer(images, geometry.min_patch, geometry.max_patch, **kwargs)
    return check_scores(raw, geometry, images.shape[0])


def allocate(
    images: Tensor,
    budget: int,
    min_patch: int = 16,
    max_patch: int = 64,
    strategy: str = "greedy",
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
            ``"uniform"``.
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
    _check_strategy(strategy)
    order = check_order(order)
    score_fn = resolve_scorer(scorer)
    splits = geometry.splits_for(budget)
    batch, device = images.shape[0], images.device
    if pyramid is not None:
        check_cell_pyramid(pyramid, geometry, batch, images.shape[1])
    with torch.no_grad(), torch.autocast(device.type, enabled=False):
        if strategy == "uniform":
            depth = geometry.uniform_depth(budget)
            maps = uniform_splits(batch, geometry, depth, device)
        else:
            scores = score_nodes(score_fn, images, geometry, pyramid)
            if strategy == "greedy":
                maps = greedy_splits(scores, geometry, splits)
            elif strategy == "optimal":
                maps = optimal_splits(scores, geometry, splits)
            elif strategy == "proportional":
                maps = proportional_splits(scores, geometry, splits)
            else:
                weights = threshold_weights(images, min_patch, max_patch)
                maps = proportional_splits(scores, geometry, splits, weights)
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
        strategy: str = "greedy",
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
        self.strategy = _check_strategy(strategy)
        self.scorer = scorer
        self.order = check_order(order)
        resolve_scorer(scorer)

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
        scorer = (
            self.scorer
            if isinstance(self.scorer, str)
            else getattr(self.scorer, "__name__", "custom")
        )
        return (
            f"budget={self.budget}, min_patch={self.min_patch}, max_patch={self.max_patch}, "
            f"strategy={self.strategy!r}, scorer={scorer!r}, order={self.order!r}"
        )
