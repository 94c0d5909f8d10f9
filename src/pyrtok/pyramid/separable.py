"""One-axis REDUCE and EXPAND: the polyphase stencils every pyramid op is built from.

Both work along any ``dim`` of a tensor of any rank, never build a zero-stuffed full-size
intermediate and never convolve in 2-D: a 5-tap kernel costs 5 multiply-adds per output sample
and axis. Outputs whose taps all fall inside the signal read it in place (strided views, no
padded copy); only the few outputs at each edge gather border samples. They are linear, so
autograd differentiates them as they are.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from pyrtok.pyramid.borders import border_index
from pyrtok.pyramid.kernels import Taps, kernel_length

SourceIndex = Callable[[Tensor], Tensor]
"""Maps signal positions (possibly outside ``[0, n)``) to sample indices, ``-1`` for a zero."""

Terms = list[tuple[int, float | Tensor]]
"""``(offset, weight)`` pairs: output ``j`` is ``sum weight * signal[stride * j + offset]``."""


def _strided(x: Tensor, dim: int, start: int, count: int, stride: int) -> Tensor:
    """``count`` samples of ``x`` along ``dim``: ``start, start + stride, ...`` (a view)."""
    index: list[slice] = [slice(None)] * x.ndim
    index[dim] = slice(start, start + stride * (count - 1) + 1, stride)
    return x[tuple(index)]


def _weighted_sum(terms: list[tuple[Tensor, float | Tensor]]) -> Tensor:
    """``sum_k weight_k * sample_k``, accumulated in place: one pass over the output per term."""
    (first, first_weight), *rest = terms
    out = first * first_weight
    for sample, weight in rest:
        if isinstance(weight, Tensor):
            out.addcmul_(sample, weight)
        else:
            out.add_(sample, alpha=weight)
    return out


def _gather(x: Tensor, dim: int, positions: Tensor, source: SourceIndex, zeros: bool) -> Tensor:
    """Samples of ``x`` at ``positions`` along ``dim`` through the border rule ``source``;
    with ``zeros`` (constant border), index ``-1`` reads zero."""
    index = source(positions)
    gathered = x.index_select(dim, index.clamp(min=0))
    if zeros:
        shape = [1] * x.ndim
        shape[dim] = -1
        gathered = gathered * (index >= 0).to(x.dtype).view(shape)
    return gathered


def _stencil(
    x: Tensor,
    dim: int,
    count: int,
    stride: int,
    terms: Terms,
    source: SourceIndex,
    zeros: bool,
    base: Tensor | None = None,
) -> Tensor:
    """``out[j] = base[j] + sum_t w_t * x~[stride * j + o_t]`` for ``j < count`` along ``dim``.

    ``x~`` is ``x`` extended by the border rule ``source`` (``zeros``: constant border);
    ``base`` (``count`` samples along ``dim``) is optional. The interior reads strided views of
    ``x``; the outputs at each edge read a small gathered strip; the parts are concatenated.
    """
    length = x.shape[dim]
    low = min(offset for offset, _ in terms)
    high = max(offset for offset, _ in terms)
    first = min(count, max(0, -(low // stride)))  # first j with stride * j + low >= 0
    end = max(first, min(count, (length - 1 - high) // stride + 1))  # first j reading past n
    parts = []
    for begin, stop in ((0, first), (first, end), (end, count)):
        if stop <= begin:
            continue
        if (begin, stop) == (first, end):
            samples, shift = x, stride * first
        else:
            positions = torch.arange(
                stride * begin + low, stride * (stop - 1) + high + 1, device=x.device
            )
            samples, shift = _gather(x, dim, positions, source, zeros), -low
        summands = [(_strided(samples, dim, shift + o, stop - begin, stride), w) for o, w in terms]
        if base is not None:
            summands.insert(0, (base.narrow(dim, begin, stop - begin), 1.0))
        parts.append(_weighted_sum(summands))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=dim)


def _border_source(length: int, border: str) -> SourceIndex:
    """Index rule of ``border`` for a signal of ``length`` samples (``constant``: -1 outside)."""
    if border == "constant":
        return lambda p: torch.where((p >= 0) & (p < length), p, -1)
    return lambda p: border_index(p, length, border)


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
    length = x.shape[dim]
    radius = kernel_length(taps) // 2
    terms: Terms = [(k - radius, taps[k]) for k in range(kernel_length(taps))]
    source = _border_source(length, border)
    return _stencil(x, dim, (length + 1) // 2, 2, terms, source, border == "constant")


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
    computed in the same passes: a Laplacian band (``scale=-1``) or a reconstruction step
    (``scale=1``) costs no separate subtraction or addition.

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
    if border == "reflect":
        # Reflect-101 about the fine grid's edge keeps even positions even: coarse sample q
        # beyond the edge is fine sample reflect(2q), i.e. coarse sample reflect(2q) / 2.
        source: SourceIndex = lambda q: border_index(2 * q, size, "reflect") // 2  # noqa: E731
    else:
        source = _border_source(coarse, border)
    # Output 2j + phase reads coarse sample j + (k - radius + phase) // 2 for taps k whose
    # offset k - radius + phase is even; phase 0 has ceil(size / 2) outputs, phase 1 the rest.
    phases = []
    for phase in (0, 1):
        terms: Terms = [
            ((k - radius + phase) // 2, 2 * scale * taps[k])
            for k in range(length)
            if (k - radius + phase) % 2 == 0
        ]
        count = (size + 1 - phase) // 2
        phase_base = None if base is None else _strided(base, dim, phase, count, 2)
        if terms and count > 0:
            phases.append(
                _stencil(x, dim, count, 1, terms, source, border == "constant", phase_base)
            )
        else:  # no taps (a 1-tap kernel's odd phase): the outputs are the inserted zeros
            zero = x.narrow(dim, 0, count) * 0
            phases.append(zero if phase_base is None else phase_base + zero)
    shape = list(phases[0].shape)
    shape[dim] = size
    out = phases[0].new_empty(shape)
    for phase, values in enumerate(phases):
        if values.shape[dim] > 0:
            _strided(out, dim, phase, values.shape[dim], 2).copy_(values)
    return out
