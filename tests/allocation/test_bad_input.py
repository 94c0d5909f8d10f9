"""Bad input gets a ValueError/TypeError that names the argument and the feasible values."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from pyrtok import sync_checks
from pyrtok.allocation import (
    STRATEGIES,
    FrequencyAwareAllocator,
    LaplacianScorer,
    MixedResolutionTokenizer,
    QuadtreeGeometry,
    allocate,
    cell_pyramid,
    detokenize,
    laplacian_scores,
    tokenize,
)


def test_budget_below_the_number_of_roots() -> None:
    with pytest.raises(
        ValueError,
        match=r"budget: 15 tokens is below one token per root.*16 root tokens"
        r".*the smallest feasible budget is 16",
    ):
        allocate(torch.rand(1, 3, 512, 512), 15, min_patch=16, max_patch=128)


def test_budget_above_full_detail() -> None:
    with pytest.raises(
        ValueError,
        match=r"budget: 1027 tokens exceeds full detail.*largest "
        r"feasible budget is 1024",
    ):
        allocate(torch.rand(1, 3, 512, 512), 1027, min_patch=16, max_patch=128)


@pytest.mark.parametrize(
    ("budget", "below", "above"), [(65, 64, 67), (66, 64, 67), (101, 100, 103)]
)
def test_infeasible_budget_names_the_nearest(budget: int, below: int, above: int) -> None:
    with pytest.raises(
        ValueError,
        match=rf"budget: {budget} tokens is not feasible.*16 \+ 3\*s \(s = 0\.\.336\).*nearest "
        rf"feasible budgets are {below} and {above}$",
    ):
        allocate(torch.rand(1, 3, 512, 512), budget, min_patch=16, max_patch=128)


def test_uniform_needs_a_regular_grid() -> None:
    with pytest.raises(
        ValueError,
        match=r"uniform strategy needs cells \* 4\*\*d tokens, i\.e\. "
        r"one of \[16, 64, 256, 1024\]; the nearest are 64 and 256",
    ):
        allocate(torch.rand(1, 3, 512, 512), 100, 16, 128, strategy="uniform")


@pytest.mark.parametrize("budget", [64.0, "64", True, None])
def test_budget_type(budget: object) -> None:
    with pytest.raises(TypeError, match="budget: expected an int"):
        allocate(torch.rand(1, 3, 64, 64), budget, 16, 64)  # type: ignore[arg-type]


@pytest.mark.parametrize(("min_patch", "max_patch"), [(16, 48), (16, 8), (12, 64), (16, 80)])
def test_max_patch_not_a_power_of_two_multiple(min_patch: int, max_patch: int) -> None:
    with pytest.raises(
        ValueError,
        match=rf"max_patch: must be min_patch times a power of two.*"
        rf"got max_patch={max_patch}",
    ):
        allocate(torch.rand(1, 3, 256, 256), 16, min_patch, max_patch)


def test_patch_size_types_and_values() -> None:
    with pytest.raises(TypeError, match="min_patch: expected an int"):
        QuadtreeGeometry.create(64, 64, 16.0, 64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_patch: must be >= 1"):
        QuadtreeGeometry.create(64, 64, 0, 64)


@pytest.mark.parametrize("size", [(100, 200), (200, 127), (64, 64)])
def test_image_smaller_than_max_patch(size: tuple[int, int]) -> None:
    with pytest.raises(
        ValueError,
        match=rf"images: each side must be >= max_patch=128.*got an "
        rf"image of {size[0]}x{size[1]}",
    ):
        allocate(torch.rand(1, 3, *size), 16, 16, 128)


_SCORED = ["greedy", "optimal", "proportional", "threshold"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize(
    ("strategy", "budget"),
    [(s, b) for s in _SCORED for b in (4, 16, 7, [4, 7], [4, 16])]
    + [("uniform", 4), ("uniform", 16)],
)
def test_non_finite_images(bad: float, strategy: str, budget: int | list[int]) -> None:
    """Every strategy and budget: the scored ones (7), the single possible trees (4: coarsest,
    16: full detail, which score nothing) and mixes of the two; uniform scores nothing."""
    x = torch.rand(2, 3, 64, 64)
    x[1, 0, 5, 7] = bad
    with pytest.raises(ValueError, match="images: contains NaN or Inf"):
        allocate(x, budget, 16, 32, strategy=strategy)
    with pytest.raises(ValueError, match="images: contains NaN or Inf"):
        allocate(x, budget, 16, 32, strategy=strategy, scorer="blur")
    pyramid = cell_pyramid(x, QuadtreeGeometry.create(64, 64, 16, 32))
    with pytest.raises(ValueError, match="images: contains NaN or Inf"):
        allocate(x, budget, 16, 32, strategy=strategy, pyramid=pyramid)


@pytest.mark.parametrize(
    ("strategy", "scorer", "budget", "passes"),
    [
        ("greedy", "laplacian", 7, 0),  # the scorer's energy pass checks the pixels
        ("greedy", laplacian_scores, [7, 10], 0),
        ("proportional", LaplacianScorer(log=True), 7, 0),
        ("threshold", "laplacian", 7, 1),  # its cell weights check the pixels themselves
        ("greedy", "laplacian", 16, 1),  # full detail: nothing is scored
        ("uniform", "laplacian", 4, 1),
        ("greedy", "blur", 7, 1),  # its own check, not allocate's too
        ("greedy", lambda im, lo, hi: [torch.rand(2, 2, 2)], 7, 1),
        (lambda request: STRATEGIES["greedy"](request), "laplacian", 7, 1),  # a custom strategy
    ],
)
def test_allocate_reads_the_pixels_for_nan_in_no_extra_pass(
    monkeypatch: pytest.MonkeyPatch, strategy: Any, scorer: Any, budget: Any, passes: int
) -> None:
    """allocate() leaves the NaN / Inf check to a built-in scorer that runs under a built-in
    strategy (the laplacian scorer reads it off its energy pass: no ``aminmax`` pass at all),
    and makes it itself (one ``aminmax`` pass) otherwise."""
    calls: list[tuple[int, ...]] = []
    aminmax = torch.aminmax

    def counted(x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(tuple(x.shape))
        return aminmax(x, *args, **kwargs)

    monkeypatch.setattr(torch, "aminmax", counted)
    allocate(torch.rand(2, 3, 64, 64), budget, 16, 32, strategy=strategy, scorer=scorer)
    assert calls == [(2, 3, 64, 64)] * passes


def test_laplacian_scorer_names_non_finite_pixels_and_energy_overflow() -> None:
    """Alone, the laplacian scorer finds NaN / Inf pixels through their band energy (no extra
    pass over the input unless it is NaN / Inf) and names them; finite pixels too large to
    square in float32 get the energy's message."""
    x = torch.rand(2, 3, 64, 64)
    x[1, 0, 5, 7] = float("nan")
    with pytest.raises(ValueError, match="images: contains NaN or Inf"):
        laplacian_scores(x, 16, 32)
    huge = torch.rand(2, 3, 64, 64) * 1e30
    with pytest.raises(ValueError, match="band energy is NaN or Inf"):
        laplacian_scores(huge, 16, 32)


