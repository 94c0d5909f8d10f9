"""LaplacianScorer's options (#13 item 4) and the scorers' pixel range (#13 item 5)."""

from __future__ import annotations

import pytest
import torch

from pyrtok.allocation import LaplacianScorer, allocate, laplacian_scores
from pyrtok.allocation.quadtree import QuadtreeGeometry, sum_pool
from pyrtok.pyramid import band_energy, laplacian_pyramid


def _photo(seed: int = 0, height: int = 128, width: int = 192) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    smooth = torch.nn.functional.interpolate(
        torch.rand(2, 3, height // 16, width // 16, generator=g), size=(height, width),
        mode="bilinear",
    )  # fmt: skip
    return (0.7 * smooth + 0.3 * torch.rand(2, 3, height, width, generator=g)).clamp(0, 1)


def test_the_default_is_the_recovered_band() -> None:
    x = _photo()
    for a, b in zip(LaplacianScorer()(x, 16, 64), laplacian_scores(x, 16, 64), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("weights", [(1.0,), (0.0, 1.0), (0.5, 2.0)])
def test_band_weights_score_every_node_by_the_weighted_pixel_energy(weights: tuple) -> None:
    x = _photo(1)
    energy = band_energy(laplacian_pyramid(x, levels=3), 16)  # (B, 3, 8, 12), coefficients
    pixel = sum(w * 4**j * energy[:, j] for j, w in enumerate(weights))
    scores = LaplacianScorer(bands=weights)(x, 16, 64)
    for d, score in enumerate(scores):
        torch.testing.assert_close(score, sum_pool(pixel, 2 ** (2 - d)), rtol=1e-5, atol=1e-6)


def test_all_bands_is_weights_of_one() -> None:
    x = _photo(2)
    for a, b in zip(
        LaplacianScorer(bands="all")(x, 16, 64), LaplacianScorer(bands=(1, 1))(x, 16, 64),
        strict=True,
    ):  # fmt: skip
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "scorer", [LaplacianScorer(log=True), LaplacianScorer(bands=(0, 1), log=True)]
)
def test_log_energy_changes_nothing_under_greedy(scorer: LaplacianScorer) -> None:
    x = _photo(3)
    plain = LaplacianScorer(bands=scorer.bands)
    for budget in (9, 30, 51):
        assert torch.equal(allocate(x, budget, 16, 64, scorer=scorer).boxes,
                           allocate(x, budget, 16, 64, scorer=plain).boxes)  # fmt: skip


def test_surround_prefers_an_isolated_detail_to_extended_texture() -> None:
    # Bright texture over the left half; one small, faint blob on the flat right half.
    g = torch.Generator().manual_seed(4)
    x = torch.full((1, 1, 128, 256), 0.5)
    x[..., :, :128] += 0.12 * (torch.rand(1, 1, 128, 128, generator=g) - 0.5)
    x[..., 72:80, 200:208] += 0.15
    blob = (1, 3)  # its 64-px cell: row 1, column 3
    default = LaplacianScorer()(x, 16, 64)[0][0]
    surround = LaplacianScorer(surround=2.0)(x, 16, 64)[0][0]
    assert default.flatten().argmax() != blob[0] * 4 + blob[1]  # texture outscores the blob
    assert surround.flatten().argmax() == blob[0] * 4 + blob[1]  # the isolated detail wins


@pytest.mark.parametrize(
    "scorer", ["laplacian", "blur", LaplacianScorer(bands=(0, 1), surround=1.0, log=True)]
)
def test_one_affine_map_of_the_pixels_gives_the_same_allocation(scorer: object) -> None:
    x = _photo(5)
    normalised = (x - 0.45) / 0.226  # one mean and std for all channels
    for budget in (12, 39):
        assert torch.equal(allocate(x, budget, 16, 64, scorer=scorer).boxes,
                           allocate(normalised, budget, 16, 64, scorer=scorer).boxes)  # fmt: skip


def test_entropy_needs_unit_pixels() -> None:
    x = _photo(6)
    allocate(x, 12, 16, 64, scorer="entropy")
    allocate(x * (1 + 5e-4), 12, 16, 64, scorer="entropy")  # resampling overshoot is tolerated
    with pytest.raises(ValueError, match=r"entropy scorer bins pixel values in \[0, 1\], got "
                       r"values in \[\d+, \d+\]; .*divide 8-bit pixels by 255"):  # fmt: skip
        allocate((x * 255).round(), 12, 16, 64, scorer="entropy")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bands": "mid"}, r"bands: expected 'recovered', 'all' or a sequence of band weights"),
        ({"bands": (1.0, -1.0)}, r"bands: band weights must be numbers >= 0, one of them > 0"),
        ({"bands": (0.0, 0.0)}, r"bands: band weights must be numbers >= 0, one of them > 0"),
        ({"surround": -1.0}, r"surround: expected an exponent >= 0, got -1.0"),
        ({"surround": True}, r"surround: expected an exponent >= 0, got True"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LaplacianScorer(**kwargs)


def test_name_says_the_options_and_the_scores_fit_any_geometry() -> None:
    assert LaplacianScorer().__name__ == "laplacian()"
    assert LaplacianScorer(bands=(0, 1), surround=1.0).__name__ == (
        "laplacian(bands=(0, 1), surround=1.0)"
    )
    g = QuadtreeGeometry.create(100, 140, 8, 32)
    x = torch.rand(1, 3, 100, 140)
    scores = LaplacianScorer(surround=1.0, log=True)(x, 8, 32)
    assert [tuple(s.shape[1:]) for s in scores] == [g.grid(d) for d in range(g.depth)]
    assert all(bool(s.isfinite().all()) for s in scores)
