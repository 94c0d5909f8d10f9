"""Fused forward kernels against the torch path, on the CPU under the Triton interpreter.

Sizes are tiny (the interpreter runs every program in Python) but cover odd and even sides,
1-pixel sides, several programs per level (forced small tiles) and any leading dims.
"""

from __future__ import annotations

import pytest
import torch

import pyrtok
from pyrtok.pyramid import LaplacianPyramid, max_levels
from pyrtok.pyramid.triton import launch
from pyrtok.pyramid.triton.launch import Tile

from .helpers import LaunchCounter, max_error, poisoned_alloc, torch_path

SIZES = [(1, 1), (2, 3), (5, 8), (13, 17), (32, 32), (1, 9), (7, 1)]


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(launch, "_alloc", poisoned_alloc)


@pytest.fixture
def launches(monkeypatch: pytest.MonkeyPatch) -> LaunchCounter:
    return LaunchCounter(monkeypatch)


@pytest.mark.parametrize("size", SIZES)
def test_laplacian_pyramid_and_reconstruct_match_torch_path(
    size: tuple[int, int], launches: LaunchCounter
) -> None:
    torch.manual_seed(0)
    x = torch.rand(2, *size)
    levels = max_levels(*size)
    fused = pyrtok.laplacian_pyramid(x, levels)
    image = pyrtok.reconstruct(fused)
    with torch_path():
        reference = pyrtok.laplacian_pyramid(x, levels)
        reference_image = pyrtok.reconstruct(reference)
    assert max_error(fused, reference) <= 1e-5
    assert max_error(image, reference_image) <= 1e-5
    assert max_error(image, x) <= 1e-5
    assert launches.counts["level_step"] == levels - 1
    assert launches.counts["expand"] == levels - 1


@pytest.mark.parametrize("leading", [(), (3,), (2, 1, 2)])
def test_any_leading_dims(leading: tuple[int, ...], launches: LaunchCounter) -> None:
    torch.manual_seed(1)
    x = torch.rand(*leading, 9, 12)
    fused = pyrtok.laplacian_pyramid(x, 3)
    with torch_path():
        reference = pyrtok.laplacian_pyramid(x, 3)
    assert max_error(fused, reference) <= 1e-5
    assert max_error(pyrtok.reconstruct(fused), x) <= 1e-5
    assert launches.counts["level_step"] == 2


@pytest.mark.parametrize("size", [(5, 8), (13, 17), (6, 1)])
def test_pyr_down_and_pyr_up_match_torch_path(
    size: tuple[int, int], launches: LaunchCounter
) -> None:
    torch.manual_seed(2)
    x = torch.rand(2, *size)
    small = pyrtok.pyr_down(x)
    h, w = small.shape[-2:]
    targets = [(2 * h, 2 * w), (2 * h - 1, 2 * w - 1), (2 * h, 2 * w - 1), (2 * h - 1, 2 * w)]
    ups = [pyrtok.pyr_up(small, target) for target in targets]
    with torch_path():
        reference_small = pyrtok.pyr_down(x)
        reference_ups = [pyrtok.pyr_up(reference_small, target) for target in targets]
    assert max_error(small, reference_small) <= 1e-5
    assert max_error(ups, reference_ups) <= 1e-5
    assert launches.counts == {"level_step": 1, "expand": 4, "separable_gather": 0}


