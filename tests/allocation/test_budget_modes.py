"""Budget modes and per-image budgets: per-image budgets equal per-image calls exactly,
``"at_most"`` never exceeds and is maximal, ``"per_pixel"`` follows area, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.allocation import STRATEGIES, Allocation, FrequencyAwareAllocator, allocate
from pyrtok.allocation.budgets import PER_PIXEL_AREA
from pyrtok.allocation.cell_pyramid import cell_pyramid
from pyrtok.allocation.quadtree import QuadtreeGeometry


def _images(batch: int, height: int = 96, width: int = 128) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))


def _assert_same(batch: Allocation, row: int, alone: Allocation) -> None:
    n = int(alone.lengths[0])
    assert int(batch.lengths[row]) == n
    assert torch.equal(batch.boxes[row, :n], alone.boxes[0, :n])
    assert torch.equal(batch.leaf_level[row, :n], alone.leaf_level[0, :n])
    assert torch.equal(batch.cell_counts[row], alone.cell_counts[0])


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "uniform"])
def test_per_image_budgets_equal_per_image_calls(strategy: str) -> None:
    x = _images(4)  # 12 cells of 32 px, min_patch 8: budgets 12 + 3s up to 192
    budgets = [15, 60, 12, 192]
    batch = allocate(x, budgets, 8, 32, strategy)
    assert batch.lengths.tolist() == budgets
    for b, budget in enumerate(budgets):
        _assert_same(batch, b, allocate(x[b : b + 1], budget, 8, 32, strategy))


def test_per_image_budgets_with_a_shared_pyramid_and_the_module() -> None:
    x = _images(3)
    pyramid = cell_pyramid(x, QuadtreeGeometry.create(96, 128, 8, 32))
    budgets = [27, 27, 48]
    batch = FrequencyAwareAllocator(budgets, 8, 32, order="morton")(x, pyramid)
    for b, budget in enumerate(budgets):
        _assert_same(batch, b, allocate(x[b : b + 1], budget, 8, 32, order="morton"))


def test_uniform_strategy_with_per_image_budgets() -> None:
    batch = allocate(_images(2), [12, 48], 8, 32, "uniform")
    assert batch.level_counts().tolist() == [[0, 0, 12], [0, 48, 0]]


def test_scores_are_computed_once_for_the_batch() -> None:
    calls = []

    def scorer(images: torch.Tensor, min_patch: int, max_patch: int) -> list[torch.Tensor]:
        calls.append(images.shape[0])
        g = QuadtreeGeometry.create(images.shape[2], images.shape[3], min_patch, max_patch)
        return [torch.rand(images.shape[0], *g.grid(d)) for d in range(g.depth)]

    allocate(_images(3), [15, 18, 21], 8, 32, scorer=scorer)
    assert calls == [3]


def test_a_custom_strategy_still_gets_an_int_number_of_splits() -> None:
    seen = []

    def strategy(request):  # type: ignore[no-untyped-def]
        seen.append((request.images.shape[0], request.splits))
        return STRATEGIES["greedy"](request)

    allocate(_images(3), [15, 21, 15], 8, 32, strategy)
    assert sorted(seen) == [(1, 3), (2, 1)]


def _largest_feasible_at_most(geometry: QuadtreeGeometry, budget: int) -> int:
    feasible = [geometry.min_budget + 3 * s for s in range(geometry.max_splits + 1)]
    return max(b for b in feasible if b <= budget)


@settings(max_examples=25, deadline=None)
@given(
    height=st.integers(32, 100),
    width=st.integers(32, 100),
    budgets=st.lists(st.integers(0, 220), min_size=1, max_size=3),
)
def test_at_most_never_exceeds_and_is_maximal(height: int, width: int, budgets: list[int]) -> None:
    geometry = QuadtreeGeometry.create(height, width, 8, 32)
    budgets = [max(b, geometry.min_budget) for b in budgets]
    x = torch.rand(len(budgets), 3, height, width, generator=torch.Generator().manual_seed(0))
    lengths = allocate(x, budgets, 8, 32, budget_mode="at_most").lengths.tolist()
    for length, budget in zip(lengths, budgets, strict=True):
        assert length <= budget
        assert length == _largest_feasible_at_most(geometry, budget)
        assert length == geometry.full_budget or length + 3 > budget


def test_at_most_of_a_feasible_budget_is_that_budget() -> None:
    x = _images(1)
    assert torch.equal(
        allocate(x, 60, 8, 32, budget_mode="at_most").boxes, allocate(x, 60, 8, 32).boxes
    )


def test_per_pixel_counts_follow_area() -> None:
    density = 1000  # tokens per 512 x 512 px
    sizes = [(96, 128), (128, 96), (64, 192), (128, 128), (96, 256)]
    for height, width in sizes:
        geometry = QuadtreeGeometry.create(height, width, 8, 32)
        length = int(
            allocate(_images(1, height, width), density, 8, 32, budget_mode="per_pixel").lengths[0]
        )
        wanted = density * height * width / PER_PIXEL_AREA
        assert geometry.min_budget <= length <= wanted < length + 3


def test_per_pixel_is_brought_into_the_feasible_range() -> None:
    x = _images(2)
    low, high = allocate(x, [1, 10**6], 8, 32, budget_mode="per_pixel").lengths.tolist()
    assert (low, high) == (12, 192)  # one token per cell, full detail


def test_per_pixel_takes_a_float_density() -> None:
    length = allocate(_images(1), 1000.5, 8, 32, budget_mode="per_pixel").lengths.item()
    assert length == 12 + 3 * ((46 - 12) // 3)  # floor(1000.5 * 96 * 128 / 512**2) = 46


def test_a_budget_sequence_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match=r"budget: expected one int or one per image \(2\), got 3"):
        allocate(_images(2), [12, 15, 18], 8, 32)
    with pytest.raises(ValueError, match=r"budget: expected one int or one per image \(2\), got 1"):
        FrequencyAwareAllocator([12], 8, 32)(_images(2))


def test_an_unknown_budget_mode_lists_the_valid_ones() -> None:
    message = r"budget_mode: expected one of \['exact', 'at_most', 'per_pixel'\], got 'most'"
    with pytest.raises(ValueError, match=message):
        allocate(_images(1), 12, 8, 32, budget_mode="most")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        FrequencyAwareAllocator(12, 8, 32, budget_mode="most")  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["exact", "at_most"])
def test_a_budget_below_the_roots_names_the_minimum(mode: str) -> None:
    with pytest.raises(
        ValueError, match=r"budget: 11 tokens is below one token per root.*budget is 12"
    ):
        allocate(_images(2), [12, 11], 8, 32, budget_mode=mode)  # type: ignore[arg-type]


def test_exact_names_the_nearest_feasible_for_a_row() -> None:
    with pytest.raises(ValueError, match="nearest feasible budgets are 12 and 15"):
        allocate(_images(2), [12, 13], 8, 32)


def test_bad_budget_values() -> None:
    with pytest.raises(TypeError, match=r"budget: expected an int number of tokens, got 12.5"):
        allocate(_images(1), 12.5, 8, 32, budget_mode="at_most")
    with pytest.raises(ValueError, match=r"budget: expected a density > 0 .* got 0"):
        allocate(_images(1), 0, 8, 32, budget_mode="per_pixel")
    with pytest.raises(ValueError, match=r"budget: expected an int >= 1 number of tokens"):
        FrequencyAwareAllocator([12, 0.5], 8, 32)
