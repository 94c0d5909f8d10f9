"""Laplacian pyramid montage: every level of one image side by side, for viewing."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pyrtok.pyramid.functional import check_pyramid

_NOISE_FLOOR = 0.5 / 255
"""Band magnitudes below half an 8-bit grey level are float noise, not detail: never amplified
past the gain that shows this floor at full contrast."""


def _band_gain(band: Tensor, quantile: float) -> float:
    """Gain that maps the ``quantile`` of ``|band|`` (at least the noise floor) to 0.5."""
    magnitudes = band.float().abs().flatten()
    rank = max(1, math.ceil(quantile * magnitudes.numel()))
    scale = float(magnitudes.kthvalue(rank).values)
    return 0.5 / max(scale, _NOISE_FLOOR)


def _to_rgb(level: Tensor) -> Tensor:
    """``(C, H, W)`` with C in {1, 3} -> ``(3, H, W)`` float32."""
    return level.to(torch.float32).expand(3, -1, -1)


def pyramid_montage(
    pyramid: list[Tensor] | tuple[Tensor, ...],
    quantile: float = 0.99,
    spacing: int = 2,
    background: float = 1.0,
) -> Tensor:
    """Lay out one image's Laplacian pyramid as a single picture.

    Level 0 (the finest band) fills the left; the coarser levels are stacked top to bottom in a
    column on its right, each at its own size, with ``spacing`` px of ``background`` between
    them. A band ``L`` is shown as ``0.5 + gain * L`` (mid-grey is zero), with a per-band gain
    that maps the ``quantile`` of ``|L|`` to 0.5, so even the faint fine bands are visible
    (but float noise below half an 8-bit grey level stays mid-grey);
    stronger coefficients saturate. The low-pass residual (last level) is shown as is, which
    assumes the image had values in ``[0, 1]``. Everything is clipped to ``[0, 1]`` for display.

    Args:
        pyramid: ``[L0, ..., G_{L-1}]`` from :func:`~pyrtok.laplacian_pyramid` of one image:
            levels of shape ``(3, H_k, W_k)``, ``(1, H_k, W_k)`` or ``(H_k, W_k)``.
        quantile: in ``(0, 1]``; the band magnitude quantile shown at full contrast.
        spacing: separator width in px, ``>= 0``.
        background: grey value in ``[0, 1]`` of the separators and the empty area.

    Returns:
        ``(3, max(H, h), W + spacing + W_1)`` float32 tensor in ``[0, 1]`` on the pyramid's
        device, where ``h`` is the column's height (levels 1.. plus separators) and ``W_1`` the
        width of level 1; just ``(3, H, W)`` for a one-level pyramid.

    Examples:
        >>> from pyrtok import laplacian_pyramid
        >>> pyramid = laplacian_pyramid(torch.rand(3, 64, 96), levels=4)
        >>> pyramid_montage(pyramid).shape
        torch.Size([3, 64, 146])
    """
    check_pyramid(pyramid)
    first = pyramid[0]
    if first.ndim == 2:
        pyramid = [level.unsqueeze(0) for level in pyramid]
    elif first.ndim != 3 or first.shape[0] not in (1, 3):
        raise ValueError(
            f"pyramid: expected levels of shape (3, H, W), (1, H, W) or (H, W) for one image, "
            f"got level 0 of shape {tuple(first.shape)}; for a batch, pass "
            "[level[i] for level in pyramid]"
        )
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile: must be in (0, 1], got {quantile}")
    if isinstance(spacing, bool) or not isinstance(spacing, int) or spacing < 0:
        raise ValueError(f"spacing: expected an int >= 0, got {spacing!r}")
    if not 0 <= background <= 1:
        raise ValueError(f"background: must be in [0, 1], got {background}")

    *bands, residual = pyramid
    tiles = [_to_rgb(0.5 + _band_gain(band, quantile) * band.float()) for band in bands]
    tiles.append(_to_rgb(residual))
    height, width = tiles[0].shape[-2:]
    if len(tiles) == 1:
        return tiles[0].clamp(0, 1)
    column = tiles[1:]
    column_height = sum(tile.shape[-2] for tile in column) + spacing * (len(column) - 1)
    column_width = column[0].shape[-1]
    canvas = torch.full(
        (3, max(height, column_height), width + spacing + column_width),
        background,
        dtype=torch.float32,
        device=first.device,
    )
    canvas[:, :height, :width] = tiles[0]
    top, left = 0, width + spacing
    for tile in column:
        h, w = tile.shape[-2:]
        canvas[:, top : top + h, left : left + w] = tile
        top += h + spacing
    return canvas.clamp(0, 1)
