"""Frequency-aware token allocation: :func:`allocate` and its module twin."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import torch
from torch import Tensor, nn

from pyrtok.allocation.allocation import Allocation, LeafOrder, allocation_from_splits, check_order
from pyrtok.allocation.budgets import Budget, BudgetMode, check_budget_mode, splits_per_image
from pyrtok.allocation.cell_pyramid import check_cell_pyramid
from pyrtok.allocation.image_lists import allocate_list
from pyrtok.allocation.quadtree import QuadtreeGeometry, check_images, geometry_for
from pyrtok.allocation.scorers import Pyramid, Scorer, checks_pixels, resolve_scorer
from pyrtok.allocation.scorers import score_nodes as score_nodes
from pyrtok.allocation.strategies import uniform_splits
from pyrtok.allocation.strategy_registry import (
    STRATEGIES,
    SplitRequest,
    Strategy,
    check_splits,
    name_of,
    resolve_strategy,
)


@overload
def allocate(
    images: Tensor,
    budget: Budget,
    min_patch: int = 16,
    max_patch: int = 64,
    strategy: str | Strategy = "greedy",
    scorer: str | Scorer = "laplacian",
    *,
    order: LeafOrder = "raster",
    pyramid: Pyramid = None,
    budget_mode: BudgetMode = "exact",
) -> Allocation: ...


@overload
def allocate(
    images: list[Tensor] | tuple[Tensor, ...],
    budget: Budget,
    min_patch: int = 16,
    max_patch: int = 64,
    strategy: str | Strategy = "greedy",
    scorer: str | Scorer = "laplacian",
    *,
    order: LeafOrder = "raster",
    pyramid: Pyramid = None,
    budget_mode: BudgetMode = "exact",
) -> list[Allocation]: ...


def allocate(
    images: Tensor | list[Tensor] | tuple[Tensor, ...],
    budget: Budget,
    min_patch: int = 16,
    max_patch: int = 64,
    strategy: str | Strategy = "greedy",
    scorer: str | Scorer = "laplacian",
    *,
    order: LeafOrder = "raster",
    pyramid: Pyramid = None,
    budget_mode: BudgetMode = "exact",
) -> Allocation | list[Allocation]:
    """Give every image exactly its ``budget`` of quadtree leaves (tokens).

    The image is tiled into ``max_patch`` cells (and strips of smaller roots along the
    bottom/right edges when a side is not a multiple of ``max_patch``: no token on padding,
    see :class:`~pyrtok.allocation.QuadtreeGeometry`); a node splits into 4 children down to
    ``min_patch``; a leaf of side ``min_patch * 2**k`` is one token read from Gaussian pyramid
    level ``k``. With ``r`` roots (``geometry.min_budget``) the feasible budgets are
    ``r + 3 * s`` for ``s`` splits; any other budget raises a ValueError naming the nearest
    feasible ones, unless ``budget_mode`` says how to round.

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
        images: ``(B, C, H, W)`` floating images (finite), each side ``>= max_patch``; or a
            list of ``(C, H, W)`` images of different sizes (one channel count), allocated as
            one batch per distinct size (see :mod:`pyrtok.allocation.image_lists`).
        budget: tokens per image: one number for the batch or a sequence of one per image
            (rows then get their own ``lengths``), read as ``budget_mode`` says.
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
        budget_mode: ``"exact"`` (the budget must be feasible), ``"at_most"`` (the largest
            feasible count ``<= budget``) or ``"per_pixel"`` (``budget`` is a density in tokens
            per 512 x 512 px, rounded down to feasible); see :mod:`pyrtok.allocation.budgets`.

    Returns:
        An :class:`~pyrtok.allocation.Allocation` with each image's budget of leaves; for a
        list, a list of one batch-1 Allocation per image (equal to allocating it alone).

    Examples:
        >>> a = allocate(torch.rand(4, 3, 256, 256), budget=64, min_patch=16, max_patch=64)
        >>> a.lengths.tolist(), tuple(a.boxes.shape)
        ([64, 64, 64, 64], (4, 64, 3))
        >>> try:
        ...     allocate(torch.rand(1, 3, 256, 256), budget=65, max_patch=64)
        ... except ValueError as error:
        ...     print(str(error).split("; ")[-1])
        the nearest feasible budgets are 64 and 67
        >>> allocate(torch.rand(2, 3, 256, 256), budget=[16, 65], budget_mode="at_most").lengths
        tensor([16, 64])
        >>> each = allocate([torch.rand(3, 64, 128), torch.rand(3, 128, 64)], budget=[5, 8])
        >>> [(a.image_size, a.lengths.item()) for a in each]
        [((64, 128), 5), ((128, 64), 8)]
    """
    if isinstance(images, (list, tuple)):
        if pyramid is not None:
            raise ValueError(
                "pyramid: not supported for a list of images (built per size), got one"
            )
        options = (min_patch, max_patch, strategy, scorer)
        return allocate_list(
            images,
            budget,
            lambda batch, share: allocate(
                batch, share, *options, order=order, budget_mode=budget_mode
            ),
        )
    geometry = geometry_for(images, min_patch, max_patch, values=False)
    strategy_fn = resolve_strategy(strategy)
    order = check_order(order)
    score_fn = resolve_scorer(scorer)
    # The built-in scorers check the pixels themselves (the laplacian ones in the energy pass
    # they make over the images, not over a given pyramid): with a built-in strategy, which
    # scores before it reads any pixel if at all, the pixels are checked here only when nothing
    # scored them (one pass saved: 0.035-0.04 s of 0.31-0.34 s for 256 images of 512 x 512 on
    # a 2-core CPU).
    checked_by_scorer = (
        checks_pixels(score_fn) and strategy_fn in STRATEGIES.values() and pyramid is None
    )
    if not checked_by_scorer:
        check_images(images)
    batch, device = images.shape[0], images.device
    splits = splits_per_image(budget, geometry, batch, budget_mode)
    if pyramid is not None:
        check_cell_pyramid(pyramid, geometry, batch, images.shape[1])
    request = SplitRequest(images, geometry, splits[0], score_fn, pyramid)
    if len(set(splits)) == 1:
        maps = _split(request, strategy_fn, name_of(strategy))
    else:  # one strategy call per distinct split count, on scores computed once
        rows_of: dict[int, list[int]] = {}
        for row, count in enumerate(splits):
            rows_of.setdefault(count, []).append(row)
        maps = uniform_splits(batch, geometry, 0, device)
        for count, members in rows_of.items():
            rows = torch.tensor(members, device=device)
            part = _split(request.subset(rows, count), strategy_fn, name_of(strategy))
            for split, chosen in zip(maps, part, strict=True):
                split[rows] = chosen
    if checked_by_scorer and not request.scored:
        check_images(images)
    return allocation_from_splits(maps, geometry, batch, device, order)


def _split(request: SplitRequest, strategy_fn: Strategy, name: str) -> list[Tensor]:
    """The checked split maps of ``request`` (no scoring for a single possible tree)."""
    geometry, images = request.geometry, request.images
    if request.splits in (0, geometry.max_splits):  # coarsest or full detail: one tree only
        depth = 0 if request.splits == 0 else geometry.depth
        return uniform_splits(images.shape[0], geometry, depth, images.device)
    with torch.no_grad(), torch.autocast(images.device.type, enabled=False):
        maps = strategy_fn(request)
    return check_splits(maps, geometry, images.shape[0], request.splits, images.device, name)


class FrequencyAwareAllocator(nn.Module):
    """Module twin of :func:`allocate` with fixed budget, patch sizes, strategy and scorer.

    Shapes:
        ``(B, C, H, W)`` -> :class:`~pyrtok.allocation.Allocation` with each image's budget of
        leaves (``budget`` and ``budget_mode`` as :func:`allocate`); a list of ``(C, H, W)``
        images of different sizes -> a list of one Allocation per image.

    Examples:
        >>> allocator = FrequencyAwareAllocator(budget=64, min_patch=16, max_patch=64)
        >>> allocator(torch.rand(2, 3, 256, 256)).level_counts().sum(dim=1).tolist()
        [64, 64]
        >>> at_most = FrequencyAwareAllocator(budget=[16, 101], budget_mode="at_most")
        >>> at_most(torch.rand(2, 3, 256, 256)).lengths.tolist()
        [16, 100]
    """

    def __init__(
        self,
        budget: Budget,
        min_patch: int = 16,
        max_patch: int = 64,
        strategy: str | Strategy = "greedy",
        scorer: str | Scorer = "laplacian",
        order: LeafOrder = "raster",
        budget_mode: BudgetMode = "exact",
    ) -> None:
        super().__init__()
        QuadtreeGeometry.create(max_patch, max_patch, min_patch, max_patch)
        self.budget_mode = check_budget_mode(budget_mode)
        for value in budget if isinstance(budget, Sequence) else [budget]:
            _check_budget_value(value, self.budget_mode)
        self.budget = budget
        self.min_patch = min_patch
        self.max_patch = max_patch
        resolve_strategy(strategy)
        resolve_scorer(scorer)
        self.strategy = strategy
        self.scorer = scorer
        self.order = check_order(order)

    @overload
    def forward(self, images: Tensor, pyramid: Pyramid = None) -> Allocation: ...

    @overload
    def forward(
        self, images: list[Tensor] | tuple[Tensor, ...], pyramid: Pyramid = None
    ) -> list[Allocation]: ...

    def forward(
        self, images: Tensor | list[Tensor] | tuple[Tensor, ...], pyramid: Pyramid = None
    ) -> Allocation | list[Allocation]:
        return allocate(
            images,
            self.budget,
            self.min_patch,
            self.max_patch,
            self.strategy,
            self.scorer,
            order=self.order,
            pyramid=pyramid,
            budget_mode=self.budget_mode,
        )

    def extra_repr(self) -> str:
        return (
            f"budget={self.budget}, min_patch={self.min_patch}, max_patch={self.max_patch}, "
            f"strategy={name_of(self.strategy)!r}, scorer={name_of(self.scorer)!r}, "
            f"order={self.order!r}, budget_mode={self.budget_mode!r}"
        )


def _check_budget_value(value: object, budget_mode: BudgetMode) -> None:
    """An int >= 1 (a float > 0 is also a ``"per_pixel"`` density), else a ValueError."""
    number = (float, int) if budget_mode == "per_pixel" else (int,)
    if isinstance(value, bool) or not isinstance(value, number) or not value > 0:
        kind = (
            "a number > 0 of tokens per 512x512 px"
            if budget_mode == "per_pixel"
            else ("an int >= 1 number of tokens")
        )
        raise ValueError(f"budget: expected {kind}, got {value!r}")
