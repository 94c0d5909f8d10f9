"""Exact budgets, valid quadtrees, determinism and the Allocation container."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.allocation import (
    SCORERS,
    STRATEGIES,
    Allocation,
    FrequencyAwareAllocator,
    QuadtreeGeometry,
    allocate,
)

PATCHES = [(8, 16), (8, 32), (4, 32), (16, 64), (16, 16)]


def check_tiling(allocation: Allocation) -> None:
    """Every image's leaves tile it exactly once (its leaf grid: the image rounded up to whole
    ``min_patch`` leaves), none starts outside it, and they agree with their levels."""
    g = allocation.geometry
    height, width = g.padded_size
    p = g.min_patch
    inside = torch.zeros(height, width, dtype=torch.long)
    inside[: -(-g.height // p) * p, : -(-g.width // p) * p] = 1
    for b in range(allocation.batch_size):
        cover = torch.zeros(height, width, dtype=torch.long)
        count = int(allocation.lengths[b])
        assert bool(allocation.mask[b, :count].all())
        assert not bool(allocation.mask[b, count:].any())
        for (y, x, size), level in zip(
            allocation.boxes[b, :count].tolist(),
            allocation.leaf_level[b, :count].tolist(),
            strict=True,
        ):
            assert size == g.min_patch << level
            assert y % size == 0
            assert x % size == 0
            assert y < g.height
            assert x < g.width
            assert y + size < g.height + p  # past the image by less than one leaf
            assert x + size < g.width + p
            cover[y : y + size, x : x + size] += 1
        assert torch.equal(cover, inside)
    assert torch.equal(allocation.cell_counts.flatten(1).sum(1), allocation.lengths)


@settings(max_examples=40, deadline=None)
@given(
    patches=st.sampled_from(PATCHES),
    strategy=st.sampled_from(list(STRATEGIES)),
    scorer=st.sampled_from(list(SCORERS)),
    data=st.data(),
)
def test_every_strategy_meets_every_feasible_budget_exactly(
    patches: tuple[int, int], strategy: str, scorer: str, data: st.DataObject
) -> None:
    min_patch, max_patch = patches
    height = data.draw(st.integers(max_patch, 3 * max_patch + 5), label="height")
    width = data.draw(st.integers(max_patch, 3 * max_patch + 5), label="width")
    g = QuadtreeGeometry.create(height, width, min_patch, max_patch)
    if strategy == "uniform":
        budget = data.draw(st.sampled_from(g.uniform_budgets()), label="budget")
    else:
        budget = g.min_budget + 3 * data.draw(st.integers(0, g.max_splits), label="splits")
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    allocation = allocate(x, budget, min_patch, max_patch, strategy, scorer)
    assert allocation.lengths.tolist() == [budget, budget]
    assert allocation.boxes.shape == (2, budget, 3)
    check_tiling(allocation)


def test_full_detail_and_one_token_per_root() -> None:
    x = torch.rand(1, 3, 200, 300)
    # 12 whole cells of 64 px, 6 roots of 32 px and 31 of 16 px along the bottom/right edges.
    roots = {2: 12, 1: 6, 0: 31}
    for strategy in ("greedy", "optimal", "proportional", "threshold", "uniform"):
        full = allocate(x, 13 * 19, 16, 64, strategy)  # ceil(200 / 16) * ceil(300 / 16)
        assert bool((full.leaf_level == 0).all())
        check_tiling(full)
        coarse = allocate(x, 49, 16, 64, strategy)
        levels, counts = coarse.leaf_level.unique(return_counts=True)
        assert dict(zip(levels.tolist(), counts.tolist(), strict=True)) == roots
        check_tiling(coarse)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic_and_independent_of_the_batch(strategy: str) -> None:
    x = torch.rand(4, 3, 160, 96, generator=torch.Generator().manual_seed(0))
    budget = 60 if strategy == "uniform" else 27  # 15 cells of 32 px, min_patch 8
    first = allocate(x, budget, 8, 32, strategy)
    again = allocate(x.clone(), budget, 8, 32, strategy)
    for name in ("boxes", "leaf_level", "lengths", "mask", "cell_counts"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    for i in range(4):
        alone = allocate(x[i : i + 1], budget, 8, 32, strategy)
        assert torch.equal(alone.boxes, first[i].boxes)


def test_flat_image_splits_breadth_first_in_either_order() -> None:
    x = torch.full((1, 1, 64, 64), 0.5)
    # One 64-px cell: root split, then the first two children in raster order.
    morton = [[0, 0, 16], [0, 16, 16], [16, 0, 16], [16, 16, 16]]
    morton += [[0, 32, 16], [0, 48, 16], [16, 32, 16], [16, 48, 16], [32, 0, 32], [32, 32, 32]]
    assert allocate(x, 10, 16, 64, order="morton").boxes[0].tolist() == morton
    raster = allocate(x, 10, 16, 64).boxes[0].tolist()
    assert raster == sorted(morton, key=lambda box: (box[0], box[1]))


def test_raster_order_at_full_detail_is_the_patch_grid() -> None:
    x = torch.rand(2, 3, 96, 64)
    full = allocate(x, 24, 16, 32)
    rows, cols = torch.meshgrid(torch.arange(6), torch.arange(4), indexing="ij")
    grid = torch.stack([rows.flatten() * 16, cols.flatten() * 16], dim=1)
    assert torch.equal(full.boxes[0, :, :2], grid)
    assert torch.equal(full.boxes[1, :, :2], grid)


def test_orders_hold_the_same_leaves_and_tree() -> None:
    x = torch.rand(3, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    raster = allocate(x, 33, 8, 32)
    morton = allocate(x, 33, 8, 32, order="morton")
    assert (raster.order, morton.order, morton[1:].order) == ("raster", "morton", "morton")
    for b in range(3):
        assert sorted(map(tuple, raster.boxes[b].tolist())) == sorted(
            map(tuple, morton.boxes[b].tolist())
        )
    for a, b in zip(raster.nodes(), morton.nodes(), strict=True):
        assert torch.equal(a, b)


def test_nodes_are_the_tree_of_the_leaves() -> None:
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    allocation = allocate(x, 6 + 3 * 7, 8, 32)
    nodes = allocation.nodes()
    g = allocation.geometry
    for b in range(2):
        # Each leaf is a node that exists and is not split; 4 children per split.
        for (y, x0, size), k in zip(
            allocation.boxes[b].tolist(), allocation.leaf_level[b].tolist(), strict=True
        ):
            d = g.depth_of_level(k)
            assert bool(nodes[d][b, y // size, x0 // size])
            if d < g.depth:
                assert not bool(allocation.splits[d][b, y // size, x0 // size])
        assert sum(int(n[b].sum()) for n in nodes[1:]) == 4 * 7


def test_index_conventions_convert_both_ways() -> None:
    g = QuadtreeGeometry.create(64, 64, 8, 64)
    assert [g.level_of_depth(d) for d in range(4)] == [3, 2, 1, 0]
    assert [g.depth_of_level(g.level_of_depth(d)) for d in range(4)] == [0, 1, 2, 3]
    assert [g.scale_of_level(k) for k in range(4)] == [3, 2, 1, 0]
    assert [g.level_of_scale(s) for s in range(4)] == [3, 2, 1, 0]
    with pytest.raises(ValueError, match=r"k: expected an int in \[0, 3\], got 4"):
        g.depth_of_level(4)


def test_unknown_order_is_named() -> None:
    with pytest.raises(ValueError, match="order: expected one of \\['raster', 'morton'\\]"):
        allocate(torch.rand(1, 3, 32, 32), 4, 8, 16, order="zigzag")  # type: ignore[arg-type]


def test_detail_gets_the_tokens() -> None:
    x = torch.full((1, 3, 128, 256), 0.5)
    x[..., 64:128, 192:256] = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    for scorer in SCORERS:
        allocation = allocate(x, 8 + 3 * 5, 16, 64, "greedy", scorer)
        # Cell (1, 3) holds all the texture: greedy splits it down to min_patch (1 + 4 splits).
        assert allocation.cell_counts[0].tolist() == [[1, 1, 1, 1], [1, 1, 1, 16]], scorer


def test_no_token_on_the_padding_and_edge_strips_are_roots() -> None:
    # 64 x 80 with 64-px cells: one whole cell, then a 16-px strip of four 16-px roots.
    x = torch.full((1, 1, 64, 80), 0.5)
    x[..., 64:80] = torch.rand(1, 64, 16, generator=torch.Generator().manual_seed(2))
    g = QuadtreeGeometry.create(64, 80, 16, 64)
    assert (g.min_budget, g.max_splits, g.full_budget) == (5, 5, 20)
    coarsest = allocate(x, 5, 16, 64)
    assert coarsest.boxes[0].tolist() == [
        [0, 0, 64],
        [0, 64, 16],
        [16, 64, 16],
        [32, 64, 16],
        [48, 64, 16],
    ]
    for scorer in SCORERS:
        allocation = allocate(x, 5 + 3, 16, 64, "greedy", scorer)
        check_tiling(allocation)
    assert [tuple(s.int().tolist()) for s in g.forced_splits(0)] == [(0, 1)]


def test_full_detail_of_a_480_by_640_image_is_1200_tokens() -> None:
    g = QuadtreeGeometry.create(480, 640, 16, 64)
    assert (g.min_budget, g.full_budget) == (70 + 20, 1200)
    x = torch.rand(1, 3, 480, 640, generator=torch.Generator().manual_seed(3))
    full = allocate(x, 1200, 16, 64)
    assert int(full.lengths[0]) == 1200
    assert int((full.boxes[0, :, 0] + 16).max()) == 480  # no token reaches y = 480


def test_allocation_container() -> None:
    x = torch.rand(3, 3, 128, 192)
    allocation = FrequencyAwareAllocator(budget=15, min_patch=16, max_patch=64)(x)
    assert len(allocation) == 3
    assert allocation.image_size == (128, 192)
    assert allocation.geometry == QuadtreeGeometry.create(128, 192, 16, 64)
    assert allocation.level_counts().sum(1).tolist() == [15, 15, 15]
    last = allocation[-1]
    assert last.batch_size == 1
    assert torch.equal(last.boxes[0], allocation.boxes[2])
    assert torch.equal(allocation[1:].leaf_level, allocation.leaf_level[1:])
    moved = allocation.to("cpu")
    assert moved.device == torch.device("cpu")
    assert torch.equal(moved.mask, allocation.mask)


def test_module_repr_and_custom_scorer() -> None:
    def top_left(images: torch.Tensor, min_patch: int, max_patch: int) -> list[torch.Tensor]:
        g = QuadtreeGeometry.create(images.shape[-2], images.shape[-1], min_patch, max_patch)
        maps = []
        for d in range(g.depth):
            rows, cols = g.grid(d)
            score = -(torch.arange(rows)[:, None] + torch.arange(cols)[None, :]).float()
            maps.append(score.expand(images.shape[0], rows, cols))
        return maps

    allocator = FrequencyAwareAllocator(7, 16, 32, scorer=top_left)
    assert "scorer='top_left'" in repr(allocator)
    allocation = allocator(torch.rand(1, 3, 64, 64))
    assert allocation.cell_counts[0].tolist() == [[4, 1], [1, 1]]


def test_half_precision_and_float64_inputs() -> None:
    x = torch.rand(2, 3, 64, 64, dtype=torch.float64)
    reference = allocate(x, 10, 16, 32)
    assert torch.equal(allocate(x.float(), 10, 16, 32).boxes, reference.boxes)
    assert allocate(x.bfloat16(), 10, 16, 32).lengths.tolist() == [10, 10]


def test_inputs_that_require_grad() -> None:
    x = torch.rand(1, 3, 64, 64, requires_grad=True)
    assert allocate(x, 7, 16, 32).lengths.tolist() == [7]


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_coarsest_and_full_detail_need_no_scores(strategy: str) -> None:
    def refuse(*args: object, **kwargs: object) -> list[torch.Tensor]:
        raise AssertionError("scored although only one tree has this budget")

    x = torch.rand(2, 3, 64, 96)
    coarse = allocate(x, 6, 8, 32, strategy, scorer=refuse)
    full = allocate(x, 96, 8, 32, strategy, scorer=refuse)
    assert bool((coarse.leaf_level == 2).all())
    assert bool((full.leaf_level == 0).all())
    assert full.lengths.tolist() == [96, 96]
