"""Every kernel and border against the NumPy reference, on hypothesis-drawn sizes."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok import pyr_down, pyr_up
from pyrtok.pyramid import gaussian_taps
from tests.pyramid.reference import pyr_down_reference, pyr_up_reference

BORDERS = ["reflect", "replicate", "circular", "constant"]
KERNELS = {
    "binom5": np.array([1, 4, 6, 4, 1]) / 16,
    "gauss": np.array(gaussian_taps(1.0)),
    "three": np.array([0.25, 0.5, 0.25]),
    "asymmetric": np.array([0.1, 0.2, 0.3, 0.4, 0.0, 0.0, 0.0]),
}


def _torch_kernel(name: str) -> str | torch.Tensor:
    return name if name in ("binom5", "gauss") else torch.tensor(KERNELS[name])


sides = st.integers(min_value=1, max_value=40)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("kernel", list(KERNELS))
@settings(max_examples=15, deadline=None)
@given(height=sides, width=sides)
def test_pyr_down_matches_reference(kernel: str, border: str, height: int, width: int) -> None:
    image = np.random.default_rng(height * 100 + width).random((2, height, width))
    ours = pyr_down(torch.from_numpy(image), _torch_kernel(kernel), border).numpy()
    expected = pyr_down_reference(image, KERNELS[kernel], border)
    np.testing.assert_allclose(ours, expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("border", BORDERS)
@pytest.mark.parametrize("kernel", list(KERNELS))
@settings(max_examples=15, deadline=None)
@given(height=sides, width=sides)
def test_pyr_up_matches_reference(kernel: str, border: str, height: int, width: int) -> None:
    coarse = ((height + 1) // 2, (width + 1) // 2)
    image = np.random.default_rng(height * 100 + width).random((2, *coarse))
    ours = pyr_up(torch.from_numpy(image), (height, width), _torch_kernel(kernel), border).numpy()
    expected = pyr_up_reference(image, (height, width), KERNELS[kernel], border)
    np.testing.assert_allclose(ours, expected, atol=1e-12, rtol=0)
