"""Split selection against brute force and a priority-queue reference; the strategy registry
and the check of what a strategy returns."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.allocation import (
    STRATEGIES,
    FrequencyAwareAllocator,
    QuadtreeGeometry,
    SplitRequest,
    allocate,
    check_splits,
    laplacian_scores,
    resolve_strategy,
)
from pyrtok.allocation.optimal import optimal_splits
from pyrtok.allocation.strategies import (
    cell_splits,
    distribute,
    greedy_splits,
    proportional_splits,
)
from tests.allocation.reference import as_set, best_total, heap_greedy, total

# Small trees brute force can enumerate: (cell_rows, cell_cols, depth).
SMALL = [(1, 1, 1), (1, 2, 2), (2, 1, 2), (1, 3, 2), (2, 2, 1)]


def geometry(rows: int, cols: int, depth: int) -> QuadtreeGeometry:
    return QuadtreeGeometry.create(rows * 2**depth, cols * 2**depth, 1, 2**depth)


def envelope(scores: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cap every score by its parent's: scores that never grow down the tree."""
    out = scores[:1]
    for score in scores[1:]:
        out.append(torch.minimum(score, out[-1].repeat_interleave(2, -2).repeat_interleave(2, -1)))
    return out


def random_scores(g: QuadtreeGeometry, seed: int, monotone: bool = False) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    scores = [
        torch.rand((1, *g.grid(d)), generator=generator, dtype=torch.float64)
        for d in range(g.depth)
    ]
    return envelope(scores) if monotone else scores


def valid(maps: list[torch.Tensor]) -> bool:
    return all(
        not bool((child & ~parent.repeat_interleave(2, -2).repeat_interleave(2, -1)).any())
        for parent, child in itertools.pairwise(maps)
    )


@settings(max_examples=40, deadline=None)
@given(
    shape=st.sampled_from([*SMALL, (1, 1, 3), (2, 3, 3)]),
    seed=st.integers(0, 10**6),
    data=st.data(),
)
def test_greedy_equals_the_priority_queue_loop(
    shape: tuple[int, int, int], seed: int, data: st.DataObject
) -> None:
    g = geometry(*shape)
    splits = data.draw(st.integers(0, g.max_splits))
    scores = random_scores(g, seed)
    maps = greedy_splits(scores, g, splits)
    assert valid(maps)
    assert as_set(maps) == heap_greedy(scores, g, splits)


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from(SMALL), seed=st.integers(0, 10**6), data=st.data())
def test_greedy_is_optimal_when_scores_do_not_grow_down_the_tree(
    shape: tuple[int, int, int], seed: int, data: st.DataObject
) -> None:
    g = geometry(*shape)
    splits = data.draw(st.integers(0, g.max_splits))
    scores = random_scores(g, seed, monotone=True)
    chosen = as_set(greedy_splits(scores, g, splits))
    assert len(chosen) == splits
    assert total(scores, chosen) == pytest.approx(best_total(scores, g, splits), rel=1e-12)


@settings(max_examples=25, deadline=None)
@given(shape=st.sampled_from(SMALL), seed=st.integers(0, 10**6), data=st.data())
def test_optimal_matches_brute_force_for_any_scores(
    shape: tuple[int, int, int], seed: int, data: st.DataObject
) -> None:
    g = geometry(*shape)
    splits = data.draw(st.integers(0, g.max_splits))
    scores = random_scores(g, seed)
    maps = optimal_splits(scores, g, splits)
    chosen = as_set(maps)
    assert valid(maps)
    assert len(chosen) == splits
    assert total(scores, chosen) == pytest.approx(best_total(scores, g, splits), rel=1e-12)


def test_greedy_is_not_optimal_when_children_outscore_their_parent() -> None:
    # A flat cell hiding one very detailed quadrant: greedy never looks past the flat parent.
    g = geometry(1, 2, 2)
    scores = [torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[9.0, 0, 0, 0], [0, 0, 0, 0]]])]
    greedy = as_set(greedy_splits(scores, g, 2))
    optimal = as_set(optimal_splits(scores, g, 2))
    assert greedy == {(0, 0, 1), (0, 0, 0)}
    assert optimal == {(0, 0, 0), (1, 0, 0)}
    assert total(scores, optimal) == 9.0 > total(scores, greedy) == 1.0


def test_batched_selection_is_per_image() -> None:
    g = geometry(2, 2, 2)
    batch = [random_scores(g, seed) for seed in range(5)]
    stacked = [torch.cat([s[d] for s in batch]) for d in range(g.depth)]
    for select in (greedy_splits, optimal_splits):
        together = select(stacked, g, 7)
        for i, scores in enumerate(batch):
            alone = select(scores, g, 7)
            assert all(torch.equal(a[0], t[i]) for a, t in zip(alone, together, strict=True))


