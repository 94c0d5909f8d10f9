"""One-axis REDUCE and EXPAND as sparse matrices, stored as padded per-row gather tables.

The fused kernels compute REDUCE and EXPAND with stencils. Their adjoints (the backward passes)
are the transposed matrices: at the borders reflect-101 folds several taps onto one sample, and
the transpose has to add those folds up again. Writing each adjoint as its own stencil would
repeat that border logic four times; instead each operator is built here once as a sparse
matrix, from the same index rules as :mod:`pyrtok.pyramid.separable` (:func:`border_index`), and
the transpose comes for free. A generic separable gather kernel then applies any of them.

A table for an ``(n_out, n_in)`` matrix holds, per output index, the input indices it reads and
their weights, padded to the longest row with index ``-1`` (weight ``0``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from pyrtok.pyramid.borders import border_index


@dataclass(frozen=True)
class GatherTable:
    """A sparse ``(n_out, n_in)`` matrix as padded rows.

    Attributes:
        index: ``(n_out, width)`` int32 input indices, ``-1`` where a row is shorter than width.
        weight: ``(n_out, width)`` float32 weights (0 in the padding).
        n_in: length of the axis the matrix reads.
    """

    index: Tensor
    weight: Tensor
    n_in: int

    @property
    def n_out(self) -> int:
        """Length of the axis the matrix writes."""
        return int(self.index.shape[0])

    @property
    def width(self) -> int:
        """Most inputs any output reads."""
        return int(self.index.shape[1])


@dataclass(frozen=True)
class AxisOperator:
    """A one-axis linear operator and its adjoint, both as gather tables on one device."""

    forward: GatherTable
    adjoint: GatherTable


def reduce_matrix(n: int, taps: tuple[float, ...], border: str) -> Tensor:
    """Sparse float64 ``(ceil(n / 2), n)`` matrix of one-axis REDUCE (see ``reduce_axis``).

    Examples:
        >>> reduce_matrix(3, (0.25, 0.5, 0.25), "reflect").to_dense()
        tensor([[0.5000, 0.5000, 0.0000],
                [0.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    length, radius = len(taps), len(taps) // 2
    rows = torch.arange((n + 1) // 2)[:, None].expand(-1, length)
    position = 2 * rows + torch.arange(length)[None, :] - radius
    weight = torch.tensor(taps, dtype=torch.float64)[None, :].expand_as(position)
    return _sparse(rows, position, weight, (rows.shape[0], n), border, n)


def expand_matrix(n: int, taps: tuple[float, ...], border: str) -> Tensor:
    """Sparse float64 ``(n, ceil(n / 2))`` matrix of one-axis EXPAND to ``n`` samples.

    Output ``m`` reads coarse sample ``(m + k - radius) / 2`` with weight ``2 * taps[k]`` when
    that is an integer (zero insertion); coarse samples beyond the edge follow ``expand_axis``:
    reflected on the fine grid for ``reflect``, on the coarse samples otherwise.

    Examples:
        >>> expand_matrix(4, (0.25, 0.5, 0.25), "reflect").to_dense()
        tensor([[1.0000, 0.0000],
                [0.5000, 0.5000],
                [0.0000, 1.0000],
                [0.0000, 1.0000]], dtype=torch.float64)
    """
    length, radius = len(taps), len(taps) // 2
    coarse = (n + 1) // 2
    rows = torch.arange(n)[:, None].expand(-1, length)
    offset = rows + torch.arange(length)[None, :] - radius
    weight = 2 * torch.tensor(taps, dtype=torch.float64)[None, :].expand_as(offset)
    weight = torch.where(offset % 2 == 0, weight, torch.zeros_like(weight))
    position = torch.div(offset, 2, rounding_mode="floor")
    if border == "reflect":
        position = border_index(2 * position, n, "reflect") // 2
        border = "none"
    return _sparse(rows, position, weight, (n, coarse), border, coarse)


def _sparse(
    rows: Tensor, position: Tensor, weight: Tensor, shape: tuple[int, int], border: str, n: int
) -> Tensor:
    """Coalesced sparse matrix with ``weight`` at ``(rows, border(position))``."""
    if border == "constant":
        keep = (position >= 0) & (position < n)
        rows, position, weight = rows[keep], position[keep], weight[keep]
    elif border != "none":
        position = border_index(position, n, border)
    keep = weight != 0
    index = torch.stack([rows[keep].reshape(-1), position[keep].reshape(-1)])
    values = weight[keep].reshape(-1)
    return torch.sparse_coo_tensor(index, values, shape, check_invariants=True).coalesce()


def gather_table(matrix: Tensor, device: torch.device) -> GatherTable:
    """Pad the rows of a coalesced sparse matrix into a :class:`GatherTable` on ``device``."""
    rows, cols = matrix.indices()
    values = matrix.values()
    keep = values != 0
    rows, cols, values = rows[keep], cols[keep], values[keep]
    n_out = matrix.shape[0]
    counts = torch.bincount(rows, minlength=n_out)
    width = max(1, int(counts.max()) if n_out > 0 else 1)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(rows.shape[0]) - starts[rows]
    index = torch.full((n_out, width), -1, dtype=torch.int32)
    weight = torch.zeros((n_out, width), dtype=torch.float32)
    index[rows, slot] = cols.to(torch.int32)
    weight[rows, slot] = values.to(torch.float32)
    return GatherTable(index.to(device), weight.to(device), int(matrix.shape[1]))


@functools.lru_cache(maxsize=256)
def axis_operator(
    kind: str, n: int, taps: tuple[float, ...], border: str, device: torch.device
) -> AxisOperator:
    """Cached tables of ``"reduce"`` (``n -> ceil(n/2)``) or ``"expand"`` (``ceil(n/2) -> n``).

    ``n`` is the fine length in both cases. Built once per (kind, size, taps, border, device):
    later calls copy nothing to the device.
    """
    if kind == "reduce":
        matrix = reduce_matrix(n, taps, border)
    elif kind == "expand":
        matrix = expand_matrix(n, taps, border)
    else:
        raise ValueError(f"kind: expected 'reduce' or 'expand', got {kind!r}")
    return AxisOperator(
        forward=gather_table(matrix, device),
        adjoint=gather_table(matrix.t().coalesce(), device),
    )
