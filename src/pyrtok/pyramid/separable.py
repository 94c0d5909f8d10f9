"""One-axis REDUCE and EXPAND: the polyphase stencils every pyramid op is built from.

Both work along any ``dim`` of a tensor of any rank, never build a zero-stuffed full-size
intermediate and never convolve in 2-D: a 5-tap kernel costs 5 multiply-adds per output sample
and axis. They are linear, so autograd differentiates them as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor

from pyrtok.pyramid.borders import border_index, pad_axis
from pyrtok.pyramid.kernels import Taps, kernel_length


def _every_other(x: Tensor, dim: int, start: int, count: int) -> Tensor:
    """``count`` samples of ``x`` along ``dim``: ``start, start + 2, ...`` (a view)."""
    index: list[slice] = [slice(None)] * x.ndim
    index[dim] = slice(start, start + 2 * count - 1, 2)
    return x[tuple(index)]


def _consecutive(x: Tensor, dim: int, start: int, count: int) -> Tensor:
    return x.narrow(dim, start, count)


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
    dim = dim % x.ndim
    radius = kernel_length(taps) // 2
    count = (x.shape[dim] + 1) // 2
    padded = pad_axis(x, dim, radius, radius, border)
    out = _every_other(padded, dim, 0, count) * taps[0]
    for k in range(1, kernel_length(taps)):
        out = out + _every_other(padded, dim, k, count) * taps[k]
    return out


def expand_axis(x: Tensor, dim: int, size: int, taps: Taps, border: str) -> Tensor:
    """Zero-insert along ``dim`` to ``size`` samples and filter with ``2 * taps`` (EXPAND).

    Computed polyphase: output ``2j`` takes the taps at even offsets, output ``2j + 1`` the taps
    at odd offsets, so the zeros are never materialised. Samples beyond the edge come from the
    border rule applied on the fine grid for ``reflect`` (OpenCV's ``pyrUp``) and on the coarse
    samples for ``replicate``/``circular``; ``constant`` reads zeros.

    Shapes:
        x: ``(..., ceil(size / 2), ...)`` -> ``(..., size, ...)``

    Examples:
        >>> import torch
        >>> expand_axis(torch.tensor([0.0, 8.0]), 0, 4, (0.25, 0.5, 0.25), "reflect")
        tensor([0., 4., 8., 8.])
    """
    dim = dim % x.ndim
    length = kernel_length(taps)
    radius = length // 2
    coarse = x.shape[dim]
    # Output 2j + phase reads coarse sample j + (k - radius + phase) // 2 for taps k whose
    # offset k - radius + phase is even. Both phases produce `coarse` samples; the odd phase's
    # last one is dropped when `size` is odd.
    phases = [
        [(k, (k - radius + phase) // 2) for k in range(length) if (k - radius + phase) % 2 == 0]
        for phase in (0, 1)
    ]
    offsets = [offset for phase in phases for _, offset in phase]
    before, after = max(0, -min(offsets)), max(0, max(offsets))
    extended = _extend_coarse(x, dim, before, after, size, border)
    outputs = []
    for phase in phases:
        (k0, offset0), *rest = phase
        out = _consecutive(extended, dim, before + offset0, coarse) * (2 * taps[k0])
        for k, offset in rest:
            out = out + _consecutive(extended, dim, before + offset, coarse) * (2 * taps[k])
        outputs.append(out)
    return torch.stack(outputs, dim=dim + 1).flatten(dim, dim + 1).narrow(dim, 0, size)


def _extend_coarse(x: Tensor, dim: int, before: int, after: int, size: int, border: str) -> Tensor:
    """Coarse samples ``-before .. n + after - 1`` along ``dim`` (borders: :func:`expand_axis`)."""
    if border != "reflect":
        return pad_axis(x, dim, before, after, border)
    coarse = x.shape[dim]
    position = torch.arange(-before, coarse + after, device=x.device)
    return x.index_select(dim, border_index(2 * position, size, "reflect") // 2)
