"""Pre-LLM baselines: exact budgets, SDPA = eager scores, VisionZip's split and pooling equal
their references, DivPrune's greedy, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from pyrtok.vlm import HierarchicalVLM
from pyrtok.vlm.baselines import (
    BASELINES,
    ClsAttentionSelector,
    DownsampleSelector,
    RandomSelector,
    baseline_selector,
    contextual_tokens,
    divprune,
    pool_budgets,
    visionzip_contextual,
)
from pyrtok.vlm.testing import tiny_clip, tiny_llava

LLAVA = tiny_llava()
TOWER = LLAVA.model.vision_tower
PIXELS = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _vlm(selector: object) -> HierarchicalVLM:
    vlm: HierarchicalVLM = HierarchicalVLM.from_llava(LLAVA, levels=1, selector=selector)
    return vlm


GRID_SELECTORS = sorted(set(BASELINES) - {"downsample"})


@settings(max_examples=10, deadline=None)
@given(name=st.sampled_from(GRID_SELECTORS), budget=st.integers(1, 16))
def test_every_baseline_sends_exactly_the_budget_per_row(name: str, budget: int) -> None:
    visual = _vlm(baseline_selector(name, TOWER, budget)).encode_images(PIXELS)
    assert visual.counts.tolist() == [budget] * 3
    assert visual.mask.shape[1] == budget


@pytest.mark.parametrize("budget", [16, 4, 1])
def test_downsample_sends_the_pooled_grid(budget: int) -> None:
    vlm = _vlm(DownsampleSelector(budget))
    visual = vlm.encode_images(PIXELS)
    assert visual.counts.tolist() == [budget] * 3
    grid = vlm.vision_encoder(PIXELS).grid  # (3, 4, 4, D): the feature layer's tokens
    side = 4 // int(budget**0.5)
    pooled = torch.nn.functional.avg_pool2d(grid.permute(0, 3, 1, 2), side)
    expected = vlm.projector(pooled.flatten(2).transpose(1, 2))
    torch.testing.assert_close(visual.embeds, expected, rtol=0, atol=0)


def test_downsample_at_full_budget_equals_every_token() -> None:
    pooled = _vlm(DownsampleSelector(16)).encode_images(PIXELS).embeds
    every = _vlm("all").encode_images(PIXELS).embeds
    torch.testing.assert_close(pooled, every, rtol=0, atol=0)


def test_downsample_pools_rectangular_grids_and_refuses_other_budgets() -> None:
    grid = torch.randn(2, 4, 6, 3, generator=torch.Generator().manual_seed(4))
    assert pool_budgets(4, 6) == {24: 1, 6: 2}
    selection = DownsampleSelector(6)(None, [grid], None, 8)
    assert not selection.keep[0].any()
    expected = torch.nn.functional.avg_pool2d(grid.permute(0, 3, 1, 2), 2).flatten(2)
    torch.testing.assert_close(selection.extra, expected.transpose(1, 2), rtol=0, atol=0)
    with pytest.raises(
        ValueError,
        match=r"budget: pooling a 4x4 token grid .* gives one of \[16, 4, 1\] tokens, "
        r"got 8; pick one of those",
    ):
        _vlm(DownsampleSelector(8)).encode_images(PIXELS)


def _clip(attention: str) -> nn.Module:
    return tiny_clip(seed=1, layers=3, attention=attention)


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


def test_contextual_tokens_add_each_target_the_mean_of_its_group() -> None:
    # dropped tokens 1..5 (token 0 kept); count 2 -> step 2, targets: dropped 0 and 2 (tokens
    # 1 and 3); keys send token 2 to target 1, tokens 4 and 5 to target 3
    tokens = torch.tensor([[[9.0], [1.0], [2.0], [3.0], [4.0], [5.0]]])
    keys = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0], [0.2, 1.0]]])
    keep = torch.tensor([[True, False, False, False, False, False]])
    merged = contextual_tokens(tokens, keep, keys, 2)
    assert merged[0, :, 0].tolist() == [1.0 + 2.0, 3.0 + (4.0 + 5.0) / 2]


def _visionzip_reference(
    clip: nn.Module, pixels: torch.Tensor, dominant_num: int, contextual_num: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """VisionZip's CLIPVisionTower_VisionZip.forward (dvlab-research/VisionZip,
    visionzip/clip_encoder.py), line for line on eager attention weights, without the CLS
    token among the outputs: (dominant patch tokens, contextual tokens)."""
    out = clip(pixels, output_hidden_states=True, output_attentions=True)
    attn_weights, hidden_states = out.attentions[-2], out.hidden_states[-2]
    layer = getattr(clip, "vision_model", clip).encoder.layers[-2]  # transformers 4.5x / 5.x
    batch, length, _ = hidden_states.shape
    heads = layer.self_attn.num_heads
    keys = layer.self_attn.k_proj(layer.layer_norm1(out.hidden_states[-3]))
    metric = keys.view(batch, length, heads, -1).transpose(1, 2).mean(1)  # raw_key_states.mean(1)
    cls_attention_sum = attn_weights[:, :, 0, 1:].sum(dim=1)
    topk_indices = cls_attention_sum.topk(dominant_num, dim=1).indices + 1
    all_indices = torch.cat([torch.zeros(batch, 1, dtype=torch.long), topk_indices], dim=1)
    mask = torch.ones(batch, length, dtype=torch.bool).scatter_(1, all_indices, False)
    dominant = hidden_states.masked_select(~mask[..., None]).view(batch, dominant_num + 1, -1)
    metric_filtered = metric[mask].view(batch, length - (dominant_num + 1), metric.shape[2])
    hidden_filtered = hidden_states.masked_select(mask[..., None]).view(
        batch, length - (dominant_num + 1), -1
    )
    metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)
    n = metric_normalized.shape[1]
    step = max(1, n // contextual_num)
    target_indices = torch.arange(0, n, step)[:contextual_num]
    is_other = ~torch.isin(torch.arange(n), target_indices)
    similarity = torch.bmm(metric_normalized[:, is_other], metric_normalized[:, target_indices].mT)
    assign = torch.zeros(batch, int(is_other.sum()), contextual_num)
    assign.scatter_(2, similarity.argmax(dim=2)[..., None], 1)
    counts = assign.sum(dim=1).clamp(min=1)[..., None]
    aggregated = torch.bmm(assign.transpose(1, 2), hidden_filtered[:, is_other]) / counts
    return dominant[:, 1:], hidden_filtered[:, target_indices] + aggregated


@pytest.mark.parametrize(("budget", "contextual"), [(6, 2), (9, 3), (16, 2)])
def test_visionzip_split_equals_its_code_on_a_random_clip(budget: int, contextual: int) -> None:
    eager, sdpa = _clip("eager"), _clip("sdpa")
    sdpa.load_state_dict(eager.state_dict())
    dominant, merged = _visionzip_reference(eager, PIXELS, budget - contextual, contextual)
    selector = ClsAttentionSelector(sdpa, budget, contextual=contextual)  # SDPA: no weights
    grid = sdpa(PIXELS, output_hidden_states=True).hidden_states[-2][:, 1:].reshape(3, 4, 4, -1)
    selection = selector(None, [grid], None, 8)
    keep = selection.keep[0].flatten(1)
    assert keep.sum(1).tolist() == [budget - contextual] * 3
    assert selection.extra.shape == (3, contextual, 32)
    kept = grid.flatten(1, 2)[keep].view(3, budget - contextual, -1)  # raster order
    torch.testing.assert_close(kept, dominant, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(selection.extra, merged, rtol=1e-5, atol=1e-6)


def test_visionzip_tokens_reach_the_lm_after_the_dominant_ones() -> None:
    selector = ClsAttentionSelector(TOWER, budget=7, contextual=3)
    vlm = _vlm(selector)
    visual = vlm.encode_images(PIXELS)
    assert visual.counts.tolist() == [7, 7, 7]
    grid = vlm.vision_encoder(PIXELS).grid
    selection = selector(None, [grid], None, 8)
    kept = grid.flatten(1, 2)[selection.keep[0].flatten(1)].view(3, 4, -1)
    expected = vlm.projector(torch.cat([kept, selection.extra], dim=1))
    torch.testing.assert_close(visual.embeds, expected, rtol=0, atol=0)


def test_visionzip_baseline_takes_the_papers_split() -> None:
    assert [visionzip_contextual(b) for b in (64, 128, 192)] == [10, 20, 30]
    selector = baseline_selector("visionzip", TOWER, 16)
    assert (selector.budget, selector.contextual) == (16, 2)
    with pytest.raises(ValueError, match=r"contextual: expected an int in \[0, 4\]"):
        ClsAttentionSelector(TOWER, 4, contextual=5)


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
