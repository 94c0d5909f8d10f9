"""Figure layout: images side by side or stacked, shrunk for display, fitted to a size."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def as_rgb(image: Tensor, name: str) -> Tensor:
    """``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` floating -> ``(3, H, W)`` float32 (a view)."""
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


def side_by_side(
    images: Sequence[Tensor], gap: int = 4, background: float = 1.0, vertical: bool = False
) -> Tensor:
    """Place images left to right, top-aligned (``vertical``: top to bottom, left-aligned).

    Args:
        images: each ``(3, H, W)``, ``(1, H, W)`` or ``(H, W)`` in ``[0, 1]``.
        gap: separator width in px, ``>= 0``.
        background: grey value in ``[0, 1]`` of the separators and the empty area.
        vertical: stack top to bottom instead.

    Returns:
        ``(3, max H, sum W + gap * (n - 1))`` float32 (``vertical``:
        ``(3, sum H + gap * (n - 1), max W)``) on the first image's device.

    Examples:
        >>> side_by_side([torch.rand(3, 20, 30), torch.rand(10, 15)]).shape
        torch.Size([3, 20, 49])
        >>> side_by_side([torch.rand(3, 20, 30), torch.rand(10, 15)], vertical=True).shape
        torch.Size([3, 34, 30])
    """
    if not images:
        raise ValueError("images: expected at least one image")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap: expected an int >= 0, got {gap!r}")
    tiles = [as_rgb(image, f"images[{i}]") for i, image in enumerate(images)]
    if vertical:
        tiles = [tile.transpose(1, 2) for tile in tiles]
    height = max(t.shape[-2] for t in tiles)
    width = sum(t.shape[-1] for t in tiles) + gap * (len(tiles) - 1)
    canvas = torch.full((3, height, width), background, device=tiles[0].device)
    left = 0
    for tile in tiles:
        canvas[:, : tile.shape[-2], left : left + tile.shape[-1]] = tile.to(canvas.device)
        left += tile.shape[-1] + gap
    return canvas.transpose(1, 2).contiguous() if vertical else canvas


def shrink(image: Tensor, scale: float) -> Tensor:
    """Scale an image down by area averaging (values stay in the input's range).

    Args:
        image: ``(C, H, W)`` floating.
        scale: in ``(0, 1]``; 1 returns ``image`` itself.

    Returns:
        ``(C, max(1, round(H * scale)), max(1, round(W * scale)))``.

    Examples:
        >>> shrink(torch.rand(3, 100, 30), 0.25).shape
        torch.Size([3, 25, 8])
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale: must be in (0, 1], got {scale}")
    if scale == 1:
        return image
    height, width = image.shape[-2:]
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return F.interpolate(image[None], size=size, mode="area")[0]


def fit(
    draw: Callable[[float], Tensor], max_side: int, scale: float = 1.0, tries: int = 8
) -> tuple[Tensor, float]:
    """Draw a figure at a scale ``<= scale`` at which its longer side is ``<= max_side``.

    The figure's content shrinks with the scale but its text does not, so the scale is found by
    drawing: each too-large try shrinks it by ``(max_side - 1) / side`` (a pixel to spare for
    rounding), which fits in two or three tries and is within a few px of the largest scale.

    Args:
        draw: ``scale -> (C, H, W)`` figure.
        max_side: the longest side allowed, in px.
        scale: the first scale to try, in ``(0, 1]``.
        tries: how many draws before giving up (the text alone is too large).

    Returns:
        The figure and the scale it was drawn at.

    Examples:
        >>> figure, scale = fit(lambda s: torch.zeros(3, 20 + round(400 * s), 10), 220)
        >>> figure.shape[-2], round(scale, 3)
        (219, 0.499)
    """
    for _ in range(tries):
        figure = draw(scale)
        side = max(figure.shape[-2:])
        if side <= max_side:
            return figure, scale
        scale *= (max_side - 1) / side
    raise ValueError(f"max_side: {max_side} px is too small for the figure's text")
