"""The one Gaussian pyramid per image that the scorers and the tokenizer share.

:func:`cell_pyramid` builds it once on the images reflect-padded to whole cells; pass it as
``pyramid=`` to :func:`~pyrtok.allocation.allocate` (the built-in scorers read it) and to
:func:`~pyrtok.allocation.tokenize` (which reads its tokens from it), so an image is filtered
once per forward.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from pyrtok.allocation.quadtree import QuadtreeGeometry, pad_to_cells
from pyrtok.pyramid import gaussian_pyramid


def cell_pyramid(
    images: Tensor, geometry: QuadtreeGeometry, levels: int | None = None
) -> list[Tensor]:
    """Gaussian pyramid of ``images`` reflect-padded to ``geometry.padded_size``.

    Args:
        images: ``(B, C, H, W)`` of the geometry's size.
        geometry: the quadtree geometry.
        levels: how many levels (default ``depth + 1``: one per leaf size).

    Returns:
        ``levels`` tensors, level ``k`` ``(B, C, H_pad / 2**k, W_pad / 2**k)``, in
        :func:`~pyrtok.allocation.quadtree.work_dtype` (float32 for half-precision input).

    Examples:
        >>> import torch
        >>> g = QuadtreeGeometry.create(40, 64, min_patch=8, max_patch=32)
        >>> [tuple(level.shape) for level in cell_pyramid(torch.rand(1, 3, 40, 64), g)]
        [(1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 16, 16)]
    """
    count = geometry.depth + 1 if levels is None else levels
    return gaussian_pyramid(pad_to_cells(images, geometry), levels=count)


def check_cell_pyramid(
    pyramid: object, geometry: QuadtreeGeometry, batch: int, channels: int
) -> list[Tensor]:
    """Validate a precomputed :func:`cell_pyramid` against the images it must belong to."""
    if not isinstance(pyramid, Sequence) or not all(isinstance(t, Tensor) for t in pyramid):
        raise TypeError(
            f"pyramid: expected a list of tensors from cell_pyramid(), got {type(pyramid).__name__}"
        )
    if len(pyramid) != geometry.depth + 1:
        raise ValueError(
            f"pyramid: expected {geometry.depth + 1} levels (one per leaf size) for this "
            f"geometry, got {len(pyramid)}; build it with cell_pyramid(images, geometry)"
        )
    height, width = geometry.padded_size
    for k, level in enumerate(pyramid):
        expected = (batch, channels, height >> k, width >> k)
        if tuple(level.shape) != expected:
            raise ValueError(
                f"pyramid: level {k} must have shape {expected} (the images padded to whole "
                f"cells, halved {k} times), got {tuple(level.shape)}; it was built for other "
                f"images: use cell_pyramid(images, geometry)"
            )
    return list(pyramid)