@pytest.mark.parametrize("shared", [False, True])
def test_laplacian_scorer_reads_non_finite_pixels_off_the_energy(shared: bool) -> None:
    """Called on its own, the scorer checks the values through their band energy (no extra
    pass over the input), with or without a shared pyramid; ``sync_checks(False)`` skips it."""
    x = torch.rand(2, 3, 64, 64)
    x[1, 0, 5, 7] = float("nan")
    pyramid = cell_pyramid(x, QuadtreeGeometry.create(64, 64, 16, 32)) if shared else None
    with pytest.raises(ValueError, match="images: contains NaN or Inf"):
        laplacian_scores(x, 16, 32, pyramid=pyramid)
    with sync_checks(False):
        assert laplacian_scores(x, 16, 32, pyramid=pyramid)[0][1].isnan().any()
        allocate(x, 7, 16, 32)  # no check, no error


def test_images_shape_dtype_and_type() -> None:
    with pytest.raises(ValueError, match=r"images: expected shape \(B, C, H, W\), got 3 dims"):
        allocate(torch.rand(3, 64, 64), 4, 16, 32)
    with pytest.raises(TypeError, match="images: expected a floating dtype"):
        allocate(torch.zeros(1, 3, 64, 64, dtype=torch.uint8), 4, 16, 32)
    with pytest.raises(TypeError, match=r"images: expected a torch\.Tensor, got ndarray"):
        allocate(torch.rand(1, 3, 64, 64).numpy(), 4, 16, 32)  # type: ignore[arg-type]


