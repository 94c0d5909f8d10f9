"""``torch.autograd.Function`` wrappers: fused kernels forward, exact adjoint kernels backward.

Every pyramid op is linear, so its backward is the transposed operator: REDUCE's adjoint is an
EXPAND-like scatter and EXPAND's a REDUCE-like gather, with the reflect-101 border folds
transposed too. Backward passes apply the adjoint one-axis matrices from :mod:`.tables` with
:class:`SeparableLinear`, itself a differentiable Function (its backward is the forward matrix),
so double backward works as well.

All tensors here are ``(Z, H, W)`` planes; :mod:`.dispatch` reshapes to and from ``(..., H, W)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from pyrtok.pyramid.triton import launch
from pyrtok.pyramid.triton.launch import EnergySpec
from pyrtok.pyramid.triton.tables import AxisOperator, axis_operator
from pyrtok.pyramid.triton.taps import SymTaps


def _full_taps(taps: SymTaps) -> tuple[float, ...]:
    w0, w1, w2 = taps
    return (w0, w1, w2, w1, w0)


def _operators(
    kind: str, size: tuple[int, int], taps: SymTaps, device: torch.device
) -> tuple[AxisOperator, AxisOperator]:
    """Row and column operators of a REDUCE/EXPAND between a ``size`` level and its coarse one."""
    full = _full_taps(taps)
    return (
        axis_operator(kind, size[0], full, "reflect", device),
        axis_operator(kind, size[1], full, "reflect", device),
    )


def _transpose(op: AxisOperator) -> AxisOperator:
    return AxisOperator(forward=op.adjoint, adjoint=op.forward)


class SeparableLinear(torch.autograd.Function):
    """``out = add + scale * (rows (x) cols) src`` on ``(Z, H, W)`` planes, differentiable."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        src: Tensor,
        add: Tensor | None,
        rows: AxisOperator,
        cols: AxisOperator,
        scale: float,
    ) -> Tensor:
        ctx.operators = (rows, cols, scale)  # type: ignore[attr-defined]
        ctx.has_add = add is not None  # type: ignore[attr-defined]
        return launch.separable_gather(
            src.contiguous(),
            rows.forward,
            cols.forward,
            None if add is None else add.contiguous(),
            scale,
        )

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, cols, scale = ctx.operators
        grad_src = adjoint(grad, rows, cols, scale)
        return grad_src, (grad if ctx.has_add else None), None, None, None


