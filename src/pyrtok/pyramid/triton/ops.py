"""Entry points of the fused pyramid kernels on ``(..., H, W)`` tensors.

:mod:`.dispatch` decides whether a call may take this path; these functions reshape to and
from ``(Z, H, W)`` planes and apply the ``torch.autograd.Function`` s of :mod:`.autograd`,
which launch the kernels through :mod:`.launch`. Triton is imported at the first launch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.pyramid.triton.taps import SymTaps


def _planes(x: Tensor) -> Tensor:
    """``(..., H, W)`` -> contiguous ``(Z, H, W)``."""
    return x.reshape(-1, x.shape[-2], x.shape[-1]).contiguous()


def _unplanes(levels: tuple[Tensor, ...] | list[Tensor], lead: torch.Size) -> list[Tensor]:
    return [level.reshape(*lead, level.shape[-2], level.shape[-1]) for level in levels]


def triton_pyr_down(x: Tensor, taps: SymTaps) -> Tensor:
    """Fused :func:`~pyrtok.pyr_down`: ``(..., H, W)`` -> ``(..., ceil(H/2), ceil(W/2))``."""
    from pyrtok.pyramid.triton.autograd import PyrDown

    out: Tensor = PyrDown.apply(_planes(x), taps)
    return _unplanes([out], x.shape[:-2])[0]


def triton_pyr_up(x: Tensor, size: tuple[int, int], taps: SymTaps) -> Tensor:
    """Fused :func:`~pyrtok.pyr_up`: ``(..., h, w)`` -> ``(..., *size)`` (size already checked)."""
    from pyrtok.pyramid.triton.autograd import PyrUp

    out: Tensor = PyrUp.apply(_planes(x), (int(size[0]), int(size[1])), taps)
    return _unplanes([out], x.shape[:-2])[0]


def triton_laplacian_pyramid(x: Tensor, count: int, taps: SymTaps) -> list[Tensor]:
    """Fused :func:`~pyrtok.laplacian_pyramid` with ``count`` levels (already validated)."""
    if count == 1:
        return [x]
    from pyrtok.pyramid.triton.autograd import LaplacianBuild

    levels = LaplacianBuild.apply(_planes(x), count, taps, None)
    return _unplanes(levels, x.shape[:-2])


def triton_laplacian_energy(
    x: Tensor, count: int, taps: SymTaps, patch_size: int
) -> tuple[list[Tensor], Tensor]:
    """Fused build of ``count >= 2`` levels of ``x`` ``(..., C, H, W)`` plus band energy.

    Returns the pyramid and ``(..., count, PH, PW)`` float32 energies, accumulated inside the
    build kernels for the levels ``k`` with ``patch_size % 2**k == 0``; the other levels' maps
    are zero here and the caller fills them.
    """
    from pyrtok.pyramid.triton.autograd import EnergyRequest, LaplacianBuild

    request = EnergyRequest(channels=x.shape[-3], patch=patch_size)
    *levels, energy = LaplacianBuild.apply(_planes(x), count, taps, request)
    return _unplanes(levels, x.shape[:-2]), energy.reshape(*x.shape[:-3], *energy.shape[1:])


def triton_reconstruct(pyramid: list[Tensor] | tuple[Tensor, ...], taps: SymTaps) -> Tensor:
    """Fused :func:`~pyrtok.reconstruct` of a checked pyramid."""
    if len(pyramid) == 1:
        return pyramid[0]
    from pyrtok.pyramid.triton.autograd import Reconstruct

    out: Tensor = Reconstruct.apply(taps, *(_planes(level) for level in pyramid))
    return _unplanes([out], pyramid[0].shape[:-2])[0]
