"""One pyramid per image: scorers and the tokenizer read a shared cell pyramid, built once."""

from __future__ import annotations

import pytest
import torch

import pyrtok.pyramid.functional as pyramid_functional
from pyrtok.allocation import SCORERS, QuadtreeGeometry, allocate, cell_pyramid, tokenize
from pyrtok.pyramid import opencv_path


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per REDUCE, through ``pyr_down`` or the CPU one-pass energy (OpenCV)."""
    calls: list[int] = []
    original = pyramid_functional.pyr_down
    one_pass = opencv_path.laplacian_energy

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    def counting_one_pass(x: torch.Tensor, levels: int, *args: object) -> object:
        calls.extend([1] * (levels - 1))
        return one_pass(x, levels, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(pyramid_functional, "pyr_down", counting)
    monkeypatch.setattr(opencv_path, "laplacian_energy", counting_one_pass)
    return calls


@pytest.mark.parametrize("scorer", list(SCORERS))
def test_scores_and_tokens_equal_with_a_shared_pyramid(scorer: str) -> None:
    x = torch.rand(3, 3, 80, 112, generator=torch.Generator().manual_seed(0))
    g = QuadtreeGeometry.create(80, 112, 8, 32)
    pyramid = cell_pyramid(x, g)
    shared = allocate(x, g.min_budget + 3 * 9, 8, 32, scorer=scorer, pyramid=pyramid)
    alone = allocate(x, g.min_budget + 3 * 9, 8, 32, scorer=scorer)
    assert torch.equal(shared.boxes, alone.boxes)
    assert torch.equal(tokenize(x, shared, pyramid).tokens, tokenize(x, alone).tokens)


def test_allocate_then_tokenize_reduces_each_image_once(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(2, 3, 64, 64)
    g = QuadtreeGeometry.create(64, 64, 8, 32)
    calls = _count_builds(monkeypatch)
    pyramid = cell_pyramid(x, g)
    tokenize(x, allocate(x, 4 + 3 * 5, 8, 32, pyramid=pyramid), pyramid)
    assert len(calls) == g.depth  # one REDUCE per level above the image, nothing rebuilt
    calls.clear()
    tokenize(x, allocate(x, 4 + 3 * 5, 8, 32))
    assert len(calls) == 2 * g.depth  # without sharing: the scorer's and the tokenizer's


def test_a_pyramid_of_other_images_is_refused() -> None:
    x = torch.rand(2, 3, 64, 64)
    other = cell_pyramid(torch.rand(2, 3, 64, 96), QuadtreeGeometry.create(64, 96, 8, 32))
    with pytest.raises(ValueError, match=r"pyramid: level 0 must have shape \(2, 3, 64, 64\)"):
        allocate(x, 7, 8, 32, pyramid=other)
    with pytest.raises(ValueError, match="pyramid: expected 3 levels"):
        tokenize(x, allocate(x, 4, 8, 32), other[:2])


@pytest.mark.parametrize("height", [64, 72])
def test_laplacian_scores_use_the_fused_energy_and_equal_the_shared_pyramids(
    height: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import pyrtok.allocation.laplacian_scorer as scorers

    x = torch.rand(3, 3, height, 96, generator=torch.Generator().manual_seed(4))
    g = QuadtreeGeometry.create(height, 96, 8, 32)
    calls: list[int] = []
    original = scorers.laplacian_energy

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(scorers, "laplacian_energy", counting)
    alone = scorers.laplacian_scores(x, 8, 32)
    assert len(calls) == 1  # one fused pass (a Triton kernel on CUDA) serves the scorer
    shared = scorers.laplacian_scores(x, 8, 32, pyramid=cell_pyramid(x, g))
    assert len(calls) == 1  # with a shared pyramid, its levels are read instead
    for a, b in zip(alone, shared, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
