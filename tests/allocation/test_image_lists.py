"""Lists of images of different sizes: equal to per-image calls exactly (allocations, tokens),
packed tokens, detokenize at each image's own size, bad input."""

from __future__ import annotations

import pytest
import torch

from pyrtok.allocation import (
    STRATEGIES,
    Allocation,
    FrequencyAwareAllocator,
    MixedResolutionTokenizer,
    allocate,
    detokenize,
    tokenize,
)

SIZES = [(96, 128), (64, 64), (96, 128), (80, 100), (64, 64)]  # two shared sizes, odd sides


def _images() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, h, w, generator=g) for h, w in SIZES]


def _assert_same(one: Allocation, alone: Allocation) -> None:
    assert one.image_size == alone.image_size
    assert one.boxes.shape == alone.boxes.shape
    assert torch.equal(one.boxes, alone.boxes)
    assert torch.equal(one.leaf_level, alone.leaf_level)
    assert torch.equal(one.lengths, alone.lengths)
    assert torch.equal(one.mask, alone.mask)
    assert torch.equal(one.cell_counts, alone.cell_counts)
    assert all(torch.equal(a, b) for a, b in zip(one.splits, alone.splits, strict=True))


@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "uniform"])
def test_list_equals_per_image_calls(strategy: str) -> None:
    xs = _images()
    budgets = [30, 7, 12, 25, 4]
    each = allocate(xs, budgets, 8, 32, strategy, order="morton")
    assert [int(a.lengths) for a in each] == budgets
    for x, budget, one in zip(xs, budgets, each, strict=True):
        _assert_same(one, allocate(x[None], budget, 8, 32, strategy, order="morton"))


def test_groups_are_scored_as_one_batch_each(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyrtok.allocation.allocator as allocator

    batches: list[int] = []
    real = allocator.geometry_for

    def counting(images: torch.Tensor, min_patch: int, max_patch: int, values: bool) -> object:
        batches.append(images.shape[0])
        return real(images, min_patch, max_patch, values)

    monkeypatch.setattr(allocator, "geometry_for", counting)
    allocate(_images(), 22, 8, 32, budget_mode="at_most")
    assert batches == [2, 2, 1]  # one call per distinct size, not one per image


def test_module_and_budget_modes_follow_the_function() -> None:
    xs = _images()
    module = FrequencyAwareAllocator(
        budget=64.0, min_patch=8, max_patch=32, budget_mode="per_pixel"
    )
    each = module(xs)
    for x, one in zip(xs, each, strict=True):
        _assert_same(one, allocate(x[None], 64.0, 8, 32, budget_mode="per_pixel"))


def test_tokens_and_packing_equal_per_image_calls() -> None:
    xs = _images()
    budgets = [30, 7, 12, 25, 4]
    each = allocate(xs, budgets, 8, 32)
    out = MixedResolutionTokenizer()(xs, each)
    assert out.tokens.shape == (5, 30, 3 * 8 * 8)
    assert out.mask.sum(dim=1).tolist() == budgets
    packed = out.pack()
    assert packed.cu_seqlens.tolist() == [0, 30, 37, 49, 74, 78]
    assert packed.max_seqlen == 30
    for b, (x, one) in enumerate(zip(xs, each, strict=True)):
        alone = tokenize(x[None], one)
        n = budgets[b]
        assert torch.equal(out.tokens[b, :n], alone.tokens[0])
        assert torch.equal(out.positions[b, :n], alone.positions[0])
        assert not out.mask[b, n:].any()
        assert not out.tokens[b, n:].any()
        start, end = packed.cu_seqlens[b], packed.cu_seqlens[b + 1]
        assert torch.equal(packed.tokens[start:end], alone.tokens[0])


def test_detokenize_gives_each_image_back_at_its_own_size() -> None:
    xs = _images()
    full = allocate(xs, 10**6, 8, 32, budget_mode="at_most")  # full detail everywhere
    tokenizer = MixedResolutionTokenizer()
    back = tokenizer.detokenize(tokenizer(xs, full).tokens, full)
    assert [tuple(b.shape[-2:]) for b in back] == SIZES
    assert all(torch.equal(b, x) for b, x in zip(back, xs, strict=True))
    coarse = allocate(xs, [14, 6, 20, 23, 5], 8, 32, budget_mode="at_most")
    approx = detokenize(tokenize(xs, coarse).tokens, coarse)
    for x, one, b in zip(xs, coarse, approx, strict=True):
        assert torch.equal(b, detokenize(tokenize(x[None], one).tokens, one)[0])


def test_empty_list() -> None:
    with pytest.raises(ValueError, match=r"images: expected at least one \(C, H, W\) image"):
        allocate([], 16)
    with pytest.raises(ValueError, match="images: expected at least one"):
        tokenize([], [])


def test_different_channel_counts() -> None:
    xs = [torch.rand(3, 64, 64), torch.rand(1, 64, 96)]
    with pytest.raises(
        ValueError, match=r"images\[1\]: expected 3 channels like images\[0\], got 1"
    ):
        allocate(xs, 16, 16, 32)


def test_budget_sequence_of_the_wrong_length() -> None:
    with pytest.raises(
        ValueError, match=r"budget: expected one number or one per image \(5\), got 2"
    ):
        allocate(_images(), [16, 16], 8, 32)


def test_image_smaller_than_max_patch_is_named() -> None:
    xs = [torch.rand(3, 64, 64), torch.rand(3, 64, 64), torch.rand(3, 40, 64)]
    with pytest.raises(
        ValueError, match=r"images\[2\]: each side must be >= max_patch=64 .* got an image of 40x64"
    ):
        allocate(xs, 1000, 16, 64, budget_mode="at_most")


def test_an_infeasible_budget_names_the_image() -> None:
    with pytest.raises(ValueError, match=r"nearest feasible .*\(images\[1\], 64x64\)"):
        allocate(_images(), [12, 5, 12, 22, 4], 8, 32)


def test_mismatched_lists_and_pyramids() -> None:
    xs = _images()
    each = allocate(xs, 22, 8, 32, budget_mode="at_most")
    with pytest.raises(
        ValueError, match=r"allocation: expected one Allocation per image \(5\), got 4"
    ):
        tokenize(xs, each[:4])
    with pytest.raises(TypeError, match="a list of images needs a list of allocations"):
        tokenize(xs, each[0])
    with pytest.raises(ValueError, match=r"images\[1\]: the allocation was made for 96x128"):
        tokenize(xs, [each[0]] * 5)
    with pytest.raises(ValueError, match="pyramid: not supported for a list"):
        allocate(xs, 20, 8, 32, pyramid=[torch.zeros(1)])
    with pytest.raises(ValueError, match=r"tokens: expected shape \(5, >= 22, C \* p \* p\)"):
        detokenize(torch.zeros(4, 20, 192), each)
    with pytest.raises(ValueError, match=r"tokens: expected .*got \(5, 18, 192\)"):
        detokenize(torch.zeros(5, 18, 192), each)


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_a_nested_tensor_says_to_pass_a_list() -> None:
    nested = torch.nested.nested_tensor([torch.rand(3, 64, 64), torch.rand(3, 64, 96)])
    with pytest.raises(
        TypeError, match=r"images: got a nested tensor; .*list\(images.unbind\(\)\)"
    ):
        allocate(nested, 4, 16, 32)
    each = allocate(list(nested.unbind()), 6, 16, 32, budget_mode="at_most")
    assert [a.image_size for a in each] == [(64, 64), (64, 96)]
