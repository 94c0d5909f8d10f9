"""pyrtok.sync_checks(False) also skips the value checks of allocation and quantization that
sync with the device; on by default, each raises as before."""

import pytest
import torch

from pyrtok import sync_checks
from pyrtok.allocation.quadtree import check_images
from pyrtok.quantize import VectorQuantizer
from pyrtok.quantize.distributed import raise_if_nonfinite


def _nan_images() -> torch.Tensor:
    x = torch.rand(1, 3, 32, 32)
    x[0, 0, 3, 4] = float("nan")
    return x


def test_allocation_input_check() -> None:
    with pytest.raises(ValueError, match="images: contains NaN or Inf values"):
        check_images(_nan_images())
    with sync_checks(False):
        assert check_images(_nan_images()).isnan().any()


def test_quantizer_finite_and_index_checks() -> None:
    nan = torch.full((2, 4), float("nan"))
    with pytest.raises(ValueError, match="f: expected finite values"):
        raise_if_nonfinite(nan, "f", enabled=False)
    vq = VectorQuantizer(codebook_size=8, dim=4, kmeans_init=False)
    with pytest.raises(ValueError, match="expected finite values"):
        vq(nan)
    with pytest.raises(ValueError, match=r"indices: expected values in \[-1, 7\]"):
        vq.get_codes(torch.tensor([9]))
    with sync_checks(False):
        raise_if_nonfinite(nan, "f", enabled=False)  # skipped: no device sync
        with pytest.raises(IndexError):  # the plain indexing error, no min/max sync first
            vq.get_codes(torch.tensor([9]))