@settings(max_examples=40, deadline=None)
@given(shape=st.sampled_from([*SMALL, (1, 1, 3), (2, 2, 3)]), seed=st.integers(0, 10**6),
       data=st.data())  # fmt: skip
def test_tied_scores_still_give_valid_trees_in_loop_order(
    shape: tuple[int, int, int], seed: int, data: st.DataObject
) -> None:
    g = geometry(*shape)
    splits = data.draw(st.integers(0, g.max_splits))
    scores = [(s * 3).floor() for s in random_scores(g, seed)]  # values 0, 1, 2: many ties
    maps = greedy_splits(scores, g, splits)
    assert valid(maps)
    assert sum(int(m.sum()) for m in maps) == splits
    assert as_set(maps) == heap_greedy(scores, g, splits)


def test_ties_split_shallow_nodes_first_in_raster_order() -> None:
    g = geometry(1, 2, 2)
    flat = [torch.zeros(1, *g.grid(d)) for d in range(g.depth)]
    assert as_set(greedy_splits(flat, g, 3)) == {(0, 0, 0), (0, 0, 1), (1, 0, 0)}


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=12),
    cap=st.integers(1, 21),
    data=st.data(),
)
def test_distribute_is_exact_capped_and_proportional(
    weights: list[float], cap: int, data: st.DataObject
) -> None:
    total_units = data.draw(st.integers(0, len(weights) * cap))
    w = torch.tensor([weights], dtype=torch.float64)
    shares = distribute(w, total_units, cap)[0]
    assert int(shares.sum()) == total_units
    assert bool((shares >= 0).all())
    assert bool((shares <= cap).all())
    # Largest remainder: nobody is more than one unit from the capped proportional share,
    # and a heavier slot never gets fewer units than a lighter one (unless capped).
    order = sorted(range(len(weights)), key=lambda i: weights[i])
    for light, heavy in itertools.pairwise(order):
        if weights[heavy] > weights[light]:
            assert shares[heavy] >= min(shares[light], cap)
    if sum(weights) == 0:
        assert int(shares.max() - shares.min()) <= 1


def test_distribute_examples() -> None:
    w = torch.tensor([[1.0, 1.0, 1.0], [6.0, 1.0, 0.0], [0.0, 0.0, 0.0], [100.0, 1.0, 1.0]])
    assert distribute(w, 4, 3).tolist() == [[2, 1, 1], [3, 1, 0], [2, 1, 1], [3, 1, 0]]
    with pytest.raises(ValueError, match="total: 10 units cannot be shared by 3 slots"):
        distribute(w, 10, 3)


def test_cell_splits_fill_whole_levels_first() -> None:
    g = geometry(1, 2, 3)
    scores = random_scores(g, 0)
    per_cell = torch.tensor([[[5, 7]]])  # 5 = root + all 4 children; 7 = that + 2 grandchildren
    maps = cell_splits(scores, g, per_cell)
    assert [int(m.sum()) for m in maps] == [2, 8, 2]
    assert bool(maps[1].all())
    grandchildren = scores[2][0, :, 4:]  # right cell's 4x4 grandchildren
    best_two = set(grandchildren.flatten().topk(2).indices.tolist())
    chosen = set(maps[2][0, :, 4:].flatten().nonzero().flatten().tolist())
    assert chosen == best_two
    assert not bool(maps[2][0, :, :4].any())


def test_proportional_follows_cell_scores() -> None:
    g = geometry(1, 3, 2)
    scores = [torch.tensor([[[3.0, 1.0, 0.0]]]), torch.zeros(1, 2, 6)]
    maps = proportional_splits(scores, g, 4)
    per_cell = [
        int(maps[0][0, 0, c]) + int(maps[1][0, :, 2 * c : 2 * c + 2].sum()) for c in range(3)
    ]
    assert per_cell == [3, 1, 0]


# The registry: names or callables, one contract, checked output.


def test_a_custom_callable_strategy_is_used() -> None:
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    seen: list[SplitRequest] = []

    def least_detail_first(request: SplitRequest) -> list[torch.Tensor]:
        seen.append(request)
        flipped = [-s for s in request.scores]
        return greedy_splits(flipped, request.geometry, request.splits)

    ours = allocate(x, 12, 16, 32, strategy=least_detail_first)
    assert len(seen) == 1
    assert seen[0].splits == 2
    assert seen[0].budget == 12
    assert seen[0].images is x
    expected = greedy_splits([-s for s in laplacian_scores(x, 16, 32)], seen[0].geometry, 2)
    assert all(torch.equal(a, b) for a, b in zip(ours.splits, expected, strict=True))
    assert not torch.equal(ours.splits[0], allocate(x, 12, 16, 32).splits[0])
    module = FrequencyAwareAllocator(12, 16, 32, strategy=least_detail_first)
    assert torch.equal(module(x).boxes, ours.boxes)
    assert "strategy='least_detail_first'" in repr(module)


