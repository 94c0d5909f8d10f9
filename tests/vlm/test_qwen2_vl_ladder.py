"""The quadtree ladder on Qwen2-VL: each rung, with the KV cache of the rungs before it, equals
a from-scratch forward of everything it sent with M-RoPE ids; reuse equals re-prefilling with
exits at every rung; rung 0 equals the one-shot forward at its budget."""

from __future__ import annotations

import pytest
import torch

from pyrtok.vlm import MixedResolutionVLM, ProgressiveOutput
from pyrtok.vlm._hf import call_lm
from pyrtok.vlm.quadtree_ladder import leaf_keys, new_leaves
from pyrtok.vlm.qwen2_vl_rope import mrope_positions
from pyrtok.vlm.testing import tiny_qwen2_vl
from pyrtok.vlm.wiring import embed_text

IMAGE, START, END = 90, 88, 89
PROMPTS = ([1, 2, START, IMAGE, END, 5, 6], [0, 0, 3, START, IMAGE, END, 7])  # row 1 padded


def _batch(height: int, width: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    x = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(seed))
    ids = torch.tensor(PROMPTS)
    return x, ids, (ids != 0).long()


def _from_scratch(
    vlm: MixedResolutionVLM,
    image: torch.Tensor,
    prompt: list[int],
    ladder: tuple[int, ...],
    answer: list[int],
) -> torch.Tensor:
    """``(len(answer) + 1, V)`` logits of one LM call without cache on ``text before | the
    leaves each rung sent | text after, answer``, M-RoPE ids from the leaves' boxes."""
    split = prompt.index(IMAGE)
    features, offsets, previous = [], [], None
    for budget in ladder:
        allocation = vlm.default_allocator(budget)(image[None])
        embeds, _, _, _ = vlm.encode_images(image[None], allocation=allocation)
        sent = new_leaves(allocation, previous)[0]
        previous = leaf_keys(allocation)
        features.append(embeds[0, sent])
        boxes = allocation.boxes[0, sent].float()
        offsets.append((boxes[:, :2] + boxes[:, 2:] / 2) / 28 - 0.5)
    text_ids = prompt[:split] + prompt[split + 1 :] + answer
    text = embed_text(vlm.language_model, torch.tensor([text_ids]), IMAGE)[0]
    visual = torch.cat(features)
    embeds = torch.cat([text[:split], visual, text[split:]])[None]
    before = torch.arange(len(text_ids))[None] < split
    span = torch.tensor([max(image.shape[-2:]) // 28])
    positions, _ = mrope_positions(
        before, ~before, torch.cat(offsets)[None], torch.ones(1, len(visual)).bool(), span
    )
    out = call_lm(vlm.language_model, embeds, torch.ones(embeds.shape[:2]).long(), positions)
    return out.logits[0, -len(answer) - 1 :]


@pytest.mark.parametrize(
    ("version", "height", "width", "max_patch", "ladder"),
    [("2", 140, 196, 56, (17, 23, 35)), ("2.5", 112, 224, 112, (2, 11, 32))],
)
def test_each_rung_equals_a_from_scratch_forward_of_what_it_sent(
    version: str, height: int, width: int, max_patch: int, ladder: tuple[int, ...]
) -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(version=version), max_patch=max_patch)
    x, ids, mask = _batch(height, width)
    for rung in range(len(ladder)):  # a ladder cut after `rung`: its rungs are the same
        out = vlm.progressive_generate(
            x,
            ids,
            mask,
            budgets=ladder[: rung + 1],
            thresholds=(1.0,) * rung,
            max_new_tokens=2,
            eos_token_id=-1,
        )
        assert out.exit_level.tolist() == [rung, rung]
        for row, prompt in enumerate(PROMPTS):
            real = [token for token in prompt if token]
            answer = out.sequences[row, :1].tolist()
            reference = _from_scratch(vlm, x[row], real, ladder[: rung + 1], answer)
            torch.testing.assert_close(out.logits[row], reference, rtol=1e-4, atol=1e-4)
            if rung == 0:  # the one-shot forward (merge path) at the rung's budget
                one_shot = vlm(x[row : row + 1], torch.tensor([real]), budget=ladder[0])
                torch.testing.assert_close(
                    out.logits[row, 0], one_shot.logits[0, -1], rtol=1e-4, atol=1e-4
                )


def _assert_same(a: ProgressiveOutput, b: ProgressiveOutput) -> None:
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(a.confidence, b.confidence, rtol=1e-4, atol=1e-4, equal_nan=True)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(a.exit_level, b.exit_level)
    assert torch.equal(a.visual_tokens, b.visual_tokens)


def test_reuse_equals_reprefill_with_exits_at_every_rung() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(version="2.5"), max_patch=56)
    x = torch.rand(3, 3, 140, 196, generator=torch.Generator().manual_seed(3))
    ids = torch.tensor([PROMPTS[0], PROMPTS[1], [0, 4, 4, START, IMAGE, END, 8]])
    mask = (ids != 0).long()
    kwargs = dict(budgets=(17, 23, 35), max_new_tokens=3, confidence="mean_logprob")
    trace = vlm.progressive_generate(x, ids, mask, thresholds=(1.0, 1.0), **kwargs)
    assert trace.exit_level.tolist() == [2, 2, 2]
    _assert_same(
        trace,
        vlm.progressive_generate(x, ids, mask, thresholds=(1.0, 1.0), reuse_cache=False, **kwargs),
    )
    c = trace.confidence
    first = int(c[:, 0].argmax())
    rest = [b for b in range(3) if b != first]
    t0 = float(c[first, 0])
    t1 = min(t0, float(c[rest, 1].max()))
    mixed = vlm.progressive_generate(x, ids, mask, thresholds=(t0, t1), **kwargs)
    assert sorted(mixed.exit_level.tolist()) == [0, 1, 2]
    reached = ~mixed.confidence.isnan()  # a row's exit leaves the others' rungs unchanged
    torch.testing.assert_close(mixed.confidence[reached], c[reached], rtol=1e-4, atol=1e-4)
    _assert_same(
        mixed,
        vlm.progressive_generate(x, ids, mask, thresholds=(t0, t1), reuse_cache=False, **kwargs),
    )


def test_the_ladder_refuses_what_qwen2_vl_refuses() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), max_patch=56)
    ids = torch.tensor([PROMPTS[0]])
    with pytest.raises(ValueError, match="not a whole number of 28-px merge groups"):
        vlm.progressive_generate(torch.rand(1, 3, 70, 112), ids, budgets=(4,), thresholds=())
    with pytest.raises(ValueError, match="video token"):
        vlm.progressive_generate(
            torch.rand(1, 3, 56, 112),
            torch.tensor([[1, START, 91, END, IMAGE, 5]]),
            budgets=(2,),
            thresholds=(),
        )
