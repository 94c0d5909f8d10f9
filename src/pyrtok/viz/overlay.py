"""Token allocations for viewing: leaf boxes coloured by level, and reconstruction side by side."""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.allocation import Allocation, detokenize, tokenize
from pyrtok.viz.layout import as_rgb, shrink, side_by_side
from pyrtok.viz.text import CAPTION_SIZE, colour_key, titled

LEVEL_COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.89, 0.10, 0.11)),
    ("orange", (1.00, 0.50, 0.00)),
    ("green", (0.30, 0.69, 0.29)),
    ("blue", (0.22, 0.49, 0.72)),
    ("purple", (0.60, 0.31, 0.64)),
    ("brown", (0.65, 0.34, 0.16)),
)
"""Colour of pyramid level ``k`` (``k = 0``: ``min_patch`` leaves) by name and RGB; cycles."""


def _one(allocation: Allocation, index: int, image: Tensor) -> Allocation:
    if not isinstance(allocation, Allocation):
        raise TypeError(f"allocation: expected an Allocation, got {type(allocation).__name__}")
    if tuple(image.shape[-2:]) != allocation.image_size:
        height, width = allocation.image_size
        raise ValueError(
            f"image: the allocation was made for {height}x{width} images, got "
            f"{image.shape[-2]}x{image.shape[-1]}"
        )
    return allocation[index].to(image.device)


def _paint(allocation: Allocation, thickness: int) -> tuple[Tensor, Tensor]:
    """``(H_pad, W_pad)`` level of the leaf under each pixel, and whether it is on a box edge."""
    geometry = allocation.geometry
    height, width = geometry.padded_size
    device = allocation.device
    level_map = torch.zeros((height, width), dtype=torch.long, device=device)
    edge_map = torch.zeros((height, width), dtype=torch.bool, device=device)
    for k in range(geometry.depth + 1):
        leaves = allocation.boxes[0, (allocation.leaf_level[0] == k) & allocation.mask[0]]
        if leaves.numel() == 0:
            continue
        size = geometry.min_patch << k
        inner = torch.arange(size, device=device)
        edge_1d = (inner < thickness) | (inner >= size - thickness)
        edge = edge_1d[:, None] | edge_1d[None, :]
        row, col = leaves[:, 0] // size, leaves[:, 1] // size
        levels = level_map.view(height // size, size, width // size, size).permute(0, 2, 1, 3)
        edges = edge_map.view(height // size, size, width // size, size).permute(0, 2, 1, 3)
        levels[row, col] = k
        edges[row, col] = edge
    return level_map[: geometry.height, : geometry.width], edge_map[
        : geometry.height, : geometry.width
    ]


def allocation_overlay(
    image: Tensor, allocation: Allocation, index: int = 0, tint: float = 0.3, thickness: int = 1
) -> Tensor:
    """Draw an allocation's leaf boxes over its image, coloured by pyramid level.

    Each leaf is tinted with its level's colour (:data:`LEVEL_COLOURS`: red for ``min_patch``
    leaves, then orange, green, blue, ...) and outlined in it.

    Args:
        image: ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` with values in ``[0, 1]``.
        allocation: an allocation made for images of this size.
        index: which image of the allocation ``image`` is.
        tint: in ``[0, 1]``, how strongly the level colour covers the image.
        thickness: outline width in pixels, ``>= 0``.

    Returns:
        ``(3, H, W)`` float32 in ``[0, 1]``, ready for :func:`~pyrtok.viz.save_png`.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> x = torch.rand(1, 3, 96, 128)
        >>> allocation_overlay(x[0], allocate(x, 24, 16, 32)).shape
        torch.Size([3, 96, 128])
    """
    rgb = as_rgb(image, "image")
    one = _one(allocation, index, rgb)
    if not 0 <= tint <= 1:
        raise ValueError(f"tint: must be in [0, 1], got {tint}")
    if isinstance(thickness, bool) or not isinstance(thickness, int) or thickness < 0:
        raise ValueError(f"thickness: expected an int >= 0, got {thickness!r}")
    palette = torch.tensor([rgb for _, rgb in LEVEL_COLOURS], device=rgb.device)
    level_map, edge_map = _paint(one, thickness)
    colour = palette[level_map % len(LEVEL_COLOURS)].permute(2, 0, 1)
    out = (1 - tint) * rgb.clamp(0, 1) + tint * colour
    return torch.where(edge_map, colour, out)


def allocation_figure(
    image: Tensor, allocation: Allocation, index: int = 0, labels: bool = False, scale: float = 1.0
) -> Tensor:
    """Original, allocation overlay and token reconstruction, side by side.

    The reconstruction is ``detokenize(tokenize(image))`` under the allocation, clipped to
    ``[0, 1]`` for display.

    Args:
        image: ``(C, H, W)`` (``C`` in {1, 3}) in ``[0, 1]``, the image the allocation is for.
        allocation: an allocation made for images of this size.
        index: which image of the allocation ``image`` is.
        labels: caption the three panels and add a colour key below them: each level's
            colour, leaf size and token count.
        scale: in ``(0, 1]``; the panels are shrunk by it (area averaging) for display, with
            outlines ``round(1 / scale)`` px wide so they stay visible; text is not scaled.

    Returns:
        ``(3, H, 3 * W + 8)`` float32 (``H``, ``W`` shrunk; more with ``labels``).

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> x = torch.rand(1, 3, 64, 64)
        >>> allocation_figure(x[0], allocate(x, 7, 16, 32)).shape
        torch.Size([3, 64, 200])
        >>> allocation_figure(x[0], allocate(x, 7, 16, 32), scale=0.5).shape
        torch.Size([3, 32, 104])
    """
    rgb = as_rgb(image, "image")
    one = _one(allocation, index, rgb)
    original = shrink(rgb, scale)
    source = image.detach() if image.ndim == 3 else image.detach()[None]
    recon = detokenize(tokenize(source[None], one).tokens, one)[0].clamp(0, 1)
    overlay = allocation_overlay(rgb, one, thickness=max(1, round(1 / scale)))
    panels = [original, shrink(overlay, scale), shrink(recon, scale)]
    if not labels:
        return side_by_side(panels)
    counts = one.level_counts()[0].tolist()
    captions = [
        f"original, {rgb.shape[-2]}x{rgb.shape[-1]}",
        f"{sum(counts)} tokens: leaves coloured by level",
        "reconstruction from the tokens",
    ]
    figure = side_by_side(
        [titled(p, c, CAPTION_SIZE) for p, c in zip(panels, captions, strict=True)]
    )
    colours = [colour for _, colour in LEVEL_COLOURS]
    names = [f"level {k}: {one.min_patch << k} px leaves, {n} tokens" for k, n in enumerate(counts)]
    key = colour_key([(name, colours[k % len(colours)]) for k, name in enumerate(names)])
    return side_by_side([figure, key.to(figure.device)], gap=4, vertical=True)