def test_unknown_strategy_and_scorer() -> None:
    x = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match=r"strategy: unknown name 'best'; valid names are \["):
        allocate(x, 4, 16, 32, strategy="best")
    with pytest.raises(
        ValueError,
        match=r"scorer: unknown name 'sobel'; valid names are "
        r"\['laplacian', 'entropy', 'blur'\]",
    ):
        allocate(x, 4, 16, 32, scorer="sobel")
    with pytest.raises(TypeError, match="scorer: expected a name"):
        allocate(x, 4, 16, 32, scorer=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strategy: unknown name"):
        FrequencyAwareAllocator(16, strategy="best")


def test_custom_scorer_with_wrong_shapes() -> None:
    x = torch.rand(2, 3, 64, 64)
    with pytest.raises(
        ValueError,
        match=r"scorer: score map 0 must have shape \(2, 2, 2\), got "
        r"\(2, 1, 1\)",
    ):
        allocate(x, 7, 16, 32, scorer=lambda im, lo, hi: [torch.zeros(2, 1, 1)])
    with pytest.raises(ValueError, match="scorer: expected a list of 1 score maps"):
        allocate(x, 7, 16, 32, scorer=lambda im, lo, hi: [])
    with pytest.raises(ValueError, match="scorer: score map 0 has NaN"):
        allocate(x, 7, 16, 32, scorer=lambda im, lo, hi: [torch.full((2, 2, 2), float("nan"))])


def test_allocation_used_with_images_of_another_size() -> None:
    allocation = allocate(torch.rand(2, 3, 128, 128), 10, 16, 64)
    with pytest.raises(
        ValueError,
        match=r"images: the allocation was made for 128x128 images, "
        r"got 128x192",
    ):
        tokenize(torch.rand(2, 3, 128, 192), allocation)
    with pytest.raises(ValueError, match="images: the allocation holds 2 images, got a batch of 3"):
        MixedResolutionTokenizer()(torch.rand(3, 3, 128, 128), allocation)
    with pytest.raises(TypeError, match="allocation: expected an Allocation"):
        tokenize(torch.rand(2, 3, 128, 128), "allocation")  # type: ignore[arg-type]


def test_detokenize_with_tokens_of_the_wrong_shape() -> None:
    x = torch.rand(2, 3, 128, 128)
    allocation = allocate(x, 10, 16, 64)
    tokens = tokenize(x, allocation).tokens
    with pytest.raises(ValueError, match=r"tokens: expected shape \(2, 10, C \* 256\)"):
        detokenize(tokens[:, :9], allocation)
    with pytest.raises(ValueError, match=r"tokens: expected shape"):
        detokenize(tokens[..., :100], allocation)
    with pytest.raises(TypeError, match="tokens: expected a floating dtype"):
        detokenize(tokens.long(), allocation)


def test_allocator_module_validates_at_construction() -> None:
    with pytest.raises(ValueError, match="max_patch: must be min_patch times a power of two"):
        FrequencyAwareAllocator(64, min_patch=16, max_patch=96)
    with pytest.raises(ValueError, match="budget: expected an int >= 1"):
        FrequencyAwareAllocator(0)


def test_index_out_of_range() -> None:
    allocation = allocate(torch.rand(2, 3, 64, 64), 4, 16, 32)
    with pytest.raises(IndexError, match="index: 2 is out of range for an allocation of 2"):
        allocation[2]
