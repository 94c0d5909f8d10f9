"""Module twins: buffers follow .to(), equal the functional ops, and compile with fullgraph."""

import pytest
import torch

from pyrtok import (
    GaussianPyramid,
    LaplacianPyramid,
    band_energy,
    gaussian_pyramid,
    laplacian_pyramid,
    pyr_down,
    pyr_up,
    reconstruct,
)


def test_modules_equal_functional_ops() -> None:
    x = torch.rand(2, 3, 31, 40, dtype=torch.float64)
    lap = LaplacianPyramid(levels=4, kernel=("gauss", 1.3), border="replicate").double()
    expected = laplacian_pyramid(x, 4, ("gauss", 1.3), "replicate")
    for ours, theirs in zip(lap(x), expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-15)
    assert (lap.inverse(lap(x)) - x).abs().max() <= 1e-12
    gauss = GaussianPyramid(levels=3)
    for ours, theirs in zip(gauss(x.float()), gaussian_pyramid(x.float(), 3), strict=True):
        torch.testing.assert_close(ours, theirs)


def test_taps_are_a_buffer_that_follows_to() -> None:
    module = LaplacianPyramid(levels=3)
    assert dict(module.named_buffers())["taps"].tolist() == [1 / 16, 4 / 16, 6 / 16, 4 / 16, 1 / 16]
    module = module.to(torch.float32)
    assert module.taps.dtype == torch.float32
    assert "taps" not in module.state_dict()  # derived from the constructor, not learned
    assert "levels=3, kernel_size=5, border='reflect'" in repr(module)


def test_module_validates_levels_at_construction() -> None:
    with pytest.raises(ValueError, match="levels: must be >= 1, got 0"):
        LaplacianPyramid(levels=0)
    with pytest.raises(TypeError, match="levels: expected an int >= 1 or 'auto'"):
        GaussianPyramid(levels="many")  # type: ignore[arg-type]


def test_functional_ops_compile_with_fullgraph() -> None:
    def pipeline(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bands = laplacian_pyramid(x, 3)
        up = pyr_up(pyr_down(x), (x.shape[-2], x.shape[-1]))
        return reconstruct(bands), up, band_energy(bands, 8)

    x = torch.rand(2, 3, 21, 30)
    compiled = torch.compile(pipeline, fullgraph=True, backend="eager")
    for ours, theirs in zip(compiled(x), pipeline(x), strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.slow
def test_module_compiles_with_inductor() -> None:
    module = LaplacianPyramid(levels=3)
    x = torch.rand(1, 3, 24, 17)
    compiled = torch.compile(module, fullgraph=True)
    for ours, theirs in zip(compiled(x), module(x), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)
