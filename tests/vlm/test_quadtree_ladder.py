"""Progressive refinement on the quadtree: nested greedy allocations, rungs that only append,
KV reuse equal to re-prefilling, per-sample exits, rung 0 equal to the one-shot forward."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.allocation import allocate
from pyrtok.vlm import MixedResolutionVLM, ProgressiveOutput
from pyrtok.vlm.quadtree_ladder import check_ladder, leaf_keys, new_leaves
from pyrtok.vlm.testing import tiny_clip, tiny_llama
from tests.vlm.helpers import IMAGE, prompts, unpadded
from tests.vlm.helpers import images as textured

LADDER = (4, 22, 64)


def _vlm() -> MixedResolutionVLM:
    torch.manual_seed(0)
    return MixedResolutionVLM(tiny_clip(), tiny_llama(), image_token_id=IMAGE, max_patch=32).eval()


def _assert_same(a: ProgressiveOutput, b: ProgressiveOutput) -> None:
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.confidence, b.confidence, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.exit_level, b.exit_level)
    assert torch.equal(a.visual_tokens, b.visual_tokens)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**16), low=st.integers(0, 14), more=st.integers(1, 15))
def test_greedy_allocations_are_nested_as_the_budget_grows(seed: int, low: int, more: int) -> None:
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(seed))
    small = allocate(x, 6 + 3 * low, 8, 32)
    large = allocate(x, 6 + 3 * (low + more), 8, 32)
    for a, b in zip(small.splits, large.splits, strict=True):
        assert bool((a <= b).all())  # every split of the small tree is in the large one
    new = new_leaves(large, leaf_keys(small))
    for b in range(2):
        old = set(map(tuple, small.boxes[b, : small.lengths[b]].tolist()))
        boxes = large.boxes[b, : large.lengths[b]].tolist()
        assert new[b, : large.lengths[b]].tolist() == [tuple(box) not in old for box in boxes]


def test_reuse_equals_reprefill_with_exits_at_every_rung() -> None:
    vlm = _vlm()
    x, (ids, mask) = textured(3).clamp(0, 1), prompts(3)
    kwargs = dict(budgets=LADDER, max_new_tokens=3, confidence="mean_logprob")
    trace = vlm.progressive_generate(x, ids, mask, thresholds=(1.0, 1.0), **kwargs)
    assert trace.exit_level.tolist() == [2, 2, 2]
    again = vlm.progressive_generate(
        x, ids, mask, thresholds=(1.0, 1.0), reuse_cache=False, **kwargs
    )
    _assert_same(trace, again)
    c = trace.confidence
    first = int(c[:, 0].argmax())
    rest = [b for b in range(3) if b != first]
    t0 = float(c[first, 0])
    t1 = min(t0, float(c[rest, 1].max()))
    mixed = vlm.progressive_generate(x, ids, mask, thresholds=(t0, t1), **kwargs)
    assert sorted(mixed.exit_level.tolist()) == [0, 1, 2]
    reached = ~mixed.confidence.isnan()
    torch.testing.assert_close(mixed.confidence[reached], c[reached], rtol=1e-4, atol=1e-4)
    _assert_same(
        mixed,
        vlm.progressive_generate(x, ids, mask, thresholds=(t0, t1), reuse_cache=False, **kwargs),
    )
    assert len(mixed.level_seconds) == 3


def test_rung_zero_is_the_one_shot_forward_at_its_budget() -> None:
    vlm = _vlm()
    x, (ids, mask) = textured(3).clamp(0, 1), prompts(3)
    out = vlm.progressive_generate(x, ids, mask, budgets=LADDER, thresholds=(1e-6, 1e-6))
    assert out.exit_level.tolist() == [0, 0, 0]
    assert out.visual_tokens.tolist() == [LADDER[0]] * 3
    for b in range(3):
        logits = vlm(x[b : b + 1], unpadded(ids, mask, b), budget=LADDER[0]).logits[0, -1]
        torch.testing.assert_close(out.logits[b, 0], logits, rtol=1e-4, atol=1e-4)


def test_tokens_sent_cover_the_last_rungs_allocation() -> None:
    vlm = _vlm()
    x = textured(2).clamp(0, 1)
    out = vlm.progressive_generate(
        x, torch.tensor([[1, IMAGE, 5]] * 2), budgets=LADDER, thresholds=(1.0, 1.0)
    )
    rungs = [allocate(x, b, 8, 32) for b in LADDER]
    sent = rungs[0].lengths.clone()
    for before, after in itertools.pairwise(rungs):
        sent += new_leaves(after, leaf_keys(before)).sum(dim=1)
    assert out.visual_tokens.tolist() == sent.tolist()
    assert bool((out.visual_tokens > LADDER[-1]).all())  # the last allocation + what it refines


def test_bad_ladders_are_named() -> None:
    vlm = _vlm()
    x, ids = textured(1).clamp(0, 1), torch.tensor([[1, IMAGE, 5]])
    with pytest.raises(ValueError, match="budgets: expected strictly increasing"):
        check_ladder([16, 16])
    with pytest.raises(ValueError, match="nearest feasible budgets are 22 and 25"):
        vlm.progressive_generate(x, ids, budgets=(4, 23), thresholds=(0.9,))
    with pytest.raises(ValueError, match="thresholds: expected 1 values"):
        vlm.progressive_generate(x, ids, budgets=(4, 22), thresholds=(0.9, 0.8))
    with pytest.raises(ValueError, match="no text after the image token"):
        vlm.progressive_generate(x, torch.tensor([[1, IMAGE]]), budgets=(4,), thresholds=())


def test_the_ladder_filters_each_image_once(monkeypatch: pytest.MonkeyPatch) -> None:
    import pyrtok.pyramid.functional as pyramid_functional

    vlm = _vlm()
    calls: list[int] = []
    original = pyramid_functional.pyr_down

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pyramid_functional, "pyr_down", counting)
    x = textured(2).clamp(0, 1)
    vlm.progressive_generate(
        x, torch.tensor([[1, IMAGE, 5]] * 2), budgets=LADDER, thresholds=(1.0, 1.0)
    )
    assert len(calls) == 2  # 64 -> 32 -> 16 once, read by every rung's allocator and tokens