def test_uniform_reads_no_scores_and_keeps_its_budget_message() -> None:
    def scorer(images: torch.Tensor, min_patch: int, max_patch: int) -> list[torch.Tensor]:
        raise AssertionError("uniform must not score")

    x = torch.rand(1, 3, 128, 128)
    assert allocate(x, 16, 16, 64, "uniform", scorer).lengths.tolist() == [16]
    with pytest.raises(ValueError, match=r"uniform strategy needs cells \* 4\*\*d tokens"):
        allocate(x, 7, 16, 64, "uniform", scorer)


def test_registry_names_and_resolution() -> None:
    assert list(STRATEGIES) == ["greedy", "optimal", "proportional", "threshold", "uniform"]
    assert resolve_strategy("optimal") is STRATEGIES["optimal"]

    def mine(request: SplitRequest) -> list[torch.Tensor]:
        return []

    assert resolve_strategy(mine) is mine
    names = r"\['greedy', 'optimal', 'proportional', 'threshold', 'uniform'\]"
    with pytest.raises(
        ValueError, match=rf"strategy: unknown name 'best'; valid names are {names}"
    ):
        resolve_strategy("best")
    with pytest.raises(TypeError, match=rf"strategy: expected a name {names} or a callable"):
        FrequencyAwareAllocator(16, strategy=3)  # type: ignore[arg-type]


def _returning(maps: object) -> Callable[[SplitRequest], list[torch.Tensor]]:
    def bad(request: SplitRequest) -> list[torch.Tensor]:
        return maps  # type: ignore[return-value]

    return bad


@pytest.mark.parametrize(
    ("maps", "message"),
    [
        (
            [torch.zeros(2, 2, 3, dtype=torch.bool)],
            r"strategy 'bad': expected a list of 2 bool split maps \(one per quadtree depth\), "
            r"got list of length 1",
        ),
        (
            (torch.zeros(2, 2, 3), torch.zeros(2, 4, 6)),
            r"strategy 'bad': split map 0 must be a bool tensor of shape \(2, 2, 3\) "
            r"\(B, rows, cols at depth 0\), got torch.float32 \(2, 2, 3\)",
        ),
        (
            [torch.zeros(2, 2, 3, dtype=torch.bool), torch.zeros(2, 6, 4, dtype=torch.bool)],
            r"split map 1 must be a bool tensor of shape \(2, 4, 6\) .*, got torch.bool "
            r"\(2, 6, 4\)",
        ),
        (
            [torch.zeros(2, 2, 3, dtype=torch.bool), torch.zeros(2, 4, 6, dtype=torch.bool)],
            r"strategy 'bad': image 0 has 0 splits, expected exactly 2 \(a budget of 12 tokens\)",
        ),
    ],
)
def test_a_strategy_breaking_the_contract_is_refused(maps: object, message: str) -> None:
    x = torch.rand(2, 3, 64, 96)
    with pytest.raises(ValueError, match=message):
        allocate(x, 12, 8, 32, strategy=_returning(maps))


def test_an_invalid_tree_or_a_wrong_count_in_one_image_is_refused() -> None:
    x = torch.rand(2, 3, 64, 96)  # 2 x 3 cells of 32 px, depth 2
    top = torch.zeros(2, 2, 3, dtype=torch.bool)
    mid = torch.zeros(2, 4, 6, dtype=torch.bool)
    top[:, 0, 0] = True
    mid[:, 3, 5] = True  # its parent, cell (1, 2), is not split
    with pytest.raises(
        ValueError,
        match=r"strategy 'bad': not a valid tree: image 0 splits node \(3, 5\) at depth 1 but "
        r"not its parent \(1, 2\) at depth 0",
    ):
        allocate(x, 12, 8, 32, strategy=_returning([top, mid]))
    top[:, 0, 1] = True
    top[1, 0, 2] = True  # image 1: 3 splits, image 0: 2
    with pytest.raises(
        ValueError, match=r"strategy 'bad': image 1 has 3 splits, expected exactly 2"
    ):
        allocate(x, 12, 8, 32, strategy=_returning([top, torch.zeros_like(mid)]))


def test_every_builtin_strategy_meets_the_contract() -> None:
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    g = QuadtreeGeometry.create(64, 96, 8, 32)
    request = SplitRequest(x, g, g.splits_for(24))  # 24 = 6 cells * 4: uniform can meet it
    for name, strategy in STRATEGIES.items():
        maps = check_splits(strategy(request), g, 2, request.splits, x.device, name)
        assert valid(maps)
        assert [sum(int(m[b].sum()) for m in maps) for b in range(2)] == [6, 6]
