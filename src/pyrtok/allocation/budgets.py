"""Budget modes: how a requested budget becomes each image's number of quadtree splits.

An image's feasible budgets are ``r + 3 * s`` for ``0 <= s <= max_splits``, with ``r =
geometry.min_budget`` its roots (its cells when the sides are multiples of ``max_patch``; see
:class:`~pyrtok.allocation.QuadtreeGeometry`). A budget is one number for the batch or one per
image, read by ``budget_mode``:

- ``"exact"``: the budget must be feasible; anything else is a ValueError naming the nearest
  feasible budgets.
- ``"at_most"``: the largest feasible count ``<= budget``; a budget below ``min_budget`` (one
  token per root) is a ValueError naming that minimum. Above full detail gives full detail.
- ``"per_pixel"``: a token density, in tokens per 512 x 512 pixels (what a 512 x 512 image would
  get): an ``H x W`` image asks for ``floor(budget * H * W / 512**2)`` tokens, which is brought
  into ``[min_budget, full detail]`` and rounded down to a feasible count. Counts are
  proportional to image area, whatever the aspect ratio, to within the rounding (3 tokens).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pyrtok.allocation.quadtree import QuadtreeGeometry

BudgetMode = Literal["exact", "at_most", "per_pixel"]
"""How a budget is read; see :mod:`pyrtok.allocation.budgets`."""

BUDGET_MODES: tuple[str, ...] = ("exact", "at_most", "per_pixel")
"""The valid ``budget_mode`` names."""

PER_PIXEL_AREA = 512 * 512
"""Pixels of the area a ``"per_pixel"`` budget is counted per (512 x 512)."""

Budget = float | Sequence[float]
"""Tokens per image: one number for the batch or one per image (ints, except a
``"per_pixel"`` density, which may be a float)."""


def check_budget_mode(budget_mode: object) -> BudgetMode:
    """``budget_mode`` if it is one of :data:`BUDGET_MODES`, else a ValueError listing them."""
    if budget_mode not in BUDGET_MODES:
        raise ValueError(f"budget_mode: expected one of {list(BUDGET_MODES)}, got {budget_mode!r}")
    return budget_mode  # type: ignore[return-value]


def _exact(budget: object, geometry: QuadtreeGeometry) -> int:
    return geometry.splits_for(budget)  # type: ignore[arg-type]


def _at_most(budget: object, geometry: QuadtreeGeometry) -> int:
    if isinstance(budget, bool) or not isinstance(budget, int):
        raise TypeError(f"budget: expected an int number of tokens, got {budget!r}")
    if budget < geometry.min_budget:
        raise ValueError(
            f"budget: {budget} tokens is below one token per root for a {geometry.height}x"
            f"{geometry.width} image with max_patch {geometry.max_patch}; the smallest feasible "
            f"budget is {geometry.min_budget}"
        )
    return min((budget - geometry.min_budget) // 3, geometry.max_splits)


def _per_pixel(density: object, geometry: QuadtreeGeometry) -> int:
    if isinstance(density, bool) or not isinstance(density, (int, float)):
        raise TypeError(f"budget: expected a number of tokens per 512x512 px, got {density!r}")
    if not (math.isfinite(density) and density > 0):
        raise ValueError(f"budget: expected a density > 0 tokens per 512x512 px, got {density}")
    area = geometry.height * geometry.width
    if isinstance(density, int):
        tokens = density * area // PER_PIXEL_AREA
    else:
        tokens = math.floor(density * area / PER_PIXEL_AREA)
    return min(max(tokens - geometry.min_budget, 0) // 3, geometry.max_splits)


def splits_per_image(
    budget: object, geometry: QuadtreeGeometry, batch: int, budget_mode: BudgetMode = "exact"
) -> list[int]:
    """Each image's number of splits (its tokens are ``geometry.min_budget + 3 * splits``).

    Args:
        budget: one number or a sequence of ``batch`` numbers, read as ``budget_mode`` says.
        geometry: the images' quadtree geometry.
        batch: images in the batch.
        budget_mode: ``"exact"``, ``"at_most"`` or ``"per_pixel"``.

    Examples:
        >>> g = QuadtreeGeometry.create(480, 640, min_patch=16, max_patch=64)  # 90 roots
        >>> [g.min_budget + 3 * s for s in splits_per_image([256, 300], g, 2, "at_most")]
        [255, 300]
        >>> [g.min_budget + 3 * s for s in splits_per_image(256, g, 1, "per_pixel")]
        [300]
    """
    mode = check_budget_mode(budget_mode)
    convert = {"exact": _exact, "at_most": _at_most, "per_pixel": _per_pixel}[mode]
    if isinstance(budget, (str, bytes)) or not isinstance(budget, Sequence):
        return [convert(budget, geometry)] * batch  # one budget: converted once
    if len(budget) != batch:
        raise ValueError(
            f"budget: expected one int or one per image ({batch}), got {len(budget)} values"
        )
    return [convert(value, geometry) for value in budget]
