"""One-axis REDUCE and EXPAND: the polyphase operators every pyramid op is built from.

Both work along any ``dim`` of a tensor of any rank and never build a zero-stuffed or padded
copy of the input. The interior is one batched matrix product of a small ``(B, K)`` block
matrix with overlapping windows of the input (``unfold`` views, no copy; see
:mod:`.axis_plan`), written straight into the output; the few outputs at each edge come from a
small dense matrix applied to the samples they read. Along the rows of a contiguous batch of
planes the windows run across all planes at once (one product per call, whatever the batch),
the rows at the plane seams being rewritten by the edge matrices. This is pure torch (no
compiled extension, nothing to build at install); see the pyramids guide, "Speed on the CPU",
for how it compares with OpenCV. The backward pass applies the transposed operator, planned the
same way (:data:`.axis_plan.ADJOINT`), so it costs about what the forward does; ``torch.compile``
traces both.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx

from pyrtok.pyramid.axis_plan import ADJOINT, AxisPlan, EdgeRows, Entry, axis_plan
from pyrtok.pyramid.kernels import Taps, kernel_length

_BLOCKS = {("reduce", False): 1, ("reduce", True): 16, ("expand", False): 8, ("expand", True): 16}
"""Periods per interior block, by (operator family, along the last dim). Along the rows each
block is a ``(B, K) @ (K, W)`` product over whole rows: one output row per 5-row window for
REDUCE, 16 rows per 10-row window for EXPAND. Along the last dim a block is ``(R, K) @ (K, B)``:
16 outputs per 35 samples (REDUCE), 32 per 18 (EXPAND). Chosen by timing against OpenCV on one
thread (24 planes of 512 x 512). An adjoint has the period of the other family (REDUCE's
transpose upsamples)."""

_FAMILY = {
    "reduce": "reduce",
    "expand_adjoint": "reduce",
    "expand": "expand",
    "reduce_adjoint": "expand",
}


def _layout(owner: AxisPlan | EdgeRows) -> tuple[tuple[Entry, ...], tuple[int, int]]:
    """Entries and matrix shape of a plan's interior block or of an edge."""
    if isinstance(owner, AxisPlan):
        return owner.template, (owner.block, owner.window)
    return owner.entries, (len(owner.rows), len(owner.cols))


def _values(owner: AxisPlan | EdgeRows, taps: tuple[float, ...], scale: float) -> list[float]:
    entries, _ = _layout(owner)
    return [scale * sum(factor * taps[tap] for tap, factor in entry) for entry in entries]


def _coefficients(owner: AxisPlan | EdgeRows, taps: int) -> Tensor:
    """``(rows * cols, taps)`` float64 factors: the matrix is this times the taps."""
    entries, _ = _layout(owner)
    coefficients = torch.zeros(len(entries), taps, dtype=torch.float64)
    for i, entry in enumerate(entries):
        for tap, factor in entry:
            coefficients[i, tap] += factor
    return coefficients


# The cached tensors outlive the call that builds them: built outside inference mode, so a first
# call under ``torch.inference_mode()`` does not leave tensors that autograd may not save later.
@functools.lru_cache(maxsize=1024)
@torch.inference_mode(False)
def _cached_coefficients(
    owner: AxisPlan | EdgeRows, taps: int, dtype: torch.dtype, device: torch.device
) -> Tensor:
    return _coefficients(owner, taps).to(device, dtype)


