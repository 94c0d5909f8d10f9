"""ProgressiveVLM: KV reuse equals re-prefilling, per-sample exits, equality with the full
forward, confidences, thresholds, per-level timing."""

from __future__ import annotations

import time

import pytest
import torch

from pyrtok.vlm import ProgressiveVLM, first_token_prob, margin, mean_token_prob
from pyrtok.vlm.progressive import check_thresholds

from .helpers import hierarchical, images, progressive, prompts, unpadded


def _assert_same(a, b) -> None:  # type: ignore[no-untyped-def]
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.confidence, b.confidence, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.exit_level, b.exit_level)


def test_kv_reuse_equals_reprefill_and_per_sample_exits() -> None:
    vlm = progressive(thresholds=(1.0, 1.0), max_new_tokens=3, confidence="mean_logprob")
    x, (ids, mask) = images(3), prompts(3)
    trace = vlm.progressive_generate(x, ids, mask)
    assert trace.exit_level.tolist() == [2, 2, 2]
    assert not trace.confidence.isnan().any()
    _assert_same(trace, vlm.progressive_generate(x, ids, mask, reuse_cache=False))
    # thresholds from the trace: the most confident row stops at 0, one more at 1
    c = trace.confidence
    first = int(c[:, 0].argmax())
    rest = [b for b in range(3) if b != first]
    t0 = float(c[first, 0])
    t1 = min(t0, float(c[rest, 1].max()))
    vlm.thresholds = check_thresholds((t0, t1), 3)
    mixed = vlm.progressive_generate(x, ids, mask)
    assert mixed.exit_level[first] == 0
    assert sorted(mixed.exit_level.tolist()) == [0, 1, 2]
    # a row's confidences do not depend on which rows are still in the batch
    reached = ~mixed.confidence.isnan()
    torch.testing.assert_close(mixed.confidence[reached], c[reached], rtol=1e-4, atol=1e-4)
    _assert_same(mixed, vlm.progressive_generate(x, ids, mask, reuse_cache=False))
    counts = vlm.encode_images(x).scales
    for b in range(3):
        used = (counts[b][vlm.encode_images(x).mask[b]] <= mixed.exit_level[b]).sum()
        assert mixed.visual_tokens[b] == used


def test_last_level_equals_full_forward_of_each_row() -> None:
    vlm = progressive(thresholds=(1.0, 1.0))
    x, (ids, mask) = images(3), prompts(3)
    out = vlm.progressive_generate(x, ids, mask)
    plain = hierarchical(levels=3)
    for b in range(3):
        logits = plain(x[b : b + 1], unpadded(ids, mask, b)).logits[0, -1]
        torch.testing.assert_close(out.logits[b, 0], logits, rtol=1e-4, atol=1e-4)


def test_reuse_prefills_fewer_tokens() -> None:
    vlm = progressive(thresholds=(1.0, 1.0), max_new_tokens=2)
    x, (ids, mask) = images(3), prompts(3)
    reuse = vlm.progressive_generate(x, ids, mask).lm_tokens
    again = vlm.progressive_generate(x, ids, mask, reuse_cache=False).lm_tokens
    assert reuse < again


def test_confidence_functions() -> None:
    logits = torch.tensor([[[3.0, 1.0, 0.0], [0.0, 2.0, 0.0]]])
    tokens = torch.tensor([[0, 1]])
    valid = torch.tensor([[True, False]])
    p = torch.softmax(logits[0, 0], -1)
    torch.testing.assert_close(first_token_prob(logits, tokens, valid), p[:1])
    torch.testing.assert_close(mean_token_prob(logits, tokens, valid), p[:1])  # masked 2nd token
    torch.testing.assert_close(margin(logits, tokens, valid), (p[0] - p[1])[None])
    vlm = progressive(confidence=lambda lg, tk, m: torch.ones(lg.shape[0]))
    out = vlm.progressive_generate(images(2), *prompts(2))
    assert out.exit_level.tolist() == [0, 0]
    assert out.lm_tokens > 0


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ((0.8, 0.9), "non-increasing"),
        ((0.9, 0.0), r"in \(0, 1\]"),
        ((1.5, 0.5), r"in \(0, 1\]"),
        ((0.9,), "expected 2 values"),
    ],
)
def test_bad_thresholds(thresholds: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_thresholds(thresholds, 3)


def test_bad_progressive_inputs() -> None:
    vlm = progressive()
    with pytest.raises(ValueError, match="no text after the image token"):
        vlm.progressive_generate(images(1), torch.tensor([[1, 2, 63]]))
    with pytest.raises(ValueError, match="confidence: unknown name"):
        progressive(confidence="entropy")
    assert isinstance(vlm, ProgressiveVLM)


@pytest.mark.parametrize("reuse", [True, False])
def test_first_step_confidence_skips_discarded_answers(reuse: bool) -> None:
    x, (ids, mask) = images(3), prompts(3)
    lazy = progressive(thresholds=(1.0, 1.0), max_new_tokens=3)  # "first_token": reads step 0
    full = progressive(
        thresholds=(1.0, 1.0), max_new_tokens=3, confidence=lambda *a: first_token_prob(*a)
    )
    a = lazy.progressive_generate(x, ids, mask, reuse_cache=reuse)
    b = full.progressive_generate(x, ids, mask, reuse_cache=reuse)
    _assert_same(a, b)
    assert a.lm_tokens == b.lm_tokens - 2 * 2 * 3  # levels 0, 1: 2 decode steps x 3 rows skipped
    c = a.confidence  # now one row stops at level 0: answers are decoded there again
    lazy.thresholds = full.thresholds = check_thresholds((float(c[:, 0].max()), 1e-6), 3)
    a = lazy.progressive_generate(x, ids, mask, reuse_cache=reuse)
    _assert_same(a, full.progressive_generate(x, ids, mask, reuse_cache=reuse))
    _assert_same(a, lazy.progressive_generate(x, ids, mask, reuse_cache=not reuse))
    assert sorted(a.exit_level.tolist()) == [0, 1, 1]


@pytest.mark.parametrize("reuse", [True, False])
def test_level_seconds_one_entry_per_level_run(reuse: bool) -> None:
    x, (ids, mask) = images(3), prompts(3)
    vlm = progressive(thresholds=(1.0, 1.0))
    start = time.perf_counter()
    out = vlm.progressive_generate(x, ids, mask, reuse_cache=reuse)
    took = time.perf_counter() - start
    assert len(out.level_seconds) == 3  # nobody is confident enough: every level runs
    assert all(isinstance(t, float) and t >= 0 for t in out.level_seconds)
    assert sum(out.level_seconds) <= took
    vlm.thresholds = check_thresholds((float(out.confidence[:, 0].max()), 1e-6), 3)
    mixed = vlm.progressive_generate(x, ids, mask, reuse_cache=reuse)
    assert sorted(mixed.exit_level.tolist()) == [0, 1, 1]
    assert len(mixed.level_seconds) == 2  # level 2 is never reached
    assert all(t >= 0 for t in mixed.level_seconds)
    vlm.confidence = lambda lg, tk, m: torch.ones(lg.shape[0])  # everyone stops at level 0
    assert len(vlm.progressive_generate(x, ids, mask, reuse_cache=reuse).level_seconds) == 1
