"""Scorers against per-node loop references, and their invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pyrtok.allocation import (
    SCORERS,
    blur_scores,
    entropy_scores,
    laplacian_scores,
    node_scoring,
    threshold_weights,
)
from pyrtok.allocation.quadtree import QuadtreeGeometry
from tests.allocation.reference import entropy_of, laplacian_node_scores


def image(batch: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("min_patch", "max_patch", "size"), [(8, 32, (64, 96)), (4, 32, (32, 64))])
def test_laplacian_matches_the_loop_reference(
    min_patch: int, max_patch: int, size: tuple[int, int]
) -> None:
    x = image(2, *size).double()
    scores = laplacian_scores(x, min_patch, max_patch)
    for b in range(2):
        reference = laplacian_node_scores(x[b], min_patch, max_patch)
        for got, expected in zip(scores, reference, strict=True):
            torch.testing.assert_close(got[b], expected, rtol=1e-10, atol=1e-12)


def test_laplacian_gains_add_up_to_the_band_energy_a_cell_drops() -> None:
    # Splitting everything recovers every band below the cell's level, in pixel units.
    x = image(1, 64, 64).double()
    from pyrtok import band_energy, laplacian_pyramid

    bands = laplacian_pyramid(x, levels=3)
    energy = band_energy(bands, 64)[0, :, 0, 0]
    scores = laplacian_scores(x, 16, 64)
    total = sum(float(s.sum()) for s in scores)
    assert total == pytest.approx(float(energy[0] + 4 * energy[1]), rel=1e-12)


def test_entropy_matches_numpy_histograms() -> None:
    x = image(2, 64, 96, seed=3)
    scores = entropy_scores(x, 16, 32, bins=64)
    gray = (0.2989 * x[:, 0] + 0.5870 * x[:, 1] + 0.1140 * x[:, 2]).numpy()
    for b in range(2):
        for r in range(2):
            for c in range(3):
                block = gray[b, 32 * r : 32 * r + 32, 32 * c : 32 * c + 32]
                assert float(scores[0][b, r, c]) == pytest.approx(entropy_of(block, 64), abs=1e-5)


def test_entropy_of_simple_patches() -> None:
    x = torch.zeros(1, 1, 32, 64)
    x[..., 32:] = 0.5
    x[..., 32::2] = 0.9  # right cell: two grey values, half each
    scores = entropy_scores(x, 16, 32)
    assert scores[0][0].tolist() == [[0.0, pytest.approx(1.0)]]


def test_blur_matches_quadformer_formula() -> None:
    x = image(1, 64, 64, seed=4)
    scores = blur_scores(x, 16, 64)
    small = F.interpolate(x, size=(16, 16), mode="bilinear", antialias=True)
    blurry = F.interpolate(small, size=(64, 64), mode="bilinear")
    mse = float((blurry - x).square().mean())
    assert float(scores[0][0, 0, 0]) == pytest.approx((mse * 64) ** 0.5, rel=1e-5)


@pytest.mark.parametrize("name", list(SCORERS))
def test_flat_images_score_zero_and_texture_scores_high(name: str) -> None:
    scorer = SCORERS[name]
    flat = torch.full((1, 3, 128, 128), 0.25)
    assert all(float(s.abs().max()) < 1e-6 for s in scorer(flat, 16, 64))
    x = flat.clone()
    x[..., :32, :32] = image(1, 32, 32, seed=5)
    scores = scorer(x, 16, 64)
    assert float(scores[1][0, 0, 0]) > 0.1
    assert float(scores[1][0, 3, 3]) < 1e-6  # a node far from the texture


@pytest.mark.parametrize("name", list(SCORERS))
def test_batched_equals_one_by_one_and_shapes(name: str) -> None:
    scorer = SCORERS[name]
    x = image(3, 100, 150, seed=6)
    g = QuadtreeGeometry.create(100, 150, 8, 32)
    scores = scorer(x, 8, 32)
    assert [tuple(s.shape) for s in scores] == [(3, *g.grid(d)) for d in range(g.depth)]
    for i in range(3):
        alone = scorer(x[i : i + 1], 8, 32)
        for a, s in zip(alone, scores, strict=True):
            torch.testing.assert_close(a[0], s[i], rtol=1e-5, atol=1e-7)
    assert all(s.dtype == torch.float32 for s in scores)
    assert all(s.dtype == torch.float64 for s in scorer(x.double(), 8, 32))


def test_threshold_weights_follow_the_seed_rule() -> None:
    x = torch.full((1, 1, 64, 128), 0.5)
    x[..., 64:] = torch.from_numpy(np.indices((64, 64)).sum(0) % 2).float()  # checkerboard
    assert threshold_weights(x, 16, 64)[0].tolist() == [pytest.approx([0.01, 0.05])]
    # The residual's (DC) energy counts as "low" in the seed's rule: brighten the image and
    # the checkerboard cell drops to 1% too.
    assert threshold_weights(x + 4.0, 16, 64)[0].tolist() == [pytest.approx([0.01, 0.01])]


def test_entropy_bins_argument() -> None:
    with pytest.raises(ValueError, match="bins: expected an int >= 2"):
        entropy_scores(torch.rand(1, 1, 32, 32), 16, 32, bins=1)


@pytest.mark.parametrize("name", list(SCORERS))
def test_blocked_batches_give_the_same_scores(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from pyrtok.allocation import scorers

    x = image(5, 64, 96, seed=7)
    whole = SCORERS[name](x, 16, 32)
    monkeypatch.setattr(node_scoring, "_CHUNK_VALUES", 2 * x[0].numel())  # blocks of 2, 2 and 1
    blocked = SCORERS[name](x, 16, 32)
    for a, b in zip(whole, blocked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    weights = scorers.threshold_weights(x, 16, 32)
    monkeypatch.setattr(node_scoring, "_CHUNK_VALUES", 1 << 30)
    assert torch.equal(weights, scorers.threshold_weights(x, 16, 32))
