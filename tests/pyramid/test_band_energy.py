"""band_energy: block sums where patches align, conservation for any patch size."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok import band_energy, laplacian_pyramid
from pyrtok.pyramid import max_levels


def _block_sums(level: torch.Tensor, block: int) -> torch.Tensor:
    """Sum of squares over channels and ``block`` x ``block`` blocks, zero-padding the edges."""
    squared = level.square().sum(dim=-3)
    height, width = squared.shape[-2:]
    rows, cols = -(-height // block), -(-width // block)
    padded = torch.zeros(*squared.shape[:-2], rows * block, cols * block, dtype=squared.dtype)
    padded[..., :height, :width] = squared
    return padded.unflatten(-1, (cols, block)).unflatten(-3, (rows, block)).sum(dim=(-3, -1))


def test_aligned_patches_are_plain_block_sums() -> None:
    x = torch.randn(2, 3, 70, 45, dtype=torch.float64)
    bands = laplacian_pyramid(x, 4)
    energy = band_energy(bands, 16)
    assert energy.shape == (2, 4, 5, 3)
    assert energy.dtype == torch.float64
    for k, band in enumerate(bands):
        torch.testing.assert_close(energy[:, k], _block_sums(band, 16 // 2**k))


def test_level_coarser_than_the_patch_is_shared_by_area() -> None:
    x = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    bands = laplacian_pyramid(x, 4)  # level 3 has stride 8 > patch 4
    energy = band_energy(bands, 4)[0, 3]  # (4, 4) patches
    coefficients = bands[3][0, 0].square()  # (2, 2), each covering 2x2 patches
    expected = coefficients.repeat_interleave(2, 0).repeat_interleave(2, 1) / 4
    torch.testing.assert_close(energy, expected)


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(1, 60),
    width=st.integers(1, 60),
    data=st.data(),
)
def test_energy_is_conserved_for_any_patch_size(
    height: int, width: int, data: st.DataObject
) -> None:
    patch = data.draw(st.integers(1, max(height, width)), label="patch")
    x = torch.randn(2, 3, height, width, dtype=torch.float64)
    bands = laplacian_pyramid(x, min(3, max_levels(height, width)))
    energy = band_energy(bands, patch)
    assert energy.shape == (2, len(bands), -(-height // patch), -(-width // patch))
    assert (energy >= 0).all()
    totals = torch.stack([b.square().sum(dim=(-3, -2, -1)) for b in bands], dim=-1)
    torch.testing.assert_close(energy.sum(dim=(-2, -1)), totals)


def test_half_precision_energy_accumulates_in_float32() -> None:
    x = torch.rand(1, 3, 32, 32)
    energy = band_energy(laplacian_pyramid(x.bfloat16(), 3), 8)
    assert energy.dtype == torch.float32
    reference = band_energy(laplacian_pyramid(x, 3), 8)
    torch.testing.assert_close(energy, reference, rtol=0.05, atol=1e-3)


def test_textured_patch_gets_more_fine_band_energy_than_flat_patch() -> None:
    x = torch.full((1, 1, 32, 64), 0.5)
    x[..., :, 32:] += 0.2 * torch.randn(32, 32)  # right half textured
    energy = band_energy(laplacian_pyramid(x, 3), 32)
    assert energy[0, 0, 0, 1] > 100 * energy[0, 0, 0, 0]
