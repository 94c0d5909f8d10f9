"""HierarchicalVLM: unequal token counts per batch, row independence, from_llava, training,
generate, quantiser, selectors."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

from pyrtok.quantize import VectorQuantizer
from pyrtok.vlm import FrequencySelector, HierarchicalVLM, ProgressiveVLM
from pyrtok.vlm.testing import tiny_llava

from .helpers import IMAGE, RowSelector, hierarchical, images, prompts, unpadded


def test_frequency_selection_budget() -> None:
    vlm = hierarchical(levels=3)
    visual = vlm.encode_images(images(3))
    # 2x2 cells of 32 px, 20 possible splits, detail 0.5 -> 10 splits, 4 residual tokens each
    assert visual.counts.tolist() == [44, 44, 44]
    assert (visual.scales[:, :4] == 0).all()
    assert (visual.scales[:, 4:] > 0).all()
    # selected regions differ: the smooth image gets its detail elsewhere than a textured one
    fine = [set((visual.embeds[b, visual.scales[b] == 2]).sum(-1).tolist()) for b in range(3)]
    assert fine[0] != fine[2]


def test_unequal_counts_and_row_independence() -> None:
    vlm = hierarchical(levels=3, selector=RowSelector())
    x = images(3)
    ids, mask = prompts(3)
    visual = vlm.encode_images(x)
    assert visual.counts.tolist() == [4, 4 + 3 + 3, 4 + 6 + 6]
    out = vlm(x, ids, mask)
    text = mask.sum(1) - 1
    assert out.logits.shape[:2] == (3, int((text + visual.counts).max()))
    for b in range(3):
        vlm.selector.first_row = b
        alone = vlm(x[b : b + 1], unpadded(ids, mask, b)).logits[0]
        n = alone.shape[0]
        torch.testing.assert_close(out.logits[b, :n], alone, rtol=1e-4, atol=1e-4)


def test_all_selector_keeps_every_residual() -> None:
    vlm = hierarchical(levels=3, selector="all")
    assert vlm.encode_images(images(2)).counts.tolist() == [4 + 16 + 64] * 2


def test_from_llava_logits_equal_llava() -> None:
    llava = tiny_llava()
    vlm = HierarchicalVLM.from_llava(llava)
    x = torch.rand(2, 3, 32, 32)
    ids = torch.tensor([[1, 2] + [IMAGE] * 16 + [5, 6], [3] + [IMAGE] * 16 + [7, 8, 9]])
    ours = vlm(x, ids).logits
    theirs = llava(input_ids=ids, pixel_values=x).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    # one placeholder per row is expanded to the same sequence
    short = torch.tensor([[1, 2, IMAGE, 5, 6], [3, IMAGE, 7, 8, 9]])
    torch.testing.assert_close(vlm(x, short).logits, theirs, rtol=1e-5, atol=1e-5)
    assert isinstance(ProgressiveVLM.from_llava(llava, levels=2), ProgressiveVLM)


def test_freezing_a_wrapped_llavas_language_model_leaves_its_tower_and_projector() -> None:
    vlm = HierarchicalVLM.from_llava(tiny_llava(), levels=2, freeze=("language_model",))
    tower = {id(p) for p in vlm.vision_encoder.parameters()}
    projector = {id(p) for p in vlm.projector.parameters()}
    trainable = {id(p) for p in vlm.parameters() if p.requires_grad}
    assert tower | projector <= trainable
    lm_only = [p for p in vlm.language_model.parameters() if id(p) not in tower | projector]
    assert lm_only
    assert not any(p.requires_grad for p in lm_only)
    both = HierarchicalVLM.from_llava(tiny_llava(), freeze=("language_model", "projector"))
    assert not any(p.requires_grad for p in both.projector.parameters())


def test_training_step_reaches_every_part_and_freeze() -> None:
    vlm = hierarchical(levels=2).train()
    x, (ids, mask) = images(3), prompts(3)
    labels = torch.where(mask.bool(), ids, -100)
    out = vlm(x, ids, mask, labels=labels)
    assert out.loss.isfinite()
    out.loss.backward()
    for part in (vlm.projector, vlm.language_model, vlm.vision_encoder):
        grads = [p.grad for p in part.parameters() if p.grad is not None]
        assert grads
        assert any(g.abs().sum() > 0 for g in grads)
    frozen = hierarchical(levels=2, freeze=("encoder", "language_model")).train()
    frozen(x, ids, mask, labels=labels).loss.backward()
    assert all(p.grad is None for p in frozen.vision_encoder.parameters())
    assert all(p.grad is not None for p in frozen.projector.parameters())


def test_loss_matches_manual_cross_entropy() -> None:
    vlm = hierarchical(levels=2)
    x, (ids, mask) = images(2), prompts(2)
    labels = torch.where(mask.bool(), ids, -100)
    out = vlm(x, ids, mask, labels=labels)
    merged, _ = vlm.merge(x, ids, mask, labels)
    assert merged.labels is not None
    ref = torch.nn.functional.cross_entropy(
        out.logits[:, :-1].flatten(0, 1).float(), merged.labels[:, 1:].flatten(), ignore_index=-100
    )
    torch.testing.assert_close(out.loss, ref, rtol=1e-5, atol=1e-5)


def test_generate_batch_equals_each_row_alone() -> None:
    vlm = hierarchical(levels=3)
    x, (ids, mask) = images(3), prompts(3)
    batch = vlm.generate(x, ids, mask, max_new_tokens=4, do_sample=False)
    assert batch.shape[0] == 3
    for b in range(3):
        alone = vlm.generate(
            x[b : b + 1], unpadded(ids, mask, b), max_new_tokens=4, do_sample=False
        )
        assert batch[b, : alone.shape[1]].tolist() == alone[0].tolist()


def test_quantizer_and_query_selector() -> None:
    vq = VectorQuantizer(32, 16)
    vlm = hierarchical(levels=2, quantizer=vq).train()
    x, (ids, mask) = images(2), prompts(2)
    visual = vlm.encode_images(x)
    assert visual.indices is not None
    assert (visual.indices[visual.mask] >= 0).all()
    out = vlm(x, ids, mask, labels=torch.where(mask.bool(), ids, -100))
    assert out.loss.isfinite()
    q = hierarchical(levels=3, selector="query")
    counts = q.encode_images(x, q.query_embedding(ids, mask)).counts
    assert set(counts.tolist()) <= {4, 4 + 8 + 32}


def test_bad_inputs() -> None:
    vlm = hierarchical(levels=3)
    ids, mask = prompts(2)
    with pytest.raises(ValueError, match="multiples of patch_size"):
        vlm(torch.rand(2, 3, 48, 64), ids, mask)
    with pytest.raises(ValueError, match="no image token"):
        vlm(images(2), torch.tensor([[1, 2, 3], [4, 5, 6]]))
    with pytest.raises(ValueError, match="labels: expected one label per input token"):
        vlm(images(2), ids, mask, labels=ids[:, 1:])
    with pytest.raises(ValueError, match="pixel_values: expected one image per input_ids row"):
        vlm(images(3), ids, mask)
    from pyrtok.vlm.testing import tiny_clip, tiny_llama

    with pytest.raises(ValueError, match="projector: 'identity' needs the vision hidden size"):
        HierarchicalVLM(tiny_clip(), tiny_llama(hidden_size=48), "identity", image_token_id=IMAGE)
    wrong = HierarchicalVLM(
        tiny_clip(), tiny_llama(hidden_size=48), torch.nn.Linear(32, 40), image_token_id=IMAGE
    )
    with pytest.raises(
        ValueError, match="produced features of size 40 but the language model's hidden size is 48"
    ):
        wrong(images(2), ids, mask)
    with pytest.raises(ValueError, match="image_token_id"):
        HierarchicalVLM(tiny_clip(), tiny_llama())


def test_normalising_inside_lets_the_selector_score_unit_pixels() -> None:
    from pyrtok.vlm.pixels import CLIP_MEAN, CLIP_STD

    class Recording(FrequencySelector):
        seen: ClassVar[list[torch.Tensor]] = []

        def forward(self, images, grids, query, patch_size):  # type: ignore[no-untyped-def]
            self.seen.append(images)
            return super().forward(images, grids, query, patch_size)

    x = images(3).clamp(0, 1)
    mean, std = (torch.tensor(v)[:, None, None] for v in (CLIP_MEAN, CLIP_STD))
    normalised = (x - mean) / std
    inside = hierarchical(
        levels=3, selector=Recording(scorer="entropy"), image_mean=CLIP_MEAN, image_std=CLIP_STD
    )
    outside = hierarchical(levels=3, selector=Recording(scorer="entropy"))
    ours = inside.encode_images(x)
    assert torch.equal(Recording.seen[0], x)  # the selector scored [0, 1] pixels
    with pytest.raises(ValueError, match=r"entropy scorer bins pixel values in \[0, 1\]"):
        outside.encode_images(normalised)  # normalised pixels reach the scorer: refused
    assert torch.equal(Recording.seen[1], normalised)
    # Normalising inside gives the encoder what normalising outside gives it.
    theirs = hierarchical(levels=3, selector=Recording(scorer="laplacian")).encode_images(
        normalised
    )
    coarse = ours.mask & (ours.scales == 0)  # scale 0 is kept in full: the encoder input
    torch.testing.assert_close(ours.embeds[coarse], theirs.embeds[coarse])
    ids, mask = prompts(3)
    with pytest.raises(ValueError, match=r"pixel_values: expected images in \[0, 1\]"):
        inside(normalised, ids, mask)
    with pytest.raises(ValueError, match="image_mean, image_std: give both"):
        hierarchical(levels=2, image_mean=CLIP_MEAN)