@functools.lru_cache(maxsize=1024)
@torch.inference_mode(False)
def _cached_matrix(
    owner: AxisPlan | EdgeRows,
    taps: tuple[float, ...],
    scale: float,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    _, shape = _layout(owner)
    return torch.tensor(_values(owner, taps, scale), dtype=dtype, device=device).view(shape)


def _matrix(owner: AxisPlan | EdgeRows, taps: Taps, scale: float, like: Tensor) -> Tensor:
    """The block or edge matrix of ``owner`` for ``taps`` times ``scale``, dtype of ``like``.

    Named kernels (float taps) give constant matrices, cached per plan (plans compare by
    identity), dtype and device, so a call copies nothing from the host; tensor taps multiply
    cached factors on their device (differentiable in the taps). Under ``torch.compile`` the
    matrices are built in the graph as constants.
    """
    _, shape = _layout(owner)
    compiling = torch.compiler.is_compiling()
    if isinstance(taps, Tensor):
        length = kernel_length(taps)
        if compiling:
            factors = _coefficients(owner, length).to(like.device, like.dtype)
        else:
            factors = _cached_coefficients(owner, length, like.dtype, like.device)
        return (factors @ (scale * taps.to(like.dtype))).view(shape)
    if compiling:
        values = _values(owner, taps, scale)
        return torch.tensor(values, dtype=like.dtype, device=like.device).view(shape)
    return _cached_matrix(owner, taps, scale, like.dtype, like.device)


@functools.lru_cache(maxsize=256)
@torch.inference_mode(False)
def _cached_index(edge: EdgeRows, device: torch.device) -> Tensor:
    return torch.tensor(edge.cols, device=device)


def _apply_edge(
    x: Tensor, dim: int, edge: EdgeRows, taps: Taps, scale: float, out: Tensor, base: Tensor | None
) -> None:
    """Write ``out[edge.rows] = base[edge.rows] + scale * E @ x[edge.cols]`` along ``dim``."""
    if not edge.rows:
        return
    rows, cols = len(edge.rows), len(edge.cols)
    matrix = _matrix(edge, taps, scale, x)
    target = out.narrow(dim, edge.rows[0], rows)
    if cols == 0:
        values = torch.zeros_like(target)
    else:
        start = edge.cols[0]
        if edge.cols == tuple(range(start, start + cols)):  # a view: no gather
            samples = x.narrow(dim, start, cols).movedim(dim, -1)
        else:  # circular: the other end too
            if torch.compiler.is_compiling():
                index = torch.tensor(edge.cols, device=x.device)
            else:
                index = _cached_index(edge, x.device)
            samples = x.index_select(dim, index)
            samples = samples.movedim(dim, -1)
        values = torch.matmul(samples, matrix.t()).movedim(-1, dim)
    if base is not None:
        values = values + base.narrow(dim, edge.rows[0], rows)
    target.copy_(values)


def _tracked(*tensors: Tensor | None) -> bool:
    """Whether autograd or ``torch.compile`` follows these ops (``out=`` writes are then not
    allowed, so products are computed first and copied)."""
    if torch.compiler.is_compiling():
        return True
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _apply_rows(
    x: Tensor, plan: AxisPlan, matrix: Tensor, out: Tensor, base: Tensor | None, tracked: bool
) -> None:
    """Interior blocks along dim 1 of contiguous ``(Z, n_in, W)`` planes into ``(Z, n_out, W)``.

    When the planes' rows line up with the block grid (``n_in / S == n_out / B``, whole
    blocks), the windows run across all ``Z * n_in`` rows as one batch; the seam blocks this
    also computes are rewritten by the edge rows afterwards. Otherwise each plane is its own
    batch.
    """
    planes, width = x.shape[0], x.shape[-1]
    size, step, window = plan.block, plan.step, plan.window
    groups, blocks = planes, plan.blocks
    if plan.n_out % size == 0 and plan.n_in * size == plan.n_out * step:
        groups, blocks = 1, (planes - 1) * (plan.n_out // size) + plan.blocks
        x = x.reshape(1, planes * plan.n_in, width)
        out = out.view(1, planes * plan.n_out, width)
        base = None if base is None else base.reshape(1, planes * plan.n_out, width)
    span = step * (blocks - 1) + window
    windows = x.narrow(1, plan.in_start, span).unfold(1, window, step).transpose(-1, -2)
    targets = out.narrow(1, plan.out_start, size * blocks).view(groups, blocks, size, width)
    adds = None
    if base is not None:
        adds = base.narrow(1, plan.out_start, size * blocks).view(groups, blocks, size, width)
    matrix = matrix.expand(blocks, size, window)
    for g in range(groups):
        add = None if adds is None else adds[g]
        # bmm then add: baddbmm is several times slower on the CPU for these shapes.
        if tracked:
            values = torch.bmm(matrix, windows[g])
            targets[g].copy_(values if add is None else values + add)
        else:
            torch.bmm(matrix, windows[g], out=targets[g])
            if add is not None:
                targets[g].add_(add)


def _apply_cols(
    x: Tensor, plan: AxisPlan, matrix: Tensor, out: Tensor, base: Tensor | None, tracked: bool
) -> None:
    """Interior blocks along dim 1 of ``(R, n_in)`` rows into ``(R, n_out)``: block ``b`` is
    ``(R, K) @ (K, B)``, written in place through a strided view (as fast as a contiguous one)."""
    rows, blocks = x.shape[0], plan.blocks
    size, step, window = plan.block, plan.step, plan.window
    span = step * (blocks - 1) + window
    windows = x.narrow(1, plan.in_start, span).unfold(1, window, step).transpose(0, 1)
    matrix = matrix.t().expand(blocks, window, size)
    target = out.narrow(1, plan.out_start, size * blocks).view(rows, blocks, size).transpose(0, 1)
    add = None
    if base is not None:
        add = base.narrow(1, plan.out_start, size * blocks).view(rows, blocks, size).transpose(0, 1)
    if tracked:
        values = torch.bmm(windows, matrix)
        target.copy_(values if add is None else values + add)
    else:
        torch.bmm(windows, matrix, out=target)
        if add is not None:
            target.add_(add)


def _compute(
    x: Tensor,
    dim: int,
    kind: str,
    size: int,
    taps: Taps,
    border: str,
    base: Tensor | None,
    scale: float,
) -> Tensor:
    """``base + scale * op(x)`` along ``dim``, ``op`` the ``kind`` operator of fine length
    ``size`` (see :func:`.axis_plan.axis_plan`); every other dim is batch."""
    dim = dim % x.ndim
    last = dim == x.ndim - 1
    planner = axis_plan.__wrapped__ if torch.compiler.is_compiling() else axis_plan
    plan = planner(kind, size, kernel_length(taps), border, _BLOCKS[_FAMILY[kind], last])
    # Canonical layout: (R, n) rows for the last dim, (Z, n, W) planes otherwise.
    inner = math.prod(x.shape[dim + 1 :])
    work = x.reshape(math.prod(x.shape[:dim]), plan.n_in, inner).contiguous()
    out = work.new_empty(work.shape[0], plan.n_out, inner)
    if last:
        work, out = work.squeeze(-1), out.squeeze(-1)
    shape = list(x.shape)
    shape[dim] = plan.n_out
    if out.numel() == 0:  # an empty batch
        return out.view(shape) if base is None else base.reshape(shape).clone()
    shaped_base = None if base is None else base.reshape(out.shape)
    tracked = _tracked(x, base, taps if isinstance(taps, Tensor) else None)
    if plan.blocks > 0:
        matrix = _matrix(plan, taps, scale, work)
        if last:
            _apply_cols(work, plan, matrix, out, shaped_base, tracked)
        else:
            _apply_rows(work, plan, matrix, out, shaped_base, tracked)
    for edge in (plan.low, plan.high):
        _apply_edge(work, 1, edge, taps, scale, out, shaped_base)
    return out.view(shape)


class _AxisOperator(torch.autograd.Function):
    """``base + scale * op(x)`` with the transposed operator as its backward (itself this
    Function, so double backward works too). Autograd through the batched products would
    instead materialise the gradient of every overlapping window (several times the input)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        x: Tensor,
        base: Tensor | None,
        dim: int,
        kind: str,
        size: int,
        taps: Taps,
        border: str,
        scale: float,
    ) -> Tensor:
        ctx.spec = (dim, kind, size, taps, border, scale)  # type: ignore[attr-defined]
        ctx.has_base = base is not None  # type: ignore[attr-defined]
        return _compute(x, dim, kind, size, taps, border, base, scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        dim, kind, size, taps, border, scale = ctx.spec
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _apply(grad, dim, ADJOINT[kind], size, taps, border, None, scale)
        grad_base = grad if ctx.has_base else None
        return grad_x, grad_base, None, None, None, None, None, None


def _apply(
    x: Tensor,
    dim: int,
    kind: str,
    size: int,
    taps: Taps,
    border: str,
    base: Tensor | None,
    scale: float,
) -> Tensor:
    """:func:`_compute` under autograd: through :class:`_AxisOperator`, except for taps that
    require grad (then autograd follows the products themselves)."""
    if isinstance(taps, Tensor) and taps.requires_grad and torch.is_grad_enabled():
        return _compute(x, dim, kind, size, taps, border, base, scale)
    out: Tensor = _AxisOperator.apply(x, base, dim, kind, size, taps, border, scale)
    return out


def reduce_axis(x: Tensor, dim: int, taps: Taps, border: str) -> Tensor:
    """Filter along ``dim`` with ``taps`` and keep the even samples (Burt-Adelson REDUCE).

    Shapes:
        x: ``(..., n, ...)`` -> ``(..., ceil(n / 2), ...)``

    Examples:
        >>> import torch
        >>> reduce_axis(torch.ones(2, 5), -1, (0.25, 0.5, 0.25), "reflect")
        tensor([[1., 1., 1.],
                [1., 1., 1.]])
    """
    return _apply(x, dim, "reduce", x.shape[dim], taps, border, None, 1.0)


def expand_axis(
    x: Tensor,
    dim: int,
    size: int,
    taps: Taps,
    border: str,
    base: Tensor | None = None,
    scale: float = 1.0,
) -> Tensor:
    """Zero-insert along ``dim`` to ``size`` samples and filter with ``2 * taps`` (EXPAND).

    With ``base`` (``size`` samples along ``dim``) the result is ``base + scale * EXPAND(x)``,
    computed in the same pass: a Laplacian band (``scale=-1``) or a reconstruction step
    (``scale=1``) costs no separate subtraction or addition.

    Samples beyond the edge come from the border rule applied on the fine grid for ``reflect``
    (OpenCV's ``pyrUp``) and on the coarse samples for ``replicate``/``circular``; ``constant``
    reads zeros.

    Shapes:
        x: ``(..., ceil(size / 2), ...)`` -> ``(..., size, ...)``

    Examples:
        >>> import torch
        >>> expand_axis(torch.tensor([0.0, 8.0]), 0, 4, (0.25, 0.5, 0.25), "reflect")
        tensor([0., 4., 8., 8.])
    """
    return _apply(x, dim, "expand", size, taps, border, base, scale)


def adjoint_axis(
    grad: Tensor, dim: int, kind: str, size: int, taps: Taps, border: str, scale: float = 1.0
) -> Tensor:
    """The transpose of :func:`reduce_axis` (``kind="reduce"``) or :func:`expand_axis`
    (``"expand"``) along ``dim``, ``size`` the fine length: the backward of either, for a
    forward computed elsewhere (OpenCV). Differentiable (double backward works).

    Shapes:
        reduce: ``(..., ceil(size / 2), ...)`` -> ``(..., size, ...)``;
        expand: ``(..., size, ...)`` -> ``(..., ceil(size / 2), ...)``

    Examples:
        >>> import torch
        >>> adjoint_axis(torch.ones(1, 3), -1, "reduce", 5, (0.25, 0.5, 0.25), "reflect")
        tensor([[0.5000, 0.7500, 0.5000, 0.7500, 0.5000]])
    """
    return _apply(grad, dim, ADJOINT[kind], size, taps, border, None, scale)
