"""Tokenizer: exact round trip at full detail, pyramid reads, decoding, packing, gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok import gaussian_pyramid
from pyrtok.allocation import (
    MixedResolutionTokenizer,
    QuadtreeGeometry,
    allocate,
    detokenize,
    tokenize,
)
from pyrtok.allocation.quadtree import pad_to_cells
from tests.allocation.reference import decode_patch


@settings(max_examples=30, deadline=None)
@given(
    patches=st.sampled_from([(8, 16), (8, 32), (16, 64), (4, 16)]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    channels=st.integers(1, 4),
    data=st.data(),
)
def test_full_detail_round_trip_is_exact(
    patches: tuple[int, int], dtype: torch.dtype, channels: int, data: st.DataObject
) -> None:
    min_patch, max_patch = patches
    height = data.draw(st.integers(max_patch, 2 * max_patch + 7), label="height")
    width = data.draw(st.integers(max_patch, 2 * max_patch + 7), label="width")
    strategy = data.draw(st.sampled_from(["greedy", "optimal", "proportional", "uniform"]))
    x = torch.rand(2, channels, height, width, dtype=dtype)
    g = QuadtreeGeometry.create(height, width, min_patch, max_patch)
    full = allocate(x, g.full_budget, min_patch, max_patch, strategy)
    assert bool((full.leaf_level == 0).all())
    out = tokenize(x, full)
    assert out.tokens.dtype == dtype
    assert out.tokens.shape == (2, g.full_budget, channels * min_patch**2)
    assert torch.equal(detokenize(out.tokens, full), x)


def test_tokens_are_pyramid_patches() -> None:
    x = torch.rand(2, 3, 100, 140, generator=torch.Generator().manual_seed(0))
    allocation = allocate(x, 54 + 3 * 11, 8, 32)  # 54 roots
    g = allocation.geometry
    pyramid = gaussian_pyramid(pad_to_cells(x, g), levels=g.depth + 1)
    tokens = tokenize(x, allocation).tokens.reshape(2, -1, 3, 8, 8)
    for b in range(2):
        for n, ((y, x0, _size), k) in enumerate(
            zip(allocation.boxes[b].tolist(), allocation.leaf_level[b].tolist(), strict=True)
        ):
            r, c = y >> k, x0 >> k
            assert torch.equal(tokens[b, n], pyramid[k][b, :, r : r + 8, c : c + 8]), (b, n)


@pytest.mark.parametrize("level", [1, 2])
def test_detokenize_decodes_each_token_alone(level: int) -> None:
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    g = QuadtreeGeometry.create(64, 64, 8, 32)
    uniform = allocate(x, g.uniform_budgets()[g.depth - level], 8, 32, "uniform")
    assert bool((uniform.leaf_level == level).all())
    tokens = tokenize(x, uniform).tokens
    image = detokenize(tokens, uniform)
    for n, (y, x0, size) in enumerate(uniform.boxes[0].tolist()):
        expected = decode_patch(tokens[0, n].reshape(1, 3, 8, 8), level)[0]
        torch.testing.assert_close(image[0, :, y : y + size, x0 : x0 + size], expected)


def test_detokenize_crops_the_padding_and_approximates_the_image() -> None:
    x = torch.linspace(0, 1, 90)[None, None, :, None].expand(1, 3, 90, 120).contiguous()
    allocation = allocate(x, 27 + 3 * 4, 16, 64)  # 27 roots
    image = detokenize(tokenize(x, allocation).tokens, allocation)
    assert image.shape == x.shape
    assert float((image - x).abs().max()) < 0.05  # a ramp is smooth: coarse tokens suffice


def test_positions() -> None:
    x = torch.rand(1, 3, 64, 128)
    allocation = allocate(x, 2, 16, 64)  # two cells, one token each
    positions = tokenize(x, allocation).positions
    torch.testing.assert_close(positions[0], torch.tensor([[0.5, 0.25, 0.5], [0.5, 0.75, 0.5]]))


def test_packed_form_round_trip() -> None:
    x = torch.rand(3, 3, 64, 64)
    allocation = allocate(x, 7, 16, 32)
    out = MixedResolutionTokenizer()(x, allocation)
    packed = out.pack()
    assert packed.cu_seqlens.dtype == torch.int32
    assert packed.cu_seqlens.tolist() == [0, 7, 14, 21]
    assert packed.max_seqlen == 7
    assert packed.tokens.shape == (21, 768)
    torch.testing.assert_close(packed.tokens[7:14], out.tokens[1])
    tokens, positions, mask = packed.unpack()
    assert torch.equal(tokens, out.tokens)
    assert torch.equal(positions, out.positions)
    assert torch.equal(mask, out.mask)


def test_module_twin_matches_the_functions() -> None:
    x = torch.rand(2, 3, 64, 96)
    allocation = allocate(x, 6 + 3 * 5, 16, 32)
    tokenizer = MixedResolutionTokenizer()
    out = tokenizer(x, allocation)
    assert torch.equal(out.tokens, tokenize(x, allocation).tokens)
    assert torch.equal(
        tokenizer.detokenize(out.tokens, allocation), detokenize(out.tokens, allocation)
    )


def test_gradients_flow_through_tokenize_and_detokenize() -> None:
    x = torch.rand(1, 1, 16, 16, dtype=torch.float64, requires_grad=True)
    allocation = allocate(x, 4 + 3 * 1, 4, 8)
    assert bool((allocation.leaf_level == 0).any())
    assert bool((allocation.leaf_level == 1).any())
    assert torch.autograd.gradcheck(lambda t: tokenize(t, allocation).tokens, (x,))
    tokens = tokenize(x, allocation).tokens.detach().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: detokenize(t, allocation), (tokens,))


def test_half_precision_tokens_keep_their_dtype() -> None:
    x = torch.rand(1, 3, 64, 64).bfloat16()
    allocation = allocate(x, 16, 16, 32)
    tokens = tokenize(x, allocation).tokens
    assert tokens.dtype == torch.bfloat16
    assert torch.equal(detokenize(tokens, allocation), x)
