"""The sparse one-axis operators (used for exact adjoints) equal the torch path's own ops."""

from __future__ import annotations

import pytest
import torch

from pyrtok.pyramid.separable import expand_axis, reduce_axis
from pyrtok.pyramid.triton.tables import (
    axis_operator,
    expand_matrix,
    gather_table,
    reduce_matrix,
)

TAPS = [
    (1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16),
    (0.25, 0.5, 0.25),
    (0.1, 0.2, 0.3, 0.25, 0.15),  # asymmetric: the tables are general
]
BORDERS = ["reflect", "replicate", "circular", "constant"]


@pytest.mark.parametrize("taps", TAPS)
@pytest.mark.parametrize("border", BORDERS)
def test_matrices_equal_the_torch_ops(taps: tuple[float, ...], border: str) -> None:
    for n in range(1, 14):
        coarse = (n + 1) // 2
        eye_fine = torch.eye(n, dtype=torch.float64)
        eye_coarse = torch.eye(coarse, dtype=torch.float64)
        reduce_dense = reduce_axis(eye_fine, 0, taps, border)
        expand_dense = expand_axis(eye_coarse, 0, n, taps, border)
        assert torch.allclose(reduce_matrix(n, taps, border).to_dense(), reduce_dense, atol=1e-15)
        assert torch.allclose(expand_matrix(n, taps, border).to_dense(), expand_dense, atol=1e-15)


def _dense(table_index: torch.Tensor, table_weight: torch.Tensor, n_in: int) -> torch.Tensor:
    dense = torch.zeros(table_index.shape[0], n_in, dtype=torch.float64)
    for row in range(table_index.shape[0]):
        for col, weight in zip(table_index[row].tolist(), table_weight[row].tolist(), strict=True):
            if col >= 0:
                dense[row, col] += weight
    return dense


@pytest.mark.parametrize("kind", ["reduce", "expand"])
@pytest.mark.parametrize("n", [1, 2, 5, 8, 13])
def test_tables_hold_the_matrix_and_its_transpose(kind: str, n: int) -> None:
    op = axis_operator(kind, n, TAPS[0], "reflect", torch.device("cpu"))
    matrix = (reduce_matrix if kind == "reduce" else expand_matrix)(n, TAPS[0], "reflect")
    dense = matrix.to_dense()
    forward = _dense(op.forward.index, op.forward.weight, op.forward.n_in)
    adjoint = _dense(op.adjoint.index, op.adjoint.weight, op.adjoint.n_in)
    assert torch.allclose(forward, dense, atol=1e-7)
    assert torch.allclose(adjoint, dense.T, atol=1e-7)
    assert op.forward.n_out == dense.shape[0]
    assert op.adjoint.n_out == dense.shape[1]


def test_padding_is_marked() -> None:
    table = gather_table(reduce_matrix(5, TAPS[0], "reflect").t().coalesce(), torch.device("cpu"))
    padded = table.index < 0
    assert padded.any()
    assert (table.weight[padded] == 0).all()
