"""Pre-LLM baselines: exact budgets, SDPA = eager scores, DivPrune's greedy, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import CLIPVisionConfig, CLIPVisionModel

from pyrtok.vlm import HierarchicalVLM
from pyrtok.vlm.baselines import (
    BASELINES,
    ClsAttentionSelector,
    DownsampleSelector,
    RandomSelector,
    baseline_selector,
    contextual_tokens,
    divprune,
)
from pyrtok.vlm.testing import tiny_llava

LLAVA = tiny_llava()
TOWER = LLAVA.model.vision_tower
PIXELS = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _vlm(selector: object) -> HierarchicalVLM:
    vlm: HierarchicalVLM = HierarchicalVLM.from_llava(LLAVA, levels=1, selector=selector)
    return vlm


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(sorted(BASELINES)), budget=st.integers(1, 16))
def test_every_baseline_keeps_exactly_the_budget(name: str, budget: int) -> None:
    visual = _vlm(baseline_selector(name, TOWER, budget)).encode_images(PIXELS)
    assert visual.counts.tolist() == [budget] * 3


def test_downsample_at_full_budget_keeps_every_token() -> None:
    keep = DownsampleSelector(16)(None, [torch.zeros(2, 4, 4, 8)], None, 8)[0]
    assert bool(keep.all())


def test_downsample_keeps_the_stride_lattice() -> None:
    keep = DownsampleSelector(4)(None, [torch.zeros(1, 4, 4, 8)], None, 8)[0][0]
    assert keep.nonzero().tolist() == [[0, 0], [0, 2], [2, 0], [2, 2]]


def _clip(attention: str) -> CLIPVisionModel:
    config = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=32,
        patch_size=8,
        attn_implementation=attention,
    )
    torch.manual_seed(1)
    return CLIPVisionModel(config).eval()


@pytest.mark.parametrize(("mode", "layer"), [("cls", -2), ("mean", -2), ("cls", 0)])
def test_attention_scores_with_sdpa_equal_eager_weights(mode: str, layer: int) -> None:
    eager, sdpa = _clip("eager"), _clip("sdpa")
    sdpa.load_state_dict(eager.state_dict())
    weights = eager(PIXELS, output_attentions=True).attentions[layer].mean(dim=1)
    expected = weights[:, 0, 1:] if mode == "cls" else weights.mean(dim=1)[:, 1:]
    selector = ClsAttentionSelector(sdpa, budget=5, layer=layer, mode=mode)
    sdpa(PIXELS)
    scores = selector.scores(4, 4)
    torch.testing.assert_close(scores, expected, rtol=1e-5, atol=1e-6)
    keep = selector.select(None, torch.zeros(3, 16, 1), 4, 4)
    assert torch.equal(keep, torch.zeros_like(keep).scatter_(1, expected.topk(5).indices, True))


def test_cls_attention_without_cls_names_the_mean_option() -> None:
    siglip = tiny_llava(vision="siglip")
    selector = ClsAttentionSelector(siglip.model.vision_tower, budget=4)
    vlm = HierarchicalVLM.from_llava(siglip, levels=1, selector=selector)
    with pytest.raises(ValueError, match="mode='mean'"):
        vlm.encode_images(PIXELS)
    selector.mode = "mean"
    assert vlm.encode_images(PIXELS).counts.tolist() == [4, 4, 4]


def _divprune_reference(tokens: torch.Tensor, budget: int) -> set[int]:
    unit = torch.nn.functional.normalize(tokens.double(), dim=-1)
    distance = 1 - unit @ unit.T
    n = len(tokens)
    first = max(range(n), key=lambda i: min(distance[i, j] for j in range(n) if j != i))
    chosen = [first]
    while len(chosen) < budget:
        rest = [i for i in range(n) if i not in chosen]
        chosen.append(max(rest, key=lambda i: min(distance[i, j] for j in chosen)))
    return set(chosen)


def test_divprune_equals_a_loop_reference() -> None:
    tokens = torch.randn(2, 20, 6, generator=torch.Generator().manual_seed(3))
    keep = divprune(tokens, 7)
    for row in range(2):
        assert set(keep[row].nonzero().flatten().tolist()) == _divprune_reference(tokens[row], 7)


def test_random_is_reproducible_with_one_seed() -> None:
    grids = [torch.zeros(2, 4, 4, 8)]
    first = [RandomSelector(6, seed=5)(None, grids, None, 8)[0] for _ in range(2)]
    other = RandomSelector(6, seed=6)(None, grids, None, 8)[0]
    assert torch.equal(first[0], first[1])
    assert not torch.equal(first[0], other)


def test_contextual_tokens_average_every_dropped_token_once() -> None:
    tokens = torch.randn(2, 16, 4, generator=torch.Generator().manual_seed(2))
    keep = torch.zeros(2, 16, dtype=torch.bool)
    keep[:, :6] = True
    merged = contextual_tokens(tokens, keep, torch.randn(2, 16, 3), 4)
    assert merged.shape == (2, 4, 4)
    # every group mean times its size sums to the dropped tokens' sum: check via the total
    # of a constant token set, where every mean is that constant
    constant = contextual_tokens(torch.ones(2, 16, 4), keep, torch.randn(2, 16, 3), 4)
    torch.testing.assert_close(constant, torch.ones(2, 4, 4))


def test_budget_above_the_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match=r"asked for 17 tokens per image but the encoder gives 16"):
        _vlm(RandomSelector(17)).encode_images(PIXELS)


def test_unknown_baseline_lists_the_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"no baseline 'fastest'; expected one of \['cls_attention'"
    ):
        baseline_selector("fastest", TOWER, 4)


def test_bad_budget_and_mode_are_refused() -> None:
    with pytest.raises(ValueError, match="budget: expected an int >= 1"):
        RandomSelector(0)
    with pytest.raises(ValueError, match="mode: expected one of"):
        ClsAttentionSelector(TOWER, 4, mode="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"layer: expected an int in \[-2, 1\]"):
        ClsAttentionSelector(TOWER, 4, layer=2)