def test_many_programs_per_level() -> None:
    """Tiny tiles: strips and row blocks meet inside the image (halo and border logic)."""
    torch.manual_seed(3)
    x = torch.rand(2, 19, 23)
    taps = (0.0625, 0.25, 0.375)
    tile = Tile(cols=4, rows=2, warps=1)
    g, bands = x, []
    for _ in range(3):
        band, g = launch.level_step(g, taps, tile=tile)
        assert band is not None
        bands.append(band)
    image = g
    for band in reversed(bands):
        image = launch.expand(image, (band.shape[-2], band.shape[-1]), taps, band, tile=tile)
    with torch_path():
        reference = pyrtok.laplacian_pyramid(x, 4)
    assert max_error([*bands, g], reference) <= 1e-5
    assert max_error(image, x) <= 1e-5


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_within_rounding(dtype: torch.dtype) -> None:
    """Each level is within 2 eps * max|x| of the float64 result from the same rounded input:
    rounding of G_k, of G_{k+1} (propagated with gain 1) and of the band itself."""
    torch.manual_seed(4)
    x = torch.rand(2, 3, 13, 17).to(dtype)
    fused = pyrtok.laplacian_pyramid(x, 3)
    image = pyrtok.reconstruct(fused)
    with torch_path():
        exact = pyrtok.laplacian_pyramid(x.double(), 3)
    bound = 2 * torch.finfo(dtype).eps * float(x.abs().max())
    assert all(level.dtype == dtype for level in fused)
    assert max_error([level.double() for level in fused], exact) <= bound
    assert max_error(image.double(), x.double()) <= bound


@pytest.mark.parametrize("kernel", [[1.0, 2.0, 1.0], torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])])
def test_shorter_and_tensor_kernels(
    kernel: list[float] | torch.Tensor, launches: LaunchCounter
) -> None:
    torch.manual_seed(5)
    x = torch.rand(2, 11, 6)
    fused = pyrtok.laplacian_pyramid(x, 3, kernel=kernel)
    with torch_path():
        reference = pyrtok.laplacian_pyramid(x, 3, kernel=kernel)
    assert max_error(fused, reference) <= 1e-5
    assert max_error(pyrtok.reconstruct(fused, kernel=kernel), x) <= 1e-5
    assert launches.counts["level_step"] == 2


def test_module_uses_kernels(launches: LaunchCounter) -> None:
    torch.manual_seed(6)
    module = LaplacianPyramid(levels=3)
    x = torch.rand(1, 2, 10, 13)
    bands = module(x)
    with torch_path():
        reference = module(x)
    assert max_error(bands, reference) <= 1e-5
    assert max_error(module.inverse(bands), x) <= 1e-5
    assert launches.counts["level_step"] == 2
    assert launches.counts["expand"] == 2


@pytest.mark.parametrize(
    ("kwargs", "dtype"),
    [
        ({"border": "replicate"}, torch.float32),
        ({"border": "constant"}, torch.float32),
        ({"kernel": "gauss"}, torch.float32),
        ({"kernel": [1.0, 2.0, 3.0]}, torch.float32),
        ({}, torch.float64),
    ],
)
def test_unsupported_calls_take_the_torch_path(
    kwargs: dict[str, object], dtype: torch.dtype, launches: LaunchCounter
) -> None:
    x = torch.rand(2, 9, 9, dtype=dtype)
    got = pyrtok.laplacian_pyramid(x, 2, **kwargs)  # type: ignore[arg-type]
    with torch_path():
        want = pyrtok.laplacian_pyramid(x, 2, **kwargs)  # type: ignore[arg-type]
    assert launches.total == 0
    assert max_error(got, want) == 0.0


def test_disable_env_forces_torch_path(launches: LaunchCounter) -> None:
    with torch_path():
        pyrtok.laplacian_pyramid(torch.rand(2, 9, 9), 2)
    assert launches.total == 0
    pyrtok.laplacian_pyramid(torch.rand(2, 9, 9), 2)
    assert launches.total == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_band_fits_the_stored_coarse_level(dtype: torch.dtype) -> None:
    """The band is computed against the coarse level as stored (rounded), so the band plus
    EXPAND of the stored coarse level gives back ``x`` up to the band's own rounding."""
    torch.manual_seed(7)
    x = torch.rand(2, 3, 13, 17).to(dtype)
    band, coarse = pyrtok.laplacian_pyramid(x, 2)
    with torch_path():
        expanded = pyrtok.pyr_up(coarse.float(), (13, 17))
    error = (band.float() + expanded - x.float()).abs()
    assert bool((error <= torch.finfo(dtype).eps * band.float().abs() + 1e-6).all())
