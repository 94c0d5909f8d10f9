"""Laplacian pyramid montage: every level of one image side by side, for viewing."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from pyrtok.pyramid.checks import check_pyramid
from pyrtok.viz.layout import shrink, side_by_side
from pyrtok.viz.text import CAPTION_SIZE, text_image, titled

_NOISE_FLOOR = 0.5 / 255
"""Band magnitudes below half an 8-bit grey level are float noise, not detail: never amplified
past the gain that shows this floor at full contrast."""


KEY = "bands: mid-grey is 0, darker < 0 < lighter, each stretched to full contrast; residual: as is"
"""How to read a montage; written below it with ``labels=True``."""


def _band_gain(band: Tensor, quantile: float) -> float:
    """Gain that maps the ``quantile`` of ``|band|`` (at least the noise floor) to 0.5."""
    magnitudes = band.float().abs().flatten()
    rank = max(1, math.ceil(quantile * magnitudes.numel()))
    scale = float(magnitudes.kthvalue(rank).values)
    return 0.5 / max(scale, _NOISE_FLOOR)


def _shown(band: Tensor, quantile: float, noise: float) -> Tensor:
    """``gain * band``, with ``|band| <= noise`` (rounding noise) shown as exactly zero: mid-grey
    (0.5) is the 8-bit rounding edge, so 1-ulp bands of a flat image (OpenCV's arithmetic) would
    otherwise flip it between 127 and 128."""
    values = band.float()
    return _band_gain(band, quantile) * values.masked_fill(values.abs() <= noise, 0.0)


def _to_rgb(level: Tensor) -> Tensor:
    """``(C, H, W)`` with C in {1, 3} -> ``(3, H, W)`` float32."""
    return level.to(torch.float32).expand(3, -1, -1)


def _label(k: int, level: Tensor, levels: int) -> str:
    """``L0 band (finest), HxW``, ``L1 band, HxW``, ..., ``G{levels - 1} residual, HxW``."""
    size = f"{level.shape[-2]}x{level.shape[-1]}"
    if k == levels - 1:
        return f"G{k} residual, {size}"
    return f"L{k} band{' (finest)' if k == 0 else ''}, {size}"


def pyramid_montage(
    pyramid: list[Tensor] | tuple[Tensor, ...],
    quantile: float = 0.99,
    spacing: int = 2,
    background: float = 1.0,
    labels: bool = False,
    scale: float = 1.0,
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
        labels: caption each level above it with its name and size (``L0 band (finest),
            64x96``, ..., ``G3 residual, 8x12``) and write :data:`KEY` below the montage, in
            black; a text wider than its level widens the layout.
        scale: in ``(0, 1]``; each level is shrunk by it (area averaging) for display, after
            the gains are computed; spacing and captions are not scaled.

    Returns:
        ``(3, max(H, h), W + spacing + W_1)`` float32 tensor in ``[0, 1]`` on the pyramid's
        device, where ``h`` is the column's height (levels 1.. plus separators) and ``W_1`` the
        width of level 1; just ``(3, H, W)`` for a one-level pyramid. ``H``, ``W`` etc. are the
        shrunk sizes and include the captions; ``labels`` adds :data:`KEY` below.

    Examples:
        >>> from pyrtok import laplacian_pyramid
        >>> pyramid = laplacian_pyramid(torch.rand(3, 64, 96), levels=4)
        >>> pyramid_montage(pyramid).shape
        torch.Size([3, 64, 146])
        >>> pyramid_montage(pyramid, scale=0.5).shape
        torch.Size([3, 32, 74])
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
    noise = 4 * torch.finfo(torch.float32).eps * float(residual.float().abs().max())
    tiles = [_to_rgb(0.5 + _shown(band, quantile, noise)) for band in bands]
    tiles.append(_to_rgb(residual))
    tiles = [shrink(tile.clamp(0, 1), scale) for tile in tiles]
    if labels:
        names = [_label(k, level, len(pyramid)) for k, level in enumerate(pyramid)]
        tiles = [titled(tile, name, CAPTION_SIZE) for tile, name in zip(tiles, names, strict=True)]
    if len(tiles) > 1:
        column = side_by_side(tiles[1:], gap=spacing, background=background, vertical=True)
        tiles = [side_by_side([tiles[0], column], gap=spacing, background=background)]
    if labels:
        tiles.append(text_image(KEY).to(tiles[0].device))
    return side_by_side(tiles, gap=spacing, background=background, vertical=True)
