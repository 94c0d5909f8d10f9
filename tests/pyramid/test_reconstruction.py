"""Exact reconstruction, shapes, dtypes, levels and gradients of the Laplacian pyramid."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok import gaussian_pyramid, laplacian_pyramid, pyr_down, pyr_up, reconstruct
from pyrtok.pyramid import auto_levels, max_levels, pyramid_sizes

BORDERS = ["reflect", "replicate", "circular", "constant"]
shapes = st.tuples(
    st.lists(st.integers(1, 3), min_size=0, max_size=2),
    st.integers(1, 70),
    st.integers(1, 70),
)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, border=st.sampled_from(BORDERS), data=st.data())
def test_reconstruct_is_exact_float64(
    shape: tuple[list[int], int, int], border: str, data: st.DataObject
) -> None:
    leading, height, width = shape
    levels = data.draw(st.integers(1, max_levels(height, width)), label="levels")
    x = torch.randn(*leading, height, width, dtype=torch.float64)
    bands = laplacian_pyramid(x, levels, border=border)
    assert [tuple(b.shape[-2:]) for b in bands] == pyramid_sizes(height, width, levels)
    assert all(b.shape[:-2] == x.shape[:-2] for b in bands)
    assert (reconstruct(bands, border=border) - x).abs().max() <= 1e-12


@settings(max_examples=25, deadline=None)
@given(shape=shapes, kernel=st.sampled_from(["binom5", "gauss", ("gauss", 2.0)]))
def test_reconstruct_is_exact_float32(shape: tuple[list[int], int, int], kernel: object) -> None:
    leading, height, width = shape
    x = torch.rand(*leading, height, width)
    levels = min(4, max_levels(height, width))
    bands = laplacian_pyramid(x, levels, kernel)  # type: ignore[arg-type]
    assert (reconstruct(bands, kernel) - x).abs().max() <= 1e-5  # type: ignore[arg-type]


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float16, 4e-3), (torch.bfloat16, 3e-2)])
def test_half_precision_keeps_dtype_and_reconstructs(dtype: torch.dtype, tolerance: float) -> None:
    x = torch.rand(2, 3, 45, 38)
    bands = laplacian_pyramid(x.to(dtype), levels=4)
    assert all(b.dtype == dtype for b in bands)
    back = reconstruct(bands)
    assert back.dtype == dtype
    assert (back.float() - x).abs().max() <= tolerance
    down = pyr_down(x.to(dtype))
    assert (down.float() - pyr_down(x)).abs().max() <= tolerance


def test_gaussian_pyramid_levels_are_repeated_pyr_down() -> None:
    x = torch.rand(3, 33, 64, dtype=torch.float64)
    levels = gaussian_pyramid(x, 4)
    assert levels[0] is x
    for fine, coarse in itertools.pairwise(levels):
        assert torch.equal(coarse, pyr_down(fine))


def test_bands_are_detail_lost_by_the_next_level() -> None:
    x = torch.rand(1, 29, 40, dtype=torch.float64)
    gaussians = gaussian_pyramid(x, 3)
    bands = laplacian_pyramid(x, 3)
    assert torch.equal(bands[-1], gaussians[-1])
    expected = gaussians[0] - pyr_up(gaussians[1], (29, 40))
    torch.testing.assert_close(bands[0], expected, rtol=0, atol=1e-15)


def test_constant_image_has_zero_bands_with_reflect_border() -> None:
    bands = laplacian_pyramid(torch.full((2, 3, 37, 21), 0.7, dtype=torch.float64), levels=4)
    for band in bands[:-1]:
        assert band.abs().max() <= 1e-15
    assert torch.allclose(bands[-1], torch.tensor(0.7, dtype=torch.float64))


def test_auto_levels_stop_before_a_side_is_smaller_than_the_kernel() -> None:
    assert auto_levels(512, 512) == 7  # 512 ... 8; 4 < 5 taps
    assert auto_levels(37, 500) == 4  # 37, 19, 10, 5
    assert auto_levels(4, 4) == 1
    assert auto_levels(64, 64, ("gauss", 2.0)) == 3  # 11 taps: 64, 32, 16
    assert len(laplacian_pyramid(torch.rand(1, 100, 80), "auto")) == auto_levels(100, 80)


def test_max_levels_ends_at_one_pixel() -> None:
    for height, width in [(1, 1), (2, 1), (5, 3), (512, 300), (97, 97)]:
        sizes = pyramid_sizes(height, width, max_levels(height, width))
        assert sizes[-1] == (1, 1)
        assert len(sizes) == 1 or sizes[-2] != (1, 1)


@pytest.mark.parametrize("border", BORDERS)
def test_gradcheck_build_and_reconstruct(border: str) -> None:
    x = torch.rand(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)

    def build(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(laplacian_pyramid(x, 3, border=border))

    assert torch.autograd.gradcheck(build, (x,))
    bands = tuple(b.detach().requires_grad_() for b in laplacian_pyramid(x, 3, border=border))
    assert torch.autograd.gradcheck(lambda *b: reconstruct(list(b), border=border), bands)


def test_gradcheck_tensor_kernel_through_pyr_up() -> None:
    x = torch.rand(2, 5, 4, dtype=torch.float64, requires_grad=True)
    taps = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: pyr_up(x, (9, 8), taps), (x,))
