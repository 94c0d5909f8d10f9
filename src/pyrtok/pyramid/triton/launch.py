"""Launch the Triton kernels on ``(Z, H, W)`` tensors: tiles, grids, output allocation.

No autograd here (see :mod:`.autograd`) and no dispatch (see :mod:`.dispatch`): every function
takes contiguous ``(Z, H, W)`` planes and symmetric taps ``(W0, W1, W2)`` and returns new
tensors. Benchmarks may call these directly to sweep tile shapes. The kernels (and so Triton)
are imported at the first launch, so this module imports without Triton.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from pyrtok.pyramid.triton.tables import GatherTable
from pyrtok.pyramid.triton.taps import SymTaps

_alloc = torch.empty
"""Output allocator; tests swap in a NaN-filled one to catch unwritten elements."""


@dataclass(frozen=True)
class Tile:
    """Work of one program: ``cols`` coarse columns x ``rows`` coarse rows, ``warps`` warps."""

    cols: int
    rows: int
    warps: int


@dataclass(frozen=True)
class EnergySpec:
    """Where a level step adds patch energies: ``energy`` is ``(B, L, PH, PW)`` float32.

    ``fine_level``/``coarse_level`` are level indices to accumulate (``None``: skip), and
    ``patch`` the patch side in image pixels; a level ``k`` is accumulated in-kernel only when
    ``patch % 2**k == 0`` (each coefficient then lies in exactly one patch).
    """

    energy: Tensor
    channels: int
    patch: int
    fine_level: int | None
    coarse_level: int | None


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


@functools.lru_cache(maxsize=16)
def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 4
    return int(torch.cuda.get_device_properties(device).multi_processor_count)


def choose_tile(planes: int, coarse_h: int, coarse_w: int, device: torch.device) -> Tile:
    """Tile for a level whose coarse side is ``coarse_h x coarse_w``.

    Wide strips (up to 128 coarse columns, one column per thread) keep loads long and the
    halo small; rows per program shrink from 32 until the grid has about 4 programs per
    multiprocessor, so small batches still fill the GPU.
    """
    cols = min(128, max(16, _next_pow2(coarse_w)))
    rows = 32
    if device.type != "cuda":  # the interpreter: fewest programs
        return Tile(cols=cols, rows=rows, warps=1)
    target = 4 * _sm_count(device)
    while rows > 4 and planes * -(-coarse_w // cols) * -(-coarse_h // rows) < target:
        rows //= 2
    return Tile(cols=cols, rows=rows, warps=max(1, min(4, cols // 32)))


@contextlib.contextmanager
def _on_device(device: torch.device) -> Iterator[None]:
    """Launch on ``device`` (Triton launches on the current CUDA device)."""
    if device.type == "cuda":
        with torch.cuda.device(device):
            yield
    else:
        yield


def _grid(planes: int, coarse_h: int, coarse_w: int, tile: Tile) -> tuple[int, int, int]:
    col_blocks = -(-coarse_w // tile.cols)
    row_blocks = -(-coarse_h // tile.rows)
    return col_blocks, row_blocks, planes * col_blocks * row_blocks


def level_step(
    g: Tensor,
    taps: SymTaps,
    write_band: bool = True,
    energy: EnergySpec | None = None,
    tile: Tile | None = None,
) -> tuple[Tensor | None, Tensor]:
    """``(band, coarse)`` of one level: ``coarse = REDUCE(g)``, ``band = g - EXPAND(coarse)``.

    Shapes:
        g: ``(Z, H, W)`` -> band ``(Z, H, W)`` (``None`` unless ``write_band``),
        coarse ``(Z, ceil(H/2), ceil(W/2))``
    """
    planes, nh, nw = g.shape
    mh, mw = (nh + 1) // 2, (nw + 1) // 2
    coarse = _alloc((planes, mh, mw), dtype=g.dtype, device=g.device)
    band = _alloc((planes, nh, nw), dtype=g.dtype, device=g.device) if write_band else None
    if planes == 0:
        return band, coarse
    tile = tile or choose_tile(planes, mh, mw, g.device)
    col_blocks, row_blocks, programs = _grid(planes, mh, mw, tile)
    args = _energy_args(energy, nh, nw, mh, mw, coarse)
    from pyrtok.pyramid.triton import kernels  # imports Triton

    with _on_device(g.device):
        kernels.level_step_kernel[(programs,)](
            g, band if band is not None else coarse, coarse, args[0],
            nh, nw, mh, mw, col_blocks, row_blocks, *args[1:],
            W0=taps[0], W1=taps[1], W2=taps[2], BW=tile.cols, RB=tile.rows,
            FOLD_ONCE=nh >= 8, WRITE_BAND=write_band,
            ENERGY_FINE=energy is not None and energy.fine_level is not None,
            ENERGY_COARSE=energy is not None and energy.coarse_level is not None,
            num_warps=tile.warps,
        )  # fmt: skip
    return band, coarse


def _energy_args(
    energy: EnergySpec | None, nh: int, nw: int, mh: int, mw: int, dummy: Tensor
) -> tuple[Tensor, int, int, int, int, int, int, int]:
    """Kernel arguments: energy, channels, batch stride, level offsets, PW, groups."""
    if energy is None:
        return dummy, 1, 0, 0, 0, 1, 1, 1
    levels, ph, pw = energy.energy.shape[1:]
    fine, coarse = energy.fine_level, energy.coarse_level
    return (
        energy.energy,
        energy.channels,
        levels * ph * pw,
        0 if fine is None else fine * ph * pw,
        0 if coarse is None else coarse * ph * pw,
        pw,
        1 if fine is None else energy.patch >> fine,
        1 if coarse is None else energy.patch >> coarse,
    )


def expand(
    coarse: Tensor,
    size: tuple[int, int],
    taps: SymTaps,
    band: Tensor | None = None,
    tile: Tile | None = None,
) -> Tensor:
    """``EXPAND(coarse)`` to ``size``, plus ``band`` when given (one reconstruction level).

    Shapes:
        coarse: ``(Z, ceil(H/2), ceil(W/2))``, band: ``(Z, H, W)`` -> ``(Z, H, W)``
    """
    planes, mh, mw = coarse.shape
    nh, nw = size
    out = _alloc((planes, nh, nw), dtype=coarse.dtype, device=coarse.device)
    if planes == 0:
        return out
    tile = tile or choose_tile(planes, mh, mw, coarse.device)
    col_blocks, row_blocks, programs = _grid(planes, mh, mw, tile)
    from pyrtok.pyramid.triton import kernels  # imports Triton

    with _on_device(coarse.device):
        kernels.expand_kernel[(programs,)](
            coarse, band if band is not None else out, out,
            nh, nw, mh, mw, col_blocks, row_blocks,
            W0=taps[0], W1=taps[1], W2=taps[2], BW=tile.cols, RB=tile.rows,
            FOLD_ONCE=nh >= 8, HAS_BAND=band is not None, num_warps=tile.warps,
        )  # fmt: skip
    return out


def separable_gather(
    src: Tensor,
    rows: GatherTable,
    cols: GatherTable,
    add: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """``add + scale * (rows (x) cols) src``: apply two one-axis sparse matrices to every plane.

    Shapes:
        src: ``(Z, rows.n_in, cols.n_in)``, add: ``(Z, rows.n_out, cols.n_out)`` -> like add
    """
    planes = src.shape[0]
    out = _alloc((planes, rows.n_out, cols.n_out), dtype=src.dtype, device=src.device)
    if planes == 0 or out.numel() == 0:
        return out
    block_h, block_c = 8, min(64, _next_pow2(cols.n_out))
    col_blocks = -(-cols.n_out // block_c)
    row_blocks = -(-rows.n_out // block_h)
    from pyrtok.pyramid.triton import kernels  # imports Triton

    with _on_device(src.device):
        kernels.separable_gather_kernel[(planes * col_blocks * row_blocks,)](
            src, add if add is not None else out, out,
            rows.index, rows.weight, cols.index, cols.weight,
            rows.n_in, cols.n_in, rows.n_out, cols.n_out, col_blocks, row_blocks, float(scale),
            A=rows.width, B=cols.width, BH=block_h, BC=block_c, HAS_ADD=add is not None,
            num_warps=4,
        )  # fmt: skip
    return out
