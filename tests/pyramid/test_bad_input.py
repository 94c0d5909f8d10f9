"""Every bad input gets a clear error naming the argument."""

import re

import numpy as np
import pytest
import torch

from pyrtok import LaplacianPyramid, band_energy, laplacian_pyramid, pyr_down, pyr_up, reconstruct


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fewer_than_two_dims(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"x: expected a tensor of shape \(\.\.\., H, W\)"):
        pyr_down(torch.rand(shape))


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.complex64])
def test_integer_bool_and_complex_dtypes(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"x: expected a floating dtype.*got {dtype}"):
        laplacian_pyramid(torch.zeros(4, 4, dtype=dtype), 2)


def test_not_a_tensor() -> None:
    array = np.zeros((4, 4))
    with pytest.raises(TypeError, match=r"x: expected a torch\.Tensor, got ndarray"):
        pyr_down(array)  # type: ignore[arg-type]


def test_empty_side() -> None:
    with pytest.raises(ValueError, match="H and W must be >= 1"):
        pyr_down(torch.rand(3, 0, 4))


@pytest.mark.parametrize("levels", [0, -2])
def test_levels_below_one(levels: int) -> None:
    with pytest.raises(ValueError, match=f"levels: must be >= 1, got {levels}"):
        laplacian_pyramid(torch.rand(8, 8), levels)


def test_too_many_levels_names_the_largest_allowed() -> None:
    message = "levels: 8 is too many for a 37x50 input; the largest allowed is 7"
    with pytest.raises(ValueError, match=re.escape(message)):
        laplacian_pyramid(torch.rand(37, 50), 8)
    assert len(laplacian_pyramid(torch.rand(37, 50), 7)) == 7


@pytest.mark.parametrize("levels", [2.0, "3", True])
def test_levels_of_the_wrong_type(levels: object) -> None:
    with pytest.raises(TypeError, match="levels: expected an int >= 1 or 'auto'"):
        laplacian_pyramid(torch.rand(8, 8), levels)  # type: ignore[arg-type]


def test_unknown_kernel_lists_valid_names() -> None:
    with pytest.raises(
        ValueError, match=r"kernel: unknown name 'box'; valid names are \['binom5', 'gauss'\]"
    ):
        pyr_down(torch.rand(8, 8), kernel="box")


@pytest.mark.parametrize(
    ("kernel", "error", "message"),
    [
        (torch.ones(4), ValueError, "kernel: need an odd number of taps"),
        (torch.ones(3, 3), ValueError, "kernel: a tensor kernel must be 1-D"),
        (torch.ones(3, dtype=torch.int64), TypeError, "kernel: a tensor kernel must be floating"),
        ([1.0, -1.0, 0.0], ValueError, "kernel: taps must sum to a finite non-zero value"),
        (("gauss", -1.0), ValueError, "gauss kernel: sigma must be a finite number > 0"),
        (("box", 1.0), ValueError, r"kernel: only \('gauss', sigma\) takes a parameter"),
        (3, TypeError, "kernel: expected a name"),
    ],
)
def test_bad_kernels(kernel: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        pyr_down(torch.rand(8, 8), kernel=kernel)  # type: ignore[arg-type]


def test_unknown_border_lists_valid_names() -> None:
    expected = (
        r"border: unknown name 'mirror'; "
        r"valid names are \['reflect', 'replicate', 'circular', 'constant'\]"
    )
    with pytest.raises(ValueError, match=expected):
        pyr_down(torch.rand(8, 8), border="mirror")
    with pytest.raises(ValueError, match=expected):
        LaplacianPyramid(border="mirror")


def test_pyr_up_size_that_cannot_come_from_the_level() -> None:
    with pytest.raises(ValueError, match=re.escape("size: (10, 9) cannot come from a 4x5 level")):
        pyr_up(torch.rand(4, 5), (10, 9))


def test_reconstruct_rejects_mismatched_levels() -> None:
    bands = laplacian_pyramid(torch.rand(2, 3, 20, 30), 3)
    with pytest.raises(ValueError, match=r"pyramid: level 1 has shape \(2, 3, 11, 15\)"):
        reconstruct([bands[0], torch.rand(2, 3, 11, 15), bands[2]])
    with pytest.raises(ValueError, match=r"pyramid: level 2 has shape \(1, 3, 5, 8\)"):
        reconstruct([bands[0], bands[1], bands[2][:1]])
    with pytest.raises(ValueError, match=r"pyramid: level 1 is torch\.float64"):
        reconstruct([bands[0], bands[1].double(), bands[2]])
    with pytest.raises(ValueError, match="pyramid: expected a non-empty list of tensors"):
        reconstruct([])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_band_energy_rejects_non_finite_input(bad: float) -> None:
    x = torch.rand(1, 3, 32, 32)
    x[0, 1, 5, 7] = bad
    with pytest.raises(ValueError, match="band energy is NaN or Inf; the input image has NaN/Inf"):
        band_energy(laplacian_pyramid(x, 3), 16)


@pytest.mark.parametrize("patch_size", [0, -4, 33])
def test_band_energy_patch_size_that_does_not_fit(patch_size: int) -> None:
    with pytest.raises(
        ValueError, match=f"patch_size: must be between 1 and .* 32 .*got {patch_size}"
    ):
        band_energy(laplacian_pyramid(torch.rand(1, 3, 32, 20), 3), patch_size)


def test_band_energy_needs_a_channel_dim() -> None:
    with pytest.raises(ValueError, match="pyramid: levels need a channel dim"):
        band_energy(laplacian_pyramid(torch.rand(32, 32), 3), 8)
