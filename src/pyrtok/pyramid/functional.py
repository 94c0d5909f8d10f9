"""Gaussian and Laplacian pyramids: REDUCE, EXPAND, build and exact reconstruction.

Every function takes ``x`` of shape ``(..., H, W)`` with any leading dims, float16, bfloat16,
float32 or float64, and any ``H, W >= 1``. Sizes round up (``ceil(H / 2)``), so odd sizes lose
nothing and :func:`reconstruct` inverts :func:`laplacian_pyramid` exactly for every shape.
Half-precision inputs are filtered in float32 and returned in their own dtype. On the CPU, with
OpenCV installed (the ``cpu`` extra), the default kernel and border run ``cv2.pyrDown`` /
``cv2.pyrUp`` where they are the same operator (:mod:`.opencv_path`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from pyrtok.pyramid import opencv_path
from pyrtok.pyramid.borders import check_border

# Re-exported: losses.py and viz/montage.py import these two from here.
from pyrtok.pyramid.checks import check_image, check_pyramid
from pyrtok.pyramid.kernels import KernelLike, Taps, kernel_length, resolve_kernel
from pyrtok.pyramid.separable import expand_axis, reduce_axis
from pyrtok.pyramid.triton.dispatch import fused_taps
from pyrtok.pyramid.triton.ops import (
    triton_laplacian_pyramid,
    triton_pyr_down,
    triton_pyr_up,
    triton_reconstruct,
)

Levels = int | Literal["auto"]


def pyramid_sizes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """Spatial size of each of ``levels`` pyramid levels (each side ``ceil``-halved).

    Examples:
        >>> pyramid_sizes(5, 8, 3)
        [(5, 8), (3, 4), (2, 2)]
    """
    sizes = [(height, width)]
    for _ in range(levels - 1):
        h, w = sizes[-1]
        sizes.append(((h + 1) // 2, (w + 1) // 2))
    return sizes


def max_levels(height: int, width: int) -> int:
    """Largest level count: the coarsest level is 1x1 (more would repeat it).

    Examples:
        >>> max_levels(512, 512), max_levels(1, 1), max_levels(5, 3)
        (10, 1, 4)
    """
    return 1 + math.ceil(math.log2(max(height, width)))


def auto_levels(height: int, width: int, kernel: KernelLike = "binom5") -> int:
    """Level count for ``levels="auto"``: stop before a side would be smaller than the kernel.

    Examples:
        >>> auto_levels(512, 512), auto_levels(4, 4)
        (7, 1)
    """
    size = kernel_length(resolve_kernel(kernel))
    levels = 1
    h, w = height, width
    while min((h + 1) // 2, (w + 1) // 2) >= size:
        h, w = (h + 1) // 2, (w + 1) // 2
        levels += 1
    return levels


def resolve_levels(x: Tensor, levels: Levels, kernel: KernelLike) -> int:
    """Validate ``levels`` for an input of shape ``(..., H, W)`` and return it as an int."""
    height, width = x.shape[-2], x.shape[-1]
    if levels == "auto":
        return auto_levels(height, width, kernel)
    if isinstance(levels, bool) or not isinstance(levels, int):
        raise TypeError(f"levels: expected an int >= 1 or 'auto', got {levels!r}")
    largest = max_levels(height, width)
    if levels < 1:
        raise ValueError(f"levels: must be >= 1, got {levels}")
    if levels > largest:
        raise ValueError(
            f"levels: {levels} is too many for a {height}x{width} input; the largest allowed "
            f"is {largest} (its coarsest level is 1x1)"
        )
    return levels


def _prepare(x: Tensor, kernel: KernelLike, border: str) -> tuple[Tensor, Taps]:
    check_image(x)
    check_border(border)
    taps = resolve_kernel(kernel)
    work = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    return work, taps


def pyr_down(x: Tensor, kernel: KernelLike = "binom5", border: str = "reflect") -> Tensor:
    """Blur separably and keep every other row and column (Burt-Adelson REDUCE).

    With the defaults this equals OpenCV's ``cv2.pyrDown`` for any size.

    Args:
        x: ``(..., H, W)`` floating tensor.
        kernel: ``"binom5"`` (``[1, 4, 6, 4, 1] / 16``), ``"gauss"``, ``("gauss", sigma)`` or
            1-D taps (odd length, normalised to unit sum).
        border: ``"reflect"`` (reflect-101), ``"replicate"``, ``"circular"`` or ``"constant"``.

    Returns:
        ``(..., ceil(H / 2), ceil(W / 2))``, dtype of ``x``.

    Examples:
        >>> x = torch.rand(2, 3, 37, 50)
        >>> pyr_down(x).shape
        torch.Size([2, 3, 19, 25])
    """
    fused = fused_taps(x, kernel, border)
    if fused is not None:
        return triton_pyr_down(x, fused)
    work, taps = _prepare(x, kernel, border)
    if opencv_path.usable(x, taps, border):
        return opencv_path.pyr_down(x)
    # H first: the strided last axis is then reduced on the half-size image.
    out = reduce_axis(reduce_axis(work, -2, taps, border), -1, taps, border)
    return out.to(x.dtype)


def pyr_up(
    x: Tensor,
    size: tuple[int, int] | None = None,
    kernel: KernelLike = "binom5",
    border: str = "reflect",
) -> Tensor:
    """Upsample by zero insertion and a 4x-gain separable blur (Burt-Adelson EXPAND).

    With the defaults and ``size == (2H, 2W)`` this equals OpenCV's ``cv2.pyrUp``.

    Args:
        x: ``(..., h, w)`` floating tensor.
        size: output ``(H, W)`` with ``ceil(H / 2) == h`` and ``ceil(W / 2) == w``;
            default ``(2h, 2w)``.
        kernel: as in :func:`pyr_down`.
        border: as in :func:`pyr_down`.

    Returns:
        ``(..., H, W)``, dtype of ``x``.

    Examples:
        >>> x = torch.rand(2, 3, 19, 25)
        >>> pyr_up(x, (37, 50)).shape
        torch.Size([2, 3, 37, 50])
    """
    check_image(x)
    h, w = x.shape[-2], x.shape[-1]
    height, width = (2 * h, 2 * w) if size is None else (int(size[0]), int(size[1]))
    if (height + 1) // 2 != h or (width + 1) // 2 != w:
        raise ValueError(
            f"size: {(height, width)} cannot come from a {h}x{w} level; expected H in "
            f"{{{2 * h - 1}, {2 * h}}} and W in {{{2 * w - 1}, {2 * w}}}"
        )
    fused = fused_taps(x, kernel, border)
    if fused is not None:
        return triton_pyr_up(x, (height, width), fused)
    return _expand(x, (height, width), kernel, border)


def _expand(
    x: Tensor,
    size: tuple[int, int],
    kernel: KernelLike,
    border: str,
    base: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """``pyr_up(x, size)``, or ``base + scale * pyr_up(x, size)`` in the same passes."""
    work, taps = _prepare(x, kernel, border)
    if opencv_path.usable(x, taps, border, size, base):
        return opencv_path.pyr_up(x, base, scale)
    if base is not None and base.dtype in (torch.float16, torch.bfloat16):
        base = base.float()
    # W first: the strided last axis is then expanded on the half-size image.
    rows = expand_axis(work, -1, size[1], taps, border)
    return expand_axis(rows, -2, size[0], taps, border, base, scale).to(x.dtype)


def gaussian_pyramid(
    x: Tensor, levels: Levels = "auto", kernel: KernelLike = "binom5", border: str = "reflect"
) -> list[Tensor]:
    """Repeated :func:`pyr_down`: ``[G0 = x, G1, ..., G_{levels-1}]``.

    Args:
        x: ``(..., H, W)`` floating tensor.
        levels: number of levels returned (``x`` included), or ``"auto"``.
        kernel: as in :func:`pyr_down`.
        border: as in :func:`pyr_down`.

    Returns:
        ``levels`` tensors; level ``k`` has shape ``(..., ceil(H / 2**k), ceil(W / 2**k))``.

    Examples:
        >>> [tuple(g.shape) for g in gaussian_pyramid(torch.rand(3, 64, 48), levels=3)]
        [(3, 64, 48), (3, 32, 24), (3, 16, 12)]
    """
    check_image(x)
    count = resolve_levels(x, levels, kernel)
    pyramid = [x]
    for _ in range(count - 1):
        pyramid.append(pyr_down(pyramid[-1], kernel, border))
    return pyramid


def laplacian_pyramid(
    x: Tensor, levels: Levels = "auto", kernel: KernelLike = "binom5", border: str = "reflect"
) -> list[Tensor]:
    """Band-pass decomposition ``[L0, ..., L_{levels-2}, G_{levels-1}]``.

    ``L_k = G_k - pyr_up(G_{k+1})`` is the detail lost between level ``k`` and ``k + 1`` (``L0``
    is the finest band); the last entry is the low-pass residual. :func:`reconstruct` inverts it
    exactly for any size.

    Args:
        x: ``(..., H, W)`` floating tensor.
        levels: number of entries returned (bands + residual), or ``"auto"``.
        kernel: as in :func:`pyr_down`.
        border: as in :func:`pyr_down`.

    Returns:
        ``levels`` tensors with the shapes of :func:`gaussian_pyramid`.

    Examples:
        >>> x = torch.rand(2, 3, 37, 50, dtype=torch.float64)
        >>> bands = laplacian_pyramid(x, levels=4)
        >>> [tuple(b.shape[-2:]) for b in bands]
        [(37, 50), (19, 25), (10, 13), (5, 7)]
        >>> bool((reconstruct(bands) - x).abs().max() < 1e-12)
        True
    """
    fused = fused_taps(x, kernel, border)
    if fused is not None:
        return triton_laplacian_pyramid(x, resolve_levels(x, levels, kernel), fused)
    return laplacian_from_gaussian(gaussian_pyramid(x, levels, kernel, border), kernel, border)


def laplacian_from_gaussian(
    gaussians: Sequence[Tensor], kernel: KernelLike = "binom5", border: str = "reflect"
) -> list[Tensor]:
    """The Laplacian pyramid of an already built Gaussian pyramid (no second build).

    ``L_k = G_k - pyr_up(G_{k+1})``; equal to :func:`laplacian_pyramid` of ``gaussians[0]``.

    Args:
        gaussians: ``[G0, ..., G_{L-1}]`` from :func:`gaussian_pyramid`, same kernel and border.
        kernel: as in :func:`pyr_down`.
        border: as in :func:`pyr_down`.

    Returns:
        ``[L0, ..., L_{L-2}, G_{L-1}]``.

    Examples:
        >>> import torch
        >>> x = torch.rand(1, 3, 40, 24, dtype=torch.float64)
        >>> bands = laplacian_from_gaussian(gaussian_pyramid(x, levels=3))
        >>> all(torch.equal(a, b) for a, b in zip(bands, laplacian_pyramid(x, levels=3)))
        True
    """
    bands = [
        _expand(coarse, (fine.shape[-2], fine.shape[-1]), kernel, border, base=fine, scale=-1.0)
        for fine, coarse in itertools.pairwise(gaussians)
    ]
    return [*bands, gaussians[-1]]


def reconstruct(
    pyramid: list[Tensor] | tuple[Tensor, ...],
    kernel: KernelLike = "binom5",
    border: str = "reflect",
) -> Tensor:
    """Invert :func:`laplacian_pyramid`: ``G_k = L_k + pyr_up(G_{k+1})`` from coarse to fine.

    Exact for every size (float64 error ~1e-15, float32 ~1e-6) when ``kernel`` and ``border``
    match the ones the pyramid was built with.

    Args:
        pyramid: ``[L0, ..., G_{L-1}]`` as returned by :func:`laplacian_pyramid`.
        kernel: as in :func:`pyr_down`.
        border: as in :func:`pyr_down`.

    Returns:
        ``(..., H, W)`` tensor, the shape of ``pyramid[0]``.

    Examples:
        >>> x = torch.rand(4, 33, 21)
        >>> bool(torch.allclose(reconstruct(laplacian_pyramid(x, levels=3)), x, atol=1e-6))
        True
    """
    check_pyramid(pyramid)
    fused = fused_taps(pyramid[0], kernel, border)
    if fused is not None:
        return triton_reconstruct(pyramid, fused)
    image = pyramid[-1]
    for band in reversed(pyramid[:-1]):
        image = _expand(image, (band.shape[-2], band.shape[-1]), kernel, border, base=band)
    return image
