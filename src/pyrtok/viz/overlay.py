"""Token allocations for viewing: leaf boxes coloured by level, and reconstruction side by side."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pyrtok.allocation import Allocation, detokenize, tokenize

LEVEL_COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (0.89, 0.10, 0.11)),
    ("orange", (1.00, 0.50, 0.00)),
    ("green", (0.30, 0.69, 0.29)),
    ("blue", (0.22, 0.49, 0.72)),
    ("purple", (0.60, 0.31, 0.64)),
    ("brown", (0.65, 0.34, 0.16)),
)
"""Colour of pyramid level ``k`` (``k = 0``: ``min_patch`` leaves) by name and RGB; cycles."""


def _rgb(image: Tensor, name: str) -> Tensor:
    if not isinstance(image, Tensor) or not image.is_floating_point():
        raise TypeError(f"{name}: expected a floating tensor with values in [0, 1]")
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"{name}: expected one image of shape (3, H, W), (1, H, W) or (H, W), got "
            f"{tuple(image.shape)}"
        )
    return image.detach().to(torch.float32).expand(3, -1, -1)


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
        leaves = allocation.boxes[0, (allocation.levels[0] == k) & allocation.mask[0]]
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
    rgb = _rgb(image, "image")
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


def side_by_side(images: Sequence[Tensor], gap: int = 4, background: float = 1.0) -> Tensor:
    """Place images left to right, top-aligned, with ``gap`` px of ``background`` between.

    Args:
        images: each ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` in ``[0, 1]``.
        gap: separator width in px, ``>= 0``.
        background: grey value in ``[0, 1]`` of the separators and the empty area.

    Returns:
        ``(3, max H, sum W + gap * (n - 1))`` float32.

    Examples:
        >>> side_by_side([torch.rand(3, 20, 30), torch.rand(10, 15)]).shape
        torch.Size([3, 20, 49])
    """
    if not images:
        raise ValueError("images: expected at least one image")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap: expected an int >= 0, got {gap!r}")
    tiles = [_rgb(image, f"images[{i}]") for i, image in enumerate(images)]
    height = max(t.shape[-2] for t in tiles)
    width = sum(t.shape[-1] for t in tiles) + gap * (len(tiles) - 1)
    canvas = torch.full((3, height, width), background, device=tiles[0].device)
    left = 0
    for tile in tiles:
        canvas[:, : tile.shape[-2], left : left + tile.shape[-1]] = tile.to(canvas.device)
        left += tile.shape[-1] + gap
    return canvas


def allocation_figure(image: Tensor, allocation: Allocation, index: int = 0) -> Tensor:
    """Original, allocation overlay and token reconstruction, side by side.

    The reconstruction is ``detokenize(tokenize(image))`` under the allocation, clipped to
    ``[0, 1]`` for display.

    Args:
        image: ``(C, H, W)`` (``C`` in {1, 3}) in ``[0, 1]``, the image the allocation is for.
        allocation: an allocation made for images of this size.
        index: which image of the allocation ``image`` is.

    Returns:
        ``(3, H, 3 * W + 8)`` float32.

    Examples:
        >>> from pyrtok.allocation import allocate
        >>> x = torch.rand(1, 3, 64, 64)
        >>> allocation_figure(x[0], allocate(x, 7, 16, 32)).shape
        torch.Size([3, 64, 200])
    """
    rgb = _rgb(image, "image")
    one = _one(allocation, index, rgb)
    source = image.detach() if image.ndim == 3 else image.detach()[None]
    recon = detokenize(tokenize(source[None], one).tokens, one)[0]
    return side_by_side([rgb, allocation_overlay(rgb, one), recon.clamp(0, 1)])
