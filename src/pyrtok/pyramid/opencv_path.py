"""Optional OpenCV forward path for CPU pyramids: ``cv2.pyrDown`` / ``cv2.pyrUp`` per plane.

With the default kernel (``binom5``) and border (``reflect``, OpenCV's BORDER_DEFAULT), pyrtok's
REDUCE is ``cv2.pyrDown`` for every size and its EXPAND to ``(2h, 2w)`` is ``cv2.pyrUp`` (an
odd output size is not: OpenCV reflects its last row differently, so those stay on the torch
path). OpenCV computes them row by row in one pass over each plane, which pure torch cannot, so
when ``cv2`` (``opencv-python-headless``, the ``cpu`` extra) imports, the pyramid functions use
it for float32/float64 CPU tensors whenever :func:`usable` says so. Everything else (other
kernels or borders, tensor taps, half precision, other devices, ``torch.compile`` tracing) runs
the torch path, the reference.

Autograd: the forward runs OpenCV; the backward is the torch path's transposed operator
(:func:`.separable.adjoint_axis`), itself differentiable, so gradients equal the torch path's.

Threads: OpenCV does not split one ``pyrDown`` / ``pyrUp`` of a plane this size over threads
(measured: 240 planes of 512 x 512 take the same time with ``cv2.setNumThreads(1)`` and ``(2)``),
so pyrtok splits the *planes* over ``torch.get_num_threads()`` threads (OpenCV releases the GIL;
2 threads measured 1.95x faster). That is 1 in a DataLoader worker (torch sets it), so workers
run serially with no extra threads. Each thread takes a contiguous share of the planes, so the
result is identical for any thread count. Set ``PYRTOK_DISABLE_OPENCV=1`` (read on every call)
to force the torch path.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from pyrtok.pyramid.kernels import Taps, resolve_kernel
from pyrtok.pyramid.separable import adjoint_axis

DISABLE_ENV = "PYRTOK_DISABLE_OPENCV"
"""Set this environment variable to ``"1"`` to never use OpenCV (the torch path everywhere)."""

_BINOM5 = resolve_kernel("binom5")
_DTYPES = (torch.float32, torch.float64)


@functools.cache
def cv2_module() -> ModuleType | None:
    """``cv2`` if it imports (checked once per process), else ``None``."""
    try:
        import cv2
    except ImportError:
        return None
    return cv2


def disabled() -> bool:
    """Whether ``PYRTOK_DISABLE_OPENCV=1`` forces the torch path (read on every call)."""
    return os.environ.get(DISABLE_ENV, "0") == "1"


def usable(
    x: Tensor,
    taps: Taps,
    border: str,
    size: tuple[int, int] | None = None,
    base: Tensor | None = None,
) -> bool:
    """Whether OpenCV computes exactly the requested operator on ``x`` now.

    ``size`` is the output size of an EXPAND (``None`` for a REDUCE); OpenCV's ``pyrUp`` equals
    pyrtok's only for ``(2h, 2w)``. ``base``, added to an EXPAND, must have its shape and the
    dtype of ``x``.

    Examples:
        >>> usable(torch.rand(3, 8, 8, dtype=torch.float16), _BINOM5, "reflect")
        False
    """
    if torch.compiler.is_compiling() or disabled():
        return False
    if x.device.type != "cpu" or x.dtype not in _DTYPES or x.is_complex():
        return False
    if isinstance(taps, Tensor) or taps != _BINOM5 or border != "reflect":
        return False
    if size is not None:
        if size != (2 * x.shape[-2], 2 * x.shape[-1]):
            return False
        if base is not None and (base.dtype != x.dtype or base.shape != (*x.shape[:-2], *size)):
            return False
    return cv2_module() is not None


PARALLEL_VALUES = 1 << 18
"""Planes are split over threads only when the input holds at least this many values (below,
a thread hand-off costs more than the work it moves)."""


@functools.cache
def _pool(pid: int, workers: int) -> ThreadPoolExecutor:
    """The thread pool of this process (``pid``: a forked child builds its own)."""
    return ThreadPoolExecutor(workers, thread_name_prefix="pyrtok-opencv")


def _shares(planes: int, values: int, threads: int) -> list[range]:
    """Contiguous ranges of ``planes``, one per thread of ``threads`` (one range when the input
    holds fewer than ``PARALLEL_VALUES`` values or there is one thread).

    Examples:
        >>> _shares(5, 1 << 20, threads=2), _shares(5, 100, threads=2)
        ([range(0, 2), range(2, 5)], [range(0, 5)])
    """
    workers = min(threads, planes)
    if workers <= 1 or values < PARALLEL_VALUES:
        return [range(planes)]
    bounds = [planes * i // workers for i in range(workers + 1)]
    return [range(lo, hi) for lo, hi in itertools.pairwise(bounds)]


def _over_threads(run: Callable[[range], None], planes: int, values: int) -> None:
    """``run`` over contiguous shares of ``planes`` (:func:`_shares`), on the pool's threads
    when there is more than one share, else on the calling thread."""
    shares = _shares(planes, values, torch.get_num_threads())
    if len(shares) == 1:
        run(shares[0])
    else:
        list(_pool(os.getpid(), len(shares)).map(run, shares))


def _planes(x: Tensor) -> np.ndarray:
    """``x`` as a contiguous ``(N, H, W)`` array (a view where ``x`` is contiguous)."""
    planes = x.detach().resolve_conj().resolve_neg()  # no-ops unless a lazy view
    return planes.reshape(-1, x.shape[-2], x.shape[-1]).contiguous().numpy()


def _per_plane(
    x: Tensor, size: tuple[int, int], up: bool, base: Tensor | None, scale: float
) -> Tensor:
    """``cv2.pyrDown`` (or ``base + scale * pyrUp`` to ``size``) of every plane of ``x``, the
    planes split over ``torch.get_num_threads()`` threads (:func:`_shares`).

    The output is a numpy array (writing into it measured 1.6x faster than into a fresh torch
    tensor of 24 x 512 x 512: fewer page faults); ``base`` is added to each plane while it is
    still in cache.
    """
    cv2: Any = cv2_module()
    source = _planes(x)
    target = np.empty((source.shape[0], *size), dtype=source.dtype)
    bases = None if base is None else _planes(base)

    def run(planes: range) -> None:
        for i in planes:
            if up:
                cv2.pyrUp(source[i], dst=target[i], dstsize=(size[1], size[0]))
                if bases is not None:
                    cv2.scaleAdd(target[i], scale, bases[i], dst=target[i])
            else:
                cv2.pyrDown(source[i], dst=target[i])

    _over_threads(run, source.shape[0], source.size + target.size)
    return torch.from_numpy(target).view(*x.shape[:-2], *size)


class _OpenCVPyramid(torch.autograd.Function):
    """Forward with OpenCV; backward with the torch path's transposed operator."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        base: Tensor | None,
        up: bool,
        size: tuple[int, int],
        scale: float,
    ) -> Tensor:
        ctx.spec = (up, (x.shape[-2], x.shape[-1]), size, scale)  # type: ignore[attr-defined]
        ctx.has_base = base is not None  # type: ignore[attr-defined]
        return _per_plane(x, size, up, base, scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        up, (h, w), (height, width), scale = ctx.spec
        grad_base = grad if ctx.has_base else None
        if up:  # the adjoint of EXPAND to (height, width), per axis
            rows = adjoint_axis(grad, -2, "expand", height, _BINOM5, "reflect", scale)
            grad_x = adjoint_axis(rows, -1, "expand", width, _BINOM5, "reflect")
        else:
            rows = adjoint_axis(grad, -1, "reduce", w, _BINOM5, "reflect")
            grad_x = adjoint_axis(rows, -2, "reduce", h, _BINOM5, "reflect")
        return grad_x, grad_base, None, None, None


def pyr_down(x: Tensor) -> Tensor:
    """``cv2.pyrDown`` of every plane: ``(..., H, W) -> (..., ceil(H / 2), ceil(W / 2))``.

    Only where :func:`usable` holds (the caller checks).

    Examples:
        >>> x = torch.rand(2, 3, 7, 10)
        >>> pyr_down(x).shape if cv2_module() else torch.Size([2, 3, 4, 5])
        torch.Size([2, 3, 4, 5])
    """
    size = ((x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)
    out: Tensor = _OpenCVPyramid.apply(x, None, False, size, 1.0)
    return out


def pyr_up(x: Tensor, base: Tensor | None = None, scale: float = 1.0) -> Tensor:
    """``cv2.pyrUp`` of every plane: ``(..., h, w) -> (..., 2h, 2w)``; with ``base``
    (``(..., 2h, 2w)``), ``base + scale * pyrUp(x)`` (a Laplacian band or reconstruction step).

    Only where :func:`usable` holds (the caller checks).

    Examples:
        >>> x = torch.rand(2, 3, 4, 5)
        >>> pyr_up(x).shape if cv2_module() else torch.Size([2, 3, 8, 10])
        torch.Size([2, 3, 8, 10])
    """
    size = (2 * x.shape[-2], 2 * x.shape[-1])
    out: Tensor = _OpenCVPyramid.apply(x, base, True, size, scale)
    return out


def laplacian_energy(
    x: Tensor, levels: int, patch_size: int, keep_pyramid: bool = True
) -> tuple[list[Tensor], Tensor]:
    """The Laplacian pyramid of ``x`` (``levels >= 2`` entries, as
    :func:`~pyrtok.laplacian_pyramid`) and its band energy per ``patch_size`` patch, one plane
    at a time: each band is block-summed while it is still in cache, so the bands are written
    once and never read again (the torch path squares and sums them in further passes); without
    ``keep_pyramid`` they are not written at all (per-thread scratch planes; the pyramid
    returned is ``[]``).

    Only where :func:`usable` holds, ``x`` is ``(..., C, H, W)`` with ``H`` and ``W`` multiples
    of ``patch_size``, and ``patch_size`` a multiple of ``2**(levels - 1)`` (every EXPAND
    doubles, every coefficient lies in one patch); forward only (the caller checks). The bands
    are the OpenCV path's, bit for bit; the energies sum in another order than
    :func:`~pyrtok.band_energy`'s (float rounding apart, equal).

    Returns:
        The pyramid and the ``(..., levels, H / patch_size, W / patch_size)`` energy, summed over
        ``C``, in the dtype of ``x``.

    Examples:
        >>> from pyrtok import band_energy, laplacian_pyramid
        >>> x = torch.rand(2, 3, 32, 48, dtype=torch.float64)
        >>> bands, energy = laplacian_energy(x, 3, 16) if cv2_module() else (None, None)
        >>> energy is None or bool(torch.allclose(energy, band_energy(bands, 16)))
        True
    """
    cv2: Any = cv2_module()
    source = _planes(x)
    planes, height, width = source.shape
    sizes = [(height >> k, width >> k) for k in range(levels)]
    bands = [np.empty((planes, *size), dtype=source.dtype) for size in sizes if keep_pyramid]
    rows, cols = height // patch_size, width // patch_size
    energy = np.empty((planes, levels, rows, cols), dtype=source.dtype)

    def run(share: range) -> None:
        def scratch(shapes: list[tuple[int, int]]) -> list[np.ndarray]:
            return [np.empty(shape, dtype=source.dtype) for shape in shapes]

        squares, gaussians, details = scratch(sizes), scratch(sizes[1:]), scratch(sizes[:-1])
        for i in share:
            # where L_0 .. L_{levels-2} and G_{levels-1} of this plane go
            out = [band[i] for band in bands] if keep_pyramid else [*details, gaussians[-1]]
            fine = source[i]
            for k, (h, w) in enumerate(sizes):
                if k < levels - 1:  # L_k = G_k - pyrUp(G_{k+1}); the last band is G_{L-1}
                    coarse = gaussians[k] if k < levels - 2 else out[-1]
                    cv2.pyrDown(fine, dst=coarse)
                    cv2.pyrUp(coarse, dst=out[k], dstsize=(w, h))
                    cv2.subtract(fine, out[k], dst=out[k])
                    fine = coarse
                # the mean of the squares per patch (an integer area shrink, OpenCV's fast path;
                # 1.3x faster than numpy's multiply and two block sums on 2 threads)
                cv2.multiply(out[k], out[k], dst=squares[k])
                cv2.resize(squares[k], (cols, rows), dst=energy[i, k], interpolation=cv2.INTER_AREA)

    _over_threads(run, planes, source.size)
    lead = x.shape[:-2]
    pyramid = [torch.from_numpy(band).view(*lead, *band.shape[1:]) for band in bands]
    per_plane = torch.from_numpy(energy).view(*lead, levels, rows, cols)
    # means to sums: patch areas are powers of two, so the scaling is exact
    areas = per_plane.new_tensor([(patch_size >> k) ** 2 for k in range(levels)])
    return pyramid, per_plane.sum(dim=-4) * areas[:, None, None]