def apply_operator(
    src: Tensor,
    rows: AxisOperator,
    cols: AxisOperator,
    add: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """``add + scale * (rows (x) cols) src`` (differentiable)."""
    out: Tensor = SeparableLinear.apply(src, add, rows, cols, scale)
    return out


def adjoint(
    src: Tensor,
    rows: AxisOperator,
    cols: AxisOperator,
    scale: float = 1.0,
    add: Tensor | None = None,
) -> Tensor:
    """``add + scale * (rows (x) cols)^T src`` (differentiable)."""
    return apply_operator(src, _transpose(rows), _transpose(cols), add, scale)


@dataclass(frozen=True)
class EnergyRequest:
    """Patch energies to accumulate during a build: ``channels`` planes per image, patch side."""

    channels: int
    patch: int

    def in_kernel(self, level: int) -> bool:
        """Whether the kernels accumulate ``level``'s energy (each coefficient in one patch)."""
        return self.patch % (1 << level) == 0


class LaplacianBuild(torch.autograd.Function):
    """Fused Laplacian pyramid of ``(Z, H, W)`` planes: ``count`` outputs (+ energy)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, x: Tensor, count: int, taps: SymTaps, request: EnergyRequest | None
    ) -> tuple[Tensor, ...]:
        planes, height, width = x.shape
        energy: Tensor | None = None
        if request is not None:
            rows, cols = -(-height // request.patch), -(-width // request.patch)
            energy = torch.zeros(
                (planes // request.channels, count, rows, cols),
                dtype=torch.float32,
                device=x.device,
            )
        outputs: list[Tensor] = []
        g = x
        for k in range(count - 1):
            spec = None
            if energy is not None and request is not None:
                last = k == count - 2
                spec = EnergySpec(
                    energy=energy,
                    channels=request.channels,
                    patch=request.patch,
                    fine_level=k if request.in_kernel(k) else None,
                    coarse_level=k + 1 if last and request.in_kernel(k + 1) else None,
                )
            band, g = launch.level_step(g, taps, True, spec)
            assert band is not None
            outputs.append(band)
        outputs.append(g)
        ctx.count = count  # type: ignore[attr-defined]
        ctx.taps = taps  # type: ignore[attr-defined]
        ctx.request = request  # type: ignore[attr-defined]
        ctx.sizes = [tuple(o.shape[-2:]) for o in outputs]  # type: ignore[attr-defined]
        ctx.device = x.device  # type: ignore[attr-defined]
        ctx.set_materialize_grads(False)
        if energy is not None:
            ctx.save_for_backward(*outputs)
            return (*outputs, energy)
        return tuple(outputs)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        count: int = ctx.count
        level_grads = list(grads[:count])
        request: EnergyRequest | None = ctx.request
        grad_energy = grads[count] if request is not None else None
        if request is not None and grad_energy is not None:
            _add_energy_grads(level_grads, ctx.saved_tensors, grad_energy, request)
        grad_g = level_grads[-1]
        for k in reversed(range(count - 1)):
            grad_band = level_grads[k]
            if grad_band is None and grad_g is None:
                continue
            size = ctx.sizes[k]
            reduce_rows, reduce_cols = _operators("reduce", size, ctx.taps, ctx.device)
            # band_k = g_k - U D g_k and g_{k+1} = D g_k, so
            # grad g_k = grad band_k + D^T (grad g_{k+1} - U^T grad band_k).
            inner = grad_g
            if grad_band is not None:
                expand_rows, expand_cols = _operators("expand", size, ctx.taps, ctx.device)
                inner = adjoint(grad_band, expand_rows, expand_cols, -1.0, add=grad_g)
            assert inner is not None
            grad_g = adjoint(inner, reduce_rows, reduce_cols, 1.0, add=grad_band)
        return grad_g, None, None, None


def _add_energy_grads(
    level_grads: list[Tensor | None],
    levels: tuple[Tensor, ...],
    grad_energy: Tensor,
    request: EnergyRequest,
) -> None:
    """Add d(energy)/d(level) for the levels whose energy the kernels accumulated.

    A coefficient of level ``k`` lies in one patch, ``(r // g, c // g)`` with ``g = patch / 2**k``,
    and adds its square there: its gradient is ``2 * value * grad_energy[patch]``.
    """
    for k, level in enumerate(levels):
        if not request.in_kernel(k):
            continue
        group = request.patch >> k
        height, width = level.shape[-2], level.shape[-1]
        rows = torch.arange(height, device=level.device) // group
        cols = torch.arange(width, device=level.device) // group
        per_patch = grad_energy[:, k].index_select(-2, rows).index_select(-1, cols)
        per_plane = per_patch.repeat_interleave(request.channels, dim=0)
        contribution = (2 * level.float() * per_plane).to(level.dtype)
        previous = level_grads[k]
        level_grads[k] = contribution if previous is None else previous + contribution


class Reconstruct(torch.autograd.Function):
    """Fused reconstruction of ``(Z, H, W)`` pyramid levels: ``G_k = L_k + EXPAND(G_{k+1})``."""

    @staticmethod
    def forward(ctx: FunctionCtx, taps: SymTaps, *levels: Tensor) -> Tensor:
        image = levels[-1]
        for band in reversed(levels[:-1]):
            image = launch.expand(image, (band.shape[-2], band.shape[-1]), taps, band)
        ctx.taps = taps  # type: ignore[attr-defined]
        ctx.sizes = [tuple(level.shape[-2:]) for level in levels]  # type: ignore[attr-defined]
        return image

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grads: list[Tensor | None] = [None]
        for size in ctx.sizes[:-1]:
            grads.append(grad)
            rows, cols = _operators("expand", size, ctx.taps, grad.device)
            grad = adjoint(grad, rows, cols)
        grads.append(grad)
        return tuple(grads)


class PyrDown(torch.autograd.Function):
    """Fused REDUCE of ``(Z, H, W)`` planes; backward is its adjoint."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, taps: SymTaps) -> Tensor:
        ctx.taps = taps  # type: ignore[attr-defined]
        ctx.size = (x.shape[-2], x.shape[-1])  # type: ignore[attr-defined]
        return launch.level_step(x, taps, write_band=False)[1]

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, cols = _operators("reduce", ctx.size, ctx.taps, grad.device)
        return adjoint(grad, rows, cols), None


class PyrUp(torch.autograd.Function):
    """Fused EXPAND of ``(Z, h, w)`` planes to ``size``; backward is its adjoint."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: Tensor, size: tuple[int, int], taps: SymTaps) -> Tensor:
        ctx.taps = taps  # type: ignore[attr-defined]
        ctx.size = size  # type: ignore[attr-defined]
        return launch.expand(x, size, taps)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        rows, cols = _operators("expand", ctx.size, ctx.taps, grad.device)
        return adjoint(grad, rows, cols), None, None
