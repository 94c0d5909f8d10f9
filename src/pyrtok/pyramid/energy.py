"""Band energy per image patch: the input of frequency-aware token allocation."""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.pyramid import opencv_path
from pyrtok.pyramid.checks import check_finite_energy, check_patch_size, check_pyramid
from pyrtok.pyramid.functional import Levels, laplacian_pyramid, resolve_levels
from pyrtok.pyramid.kernels import KernelLike, resolve_kernel
from pyrtok.pyramid.triton.dispatch import fused_taps
from pyrtok.pyramid.triton.ops import triton_laplacian_energy


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
            It needs a host sync: skipped while compiling and while
            :class:`~pyrtok.pyramid.sync_checks` is off (``PYRTOK_SYNC_CHECKS=0``).

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
    height, width = check_patch_size(pyramid[0], patch_size, "pyramid")
    maps = [_level_energy(level, k, patch_size, height, width) for k, level in enumerate(pyramid)]
    energy = torch.stack(maps, dim=-3)
    if check_finite:
        check_finite_energy(energy)
    return energy


def laplacian_energy(
    x: Tensor,
    patch_size: int,
    levels: Levels = "auto",
    kernel: KernelLike = "binom5",
    border: str = "reflect",
    check_finite: bool = True,
    *,
    keep_pyramid: bool = True,
) -> tuple[list[Tensor], Tensor]:
    """Laplacian pyramid of ``x`` and its band energy, computed together.

    Equal to ``pyramid = laplacian_pyramid(x, levels, kernel, border)`` followed by
    ``band_energy(pyramid, patch_size)``. On a CUDA tensor with the fused kernels available,
    the energies are summed inside the build kernels while the bands are written (no second
    pass over the bands) for every level ``k`` with ``patch_size % 2**k == 0``; the other
    levels' energies are computed from their bands as in :func:`band_energy`. On the CPU with
    OpenCV (the ``cpu`` extra), when ``H`` and ``W`` are multiples of ``patch_size`` and
    ``patch_size`` of ``2**(levels - 1)`` (the allocation scorer's padded input), each plane's
    bands are built and block-summed in one go while in cache (forward only: an input that
    needs gradients takes the two-pass path).

    Args:
        x: ``(..., C, H, W)`` floating tensor.
        patch_size: patch side in level-0 pixels, as in :func:`band_energy`.
        levels: as in :func:`~pyrtok.laplacian_pyramid`.
        kernel: as in :func:`~pyrtok.pyr_down`.
        border: as in :func:`~pyrtok.pyr_down`.
        check_finite: as in :func:`band_energy`.
        keep_pyramid: ``False`` when only the energy is wanted: the pyramid returned is ``[]``,
            and on the CPU one-pass path the bands are never written to memory at all (the
            allocation scorer's call).

    Returns:
        The pyramid (as :func:`~pyrtok.laplacian_pyramid`; ``[]`` without ``keep_pyramid``) and its
        ``(..., L, ceil(H / patch_size), ceil(W / patch_size))`` energy (as :func:`band_energy`).

    Examples:
        >>> x = torch.rand(2, 3, 64, 48)
        >>> pyramid, energy = laplacian_energy(x, patch_size=16, levels=4)
        >>> len(pyramid), energy.shape
        (4, torch.Size([2, 4, 4, 3]))
        >>> kept, alone = laplacian_energy(x, patch_size=16, levels=4, keep_pyramid=False)
        >>> kept, bool(torch.allclose(alone, energy))
        ([], True)
    """
    fused = fused_taps(x, kernel, border)
    one_pass = _one_pass_levels(x, levels, kernel, border, patch_size) if fused is None else None
    if one_pass is not None:
        pyramid, energy = opencv_path.laplacian_energy(x, one_pass, patch_size, keep_pyramid)
        if check_finite:
            check_finite_energy(energy)
        return pyramid, energy
    count = resolve_levels(x, levels, kernel) if fused is not None else 1
    if fused is None or count == 1:
        pyramid = laplacian_pyramid(x, levels, kernel, border)
        energy = band_energy(pyramid, patch_size, check_finite)
        return (pyramid if keep_pyramid else []), energy
    height, width = check_patch_size(x, patch_size, "x")
    pyramid, fused_energy = triton_laplacian_energy(x, count, fused, patch_size)
    maps = [
        fused_energy[..., k, :, :]
        if patch_size % 2**k == 0
        else _level_energy(level, k, patch_size, height, width)
        for k, level in enumerate(pyramid)
    ]
    energy = torch.stack(maps, dim=-3)
    if check_finite:
        check_finite_energy(energy)
    return (pyramid if keep_pyramid else []), energy


def _one_pass_levels(
    x: Tensor, levels: Levels, kernel: KernelLike, border: str, patch_size: int
) -> int | None:
    """The level count if :func:`opencv_path.laplacian_energy` computes this call (see
    :func:`laplacian_energy`), else ``None``; also ``None`` for an invalid argument (the usual
    path raises)."""
    if not isinstance(x, Tensor) or (x.requires_grad and torch.is_grad_enabled()):
        return None
    try:
        height, width = check_patch_size(x, patch_size, "x")
        if not opencv_path.usable(x, resolve_kernel(kernel), border):
            return None
        count = resolve_levels(x, levels, kernel)
    except (TypeError, ValueError):
        return None
    whole = height % patch_size == 0 and width % patch_size == 0
    return count if count > 1 and whole and patch_size % (1 << (count - 1)) == 0 else None


def _level_energy(level: Tensor, k: int, patch_size: int, height: int, width: int) -> Tensor:
    """``(..., PH, PW)`` energy of pyramid level ``k`` (``(..., C, H_k, W_k)``) per patch."""
    rows, cols = -(-height // patch_size), -(-width // patch_size)
    accumulate = torch.float64 if level.dtype == torch.float64 else torch.float32
    squared = level.to(accumulate).square().sum(dim=-3)
    step = patch_size >> k
    if step << k == patch_size and tuple(squared.shape[-2:]) == (rows * step, cols * step):
        # Each coefficient lies in one patch: a block sum (no overlap matrices to multiply).
        blocks = squared.reshape(*squared.shape[:-2], rows, step, cols, step)
        return blocks.sum(dim=(-3, -1))
    device = level.device
    row_share = _overlap_matrix(rows, patch_size, level.shape[-2], 2**k, height, device)
    col_share = _overlap_matrix(cols, patch_size, level.shape[-1], 2**k, width, device)
    return torch.einsum(
        "ph,...hw,qw->...pq", row_share.to(accumulate), squared, col_share.to(accumulate)
    )
