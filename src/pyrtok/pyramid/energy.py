"""Band energy per image patch: the input of frequency-aware token allocation."""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.pyramid.functional import check_pyramid


def _overlap_matrix(
    patches: int, patch_size: int, coefficients: int, stride: int, extent: int, device: torch.device
) -> Tensor:
    """``(patches, coefficients)`` share of each coefficient's footprint inside each patch.

    Coefficient ``i`` of a level with stride ``s`` stands for pixels ``[i*s, (i+1)*s)`` of the
    image (clipped to ``extent``); patch ``P`` covers ``[P*p, (P+1)*p)``. Entry ``(P, i)`` is the
    fraction of the coefficient's footprint that lies in the patch, so each column sums to 1.
    """
    patch_start = torch.arange(patches, device=device, dtype=torch.float64) * patch_size
    coef_start = torch.arange(coefficients, device=device, dtype=torch.float64) * stride
    coef_end = (coef_start + stride).clamp(max=extent)
    patch_end = (patch_start + patch_size).clamp(max=extent)
    inside = (
        torch.minimum(patch_end[:, None], coef_end[None, :])
        - torch.maximum(patch_start[:, None], coef_start[None, :])
    ).clamp(min=0)
    return inside / (coef_end - coef_start)[None, :]


def band_energy(
    pyramid: list[Tensor] | tuple[Tensor, ...], patch_size: int, check_finite: bool = True
) -> Tensor:
    """Energy of each pyramid level inside each ``patch_size`` x ``patch_size`` image patch.

    The energy of a coefficient is its square, summed over channels. A coefficient of level
    ``k`` stands for the ``2**k`` x ``2**k`` pixels of the image it was decimated from; its
    energy is shared among the patches that footprint overlaps, in proportion to the overlap.
    So a level's energies sum to the level's total energy, for any patch size (16, 14, 64, ...).

    Args:
        pyramid: ``[L0, ..., G_{L-1}]`` from :func:`~pyrtok.laplacian_pyramid` (or any list of
            levels with ceil-halved sizes), each ``(..., C, H_k, W_k)``.
        patch_size: patch side in level-0 pixels, ``1 <= patch_size <= max(H, W)``.
        check_finite: raise if an energy is NaN or Inf (a NaN/Inf input, or float overflow).
            Skipped while compiling (it needs a host sync).

    Returns:
        ``(..., L, ceil(H / patch_size), ceil(W / patch_size))`` float32 tensor (float64 for
        float64 input), one map per level.

    Examples:
        >>> from pyrtok import laplacian_pyramid
        >>> x = torch.rand(2, 3, 64, 48)
        >>> energy = band_energy(laplacian_pyramid(x, levels=4), patch_size=16)
        >>> energy.shape
        torch.Size([2, 4, 4, 3])
    """
    check_pyramid(pyramid)
    if pyramid[0].ndim < 3:
        raise ValueError(
            f"pyramid: levels need a channel dim, shape (..., C, H, W); got shape "
            f"{tuple(pyramid[0].shape)}"
        )
    height, width = pyramid[0].shape[-2], pyramid[0].shape[-1]
    if isinstance(patch_size, bool) or not isinstance(patch_size, int):
        raise TypeError(f"patch_size: expected an int, got {patch_size!r}")
    if not 1 <= patch_size <= max(height, width):
        raise ValueError(
            f"patch_size: must be between 1 and the image's larger side {max(height, width)} "
            f"(image {height}x{width}), got {patch_size}"
        )
    rows, cols = -(-height // patch_size), -(-width // patch_size)
    accumulate = torch.float64 if pyramid[0].dtype == torch.float64 else torch.float32
    maps = []
    for k, level in enumerate(pyramid):
        squared = level.to(accumulate).square().sum(dim=-3)
        device = level.device
        row_share = _overlap_matrix(rows, patch_size, level.shape[-2], 2**k, height, device)
        col_share = _overlap_matrix(cols, patch_size, level.shape[-1], 2**k, width, device)
        maps.append(
            torch.einsum(
                "ph,...hw,qw->...pq", row_share.to(accumulate), squared, col_share.to(accumulate)
            )
        )
    energy = torch.stack(maps, dim=-3)
    if check_finite and not torch.compiler.is_compiling() and not bool(energy.isfinite().all()):
        raise ValueError(
            "pyramid: band energy is NaN or Inf; the input image has NaN/Inf values or values "
            "too large to square in float32"
        )
    return energy
