"""Band energy accumulated inside the fused build kernels against ``band_energy``."""

from __future__ import annotations

import pytest
import torch

import pyrtok
from pyrtok.pyramid.energy import laplacian_energy
from pyrtok.pyramid.triton import launch
from pyrtok.pyramid.triton.launch import Tile

from .helpers import LaunchCounter, max_error, poisoned_alloc, torch_path


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "_alloc", poisoned_alloc)


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return max_error(got, want) / float(want.abs().max())


@pytest.mark.parametrize(
    ("shape", "levels", "patch"),
    [
        ((2, 3, 13, 17), 3, 4),  # every level in-kernel, partial patches at both edges
        ((2, 3, 13, 17), 3, 1),  # one coefficient per patch at level 0
        ((1, 2, 20, 24), 4, 8),  # residual level (stride 8) in-kernel too
        ((3, 9, 30), 2, 6),  # patch 6: level 1 in-kernel, no batch dim
        ((1, 1, 12, 12), 3, 3),  # patch 3: level 0 in-kernel, levels 1-2 from the torch path
        ((1, 2, 7, 5), 3, 7),  # one patch row, odd everything
    ],
)
def test_energy_matches_band_energy(
    shape: tuple[int, ...], levels: int, patch: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    x = torch.rand(shape)
    counter = LaunchCounter(monkeypatch)
    pyramid, energy = laplacian_energy(x, patch, levels)
    assert counter.counts["level_step"] == levels - 1
    with torch_path():
        reference_pyramid = pyrtok.laplacian_pyramid(x, levels)
        reference = pyrtok.band_energy(reference_pyramid, patch)
    assert energy.shape == reference.shape
    assert energy.dtype == torch.float32
    assert max_error(pyramid, reference_pyramid) <= 1e-5
    assert _relative_error(energy, reference) <= 1e-5


def test_energy_across_many_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny tiles: patches span several programs, which add their sums atomically."""
    monkeypatch.setattr(launch, "choose_tile", lambda *args: Tile(cols=2, rows=2, warps=1))
    torch.manual_seed(1)
    x = torch.rand(1, 2, 17, 22)
    _, energy = laplacian_energy(x, 8, 3)
    with torch_path():
        reference = pyrtok.band_energy(pyrtok.laplacian_pyramid(x, 3), 8)
    assert _relative_error(energy, reference) <= 1e-5


def test_bfloat16_energy_is_that_of_the_stored_bands() -> None:
    torch.manual_seed(2)
    x = torch.rand(2, 3, 13, 17).to(torch.bfloat16)
    pyramid, energy = laplacian_energy(x, 4, 3)
    with torch_path():
        reference = pyrtok.band_energy(pyramid, 4)
    assert energy.dtype == torch.float32
    assert _relative_error(energy, reference) <= 1e-5


def test_non_finite_input_raises() -> None:
    x = torch.rand(1, 1, 8, 8)
    x[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        laplacian_energy(x, 4, 2)
