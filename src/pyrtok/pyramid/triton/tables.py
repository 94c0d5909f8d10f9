"""One-axis REDUCE and EXPAND as sparse matrices, stored as padded per-row gather tables.

The fused kernels compute REDUCE and EXPAND with stencils. Their adjoints (the backward passes)
are the transposed matrices: at the borders reflect-101 folds several taps onto one sample, and
the transpose has to add those folds up again. Writing each adjoint as its own stencil would
repeat that border logic four times; instead each operator is built here once as a sparse
matrix, from the rows the torch path itself uses
(:func:`~pyrtok.pyramid.axis_plan.operator_rows`), and the transpose comes for free. A generic
separable gather kernel then applies any of them.

A table for an ``(n_out, n_in)`` matrix holds, per output index, the input indices it reads and
their weights, padded to the longest row with index ``-1`` (weight ``0``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import Tensor

from pyrtok.pyramid.axis_plan import operator_rows


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


def _operator_matrix(kind: str, n: int, taps: tuple[float, ...], border: str) -> Tensor:
    """Sparse float64 matrix of ``kind`` from the rows the torch path uses (folds summed)."""
    rows, n_in, _, _ = operator_rows(kind, n, len(taps), border)
    entries = [(r, c, f * taps[k]) for r, row in enumerate(rows) for c, k, f in row]
    entries = [e for e in entries if e[2] != 0]
    index = torch.tensor([[r for r, _, _ in entries], [c for _, c, _ in entries]], dtype=torch.long)
    values = torch.tensor([v for _, _, v in entries], dtype=torch.float64)
    shape = (len(rows), n_in)
    return torch.sparse_coo_tensor(
        index.view(2, -1), values, shape, check_invariants=True
    ).coalesce()


def reduce_matrix(n: int, taps: tuple[float, ...], border: str) -> Tensor:
    """Sparse float64 ``(ceil(n / 2), n)`` matrix of one-axis REDUCE (see ``reduce_axis``).

    Examples:
        >>> reduce_matrix(3, (0.25, 0.5, 0.25), "reflect").to_dense()
        tensor([[0.5000, 0.5000, 0.0000],
                [0.0000, 0.5000, 0.5000]], dtype=torch.float64)
    """
    return _operator_matrix("reduce", n, taps, border)


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
    return _operator_matrix("expand", n, taps, border)


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
