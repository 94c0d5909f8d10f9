"""No token on the padding (#13 item 3): roots tile the image, positions stay in [0, 1], full
detail is ceil(H / p) * ceil(W / p) tokens and gives odd-sized images back exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.allocation import STRATEGIES, QuadtreeGeometry, allocate, detokenize, tokenize
from pyrtok.allocation.optimal import optimal_splits
from pyrtok.allocation.strategies import greedy_splits
from tests.allocation.test_allocator import check_tiling


@settings(max_examples=30, deadline=None)
@given(
    height=st.integers(32, 130),
    width=st.integers(32, 130),
    strategy=st.sampled_from([s for s in STRATEGIES if s != "uniform"]),
    data=st.data(),
)
def test_no_leaf_outside_and_positions_in_the_unit_square(
    height: int, width: int, strategy: str, data: st.DataObject
) -> None:
    g = QuadtreeGeometry.create(height, width, 8, 32)
    budget = g.min_budget + 3 * data.draw(st.integers(0, g.max_splits), label="splits")
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    allocation = allocate(x, budget, 8, 32, strategy)
    assert allocation.lengths.tolist() == [budget, budget]
    check_tiling(allocation)
    positions = tokenize(x, allocation).positions[allocation.mask]
    assert bool(((positions >= 0) & (positions <= 1)).all())
    centre = positions[:, :2] * torch.tensor([height, width])
    assert bool((centre < torch.tensor([height, width])).all())


def test_full_detail_round_trip_is_exact_on_odd_sizes_with_no_padding_tokens() -> None:
    x = torch.rand(1, 3, 427, 641, generator=torch.Generator().manual_seed(0))
    g = QuadtreeGeometry.create(427, 641, 16, 64)
    assert g.full_budget == 27 * 41
    full = allocate(x, g.full_budget, 16, 64)
    assert bool((full.leaf_level == 0).all())
    assert torch.equal(detokenize(tokenize(x, full).tokens, full), x)
    # The bottom row of leaves covers rows 416..426: its centre is the middle of those rows.
    positions = tokenize(x, full).positions[0]
    assert float(positions[:, 0].max()) == pytest.approx((416 + 427) / 2 / 427)


def test_forced_splits_are_set_but_not_counted_and_outside_nodes_refused() -> None:
    x = torch.rand(1, 3, 48, 64)
    g = QuadtreeGeometry.create(48, 64, 8, 32)  # 2 cells, a 16-px strip of 4 roots
    assert g.forced_splits(0).tolist() == [[False, False], [True, True]]
    assert g.min_budget == 6
    allocation = allocate(x, 9, 8, 32)
    assert bool(allocation.splits[0][0, 1].all())  # the forced row is in the tree
    nodes = allocation.nodes()
    assert not bool(nodes[0][0, 1].any())  # ... but its nodes are not tree nodes

    def into_the_padding(request: object) -> list[torch.Tensor]:
        split = torch.zeros(1, 4, 4, dtype=torch.bool)
        split[0, 3, 0] = True  # the 16-px node of rows 48..63: wholly outside
        return [torch.zeros(1, 2, 2, dtype=torch.bool), split]

    with pytest.raises(ValueError, match=r"lies outside the 48x64 image"):
        allocate(x, 9, 8, 32, strategy=into_the_padding)


@pytest.mark.parametrize(("height", "width"), [(48, 64), (72, 100), (100, 40)])
def test_optimal_is_at_least_greedy_on_edge_geometries(height: int, width: int) -> None:
    g = QuadtreeGeometry.create(height, width, 8, 32)
    scores = [
        torch.rand(3, *g.grid(d), generator=torch.Generator().manual_seed(d))
        for d in range(g.depth)
    ]
    for splits in range(g.max_splits + 1):
        best = optimal_splits(scores, g, splits)
        greedy = greedy_splits(scores, g, splits)
        total = [sum((m & g.node_exists(d)).float().mul(s).sum((1, 2)) for d, (m, s) in
                 enumerate(zip(maps, scores, strict=True))) for maps in (best, greedy)]  # fmt: skip
        assert bool((total[0] >= total[1] - 1e-5).all())
        counts = sum((m & g.node_exists(d)).sum((1, 2)) for d, m in enumerate(best))
        assert counts.tolist() == [splits] * 3


@settings(max_examples=40, deadline=None)
@given(height=st.integers(32, 300), width=st.integers(32, 300))
def test_forced_split_count_is_the_masks_count(height: int, width: int) -> None:
    g = QuadtreeGeometry.create(height, width, 8, 32)
    masks = sum(int(g.forced_splits(d).sum()) for d in range(g.depth))
    assert g.num_forced_splits == masks
