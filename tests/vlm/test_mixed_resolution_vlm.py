"""MixedResolutionVLM: LLaVA's own logits at full detail, one pyramid per forward, [0, 1]
pixels for the allocator, rows with their own budgets, generation, saving, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import pyrtok.pyramid.functional as pyramid_functional
from pyrtok.allocation import STRATEGIES, FrequencyAwareAllocator, allocate
from pyrtok.quantize import VectorQuantizer
from pyrtok.vlm import MixedResolutionVLM, VLMOutput
from pyrtok.vlm.pixels import CLIP_MEAN, CLIP_STD, HALF
from pyrtok.vlm.testing import tiny_clip, tiny_llama, tiny_llava
from tests.vlm.helpers import IMAGE, prompts, unpadded
from tests.vlm.helpers import images as textured

NORMALISATION = {"clip": (CLIP_MEAN, CLIP_STD), "siglip": (HALF, HALF)}


def images(batch: int) -> torch.Tensor:
    """The shared test images, in [0, 1]."""
    return textured(batch).clamp(0, 1)


def _vlm(**kwargs: object) -> MixedResolutionVLM:
    torch.manual_seed(0)
    kwargs.setdefault("budget", 22)
    return MixedResolutionVLM(
        tiny_clip(), tiny_llama(), image_token_id=IMAGE, max_patch=32, **kwargs
    ).eval()


@pytest.mark.parametrize("tower", ["clip", "siglip"])
def test_full_detail_equals_llavas_own_forward(tower: str) -> None:
    llava = tiny_llava(vision=tower)
    vlm = MixedResolutionVLM.from_llava(llava, budget=16, max_patch=16)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    mean, std = (torch.tensor(v)[:, None, None] for v in NORMALISATION[tower])
    ids = torch.tensor([[1, 2] + [IMAGE] * 16 + [5, 6], [3] + [IMAGE] * 16 + [7, 8, 9]])
    theirs = llava(input_ids=ids, pixel_values=(x - mean) / std).logits
    out = vlm(x, ids)
    assert bool((out.allocation.leaf_level == 0).all())
    assert out.visual_counts.tolist() == [16, 16]
    torch.testing.assert_close(out.logits, theirs, rtol=1e-4, atol=1e-4)
    short = torch.tensor([[1, 2, IMAGE, 5, 6], [3, IMAGE, 7, 8, 9]])
    torch.testing.assert_close(vlm(x, short).logits, theirs, rtol=1e-4, atol=1e-4)


def test_morton_order_is_not_the_patch_grid() -> None:
    llava = tiny_llava()
    x = torch.rand(1, 3, 32, 32)
    ids = torch.tensor([[1, IMAGE, 5]])
    raster = MixedResolutionVLM.from_llava(llava, budget=16, max_patch=16)(x, ids).logits
    morton = MixedResolutionVLM.from_llava(llava, budget=16, max_patch=16, order="morton")
    assert not torch.allclose(morton(x, ids).logits, raster, atol=1e-4)


def test_one_pyramid_build_per_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    vlm = _vlm()
    x, (ids, mask) = images(3), prompts(3)
    calls: list[int] = []
    original = pyramid_functional.pyr_down

    def counting(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pyramid_functional, "pyr_down", counting)
    vlm(x, ids, mask)
    assert len(calls) == 2  # 64 px -> 32 -> 16: the only REDUCE steps of the one pyramid


def test_the_allocator_sees_unit_pixels_not_normalised_ones() -> None:
    # Dark texture on the left, bright texture on the right: in [0, 1] both are inside the
    # entropy scorer's bins; normalised with mean 0.5 / std 0.05 the dark one falls below 0 and
    # the bright one above 1 (end bins), so entropy would see no texture at all.
    g = torch.Generator().manual_seed(0)
    x = torch.full((1, 3, 64, 64), 0.5)
    x[..., :32] = 0.1 + 0.2 * torch.rand(3, 64, 32, generator=g)
    x[..., 32:] = 0.7 + 0.2 * torch.rand(3, 64, 32, generator=g)
    vlm = _vlm(budget=10, scorer="entropy", image_mean=(0.5,) * 3, image_std=(0.05,) * 3)
    out = vlm(x, torch.tensor([[1, IMAGE, 5]]))
    expected = allocate(x, 10, 8, 32, scorer="entropy")
    assert torch.equal(out.allocation.boxes, expected.boxes)
    with pytest.raises(ValueError, match=r"entropy scorer bins pixel values in \[0, 1\]"):
        allocate((x - 0.5) / 0.05, 10, 8, 32, scorer="entropy")


def test_rows_with_their_own_budgets_equal_each_row_alone() -> None:
    vlm = _vlm()
    x, (ids, mask) = images(3), prompts(3)
    budgets = [4, 22, 13]
    batch = vlm(x, ids, mask, budget=budgets)
    assert batch.visual_counts.tolist() == budgets
    assert batch.allocation.lengths.tolist() == budgets
    for b in range(3):
        alone = vlm(x[b : b + 1], unpadded(ids, mask, b), budget=budgets[b])
        count = alone.logits.shape[1]
        torch.testing.assert_close(batch.logits[b, :count], alone.logits[0], rtol=1e-4, atol=1e-4)


def test_a_list_of_images_of_different_sizes_equals_each_image_alone() -> None:
    vlm = _vlm()
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(3, h, w, generator=g) for h, w in [(64, 96), (32, 64), (64, 96)]]
    (ids, mask), budgets = prompts(3), [21, 14, 18]
    batch = vlm(xs, ids, mask, budget=budgets)
    assert batch.visual_counts.tolist() == budgets
    assert isinstance(batch.allocation, list)
    assert [a.image_size for a in batch.allocation] == [(64, 96), (32, 64), (64, 96)]
    for b, x in enumerate(xs):
        alone = vlm(x[None], unpadded(ids, mask, b), budget=budgets[b])
        assert torch.equal(batch.allocation[b].boxes, alone.allocation.boxes)
        count = alone.logits.shape[1]
        torch.testing.assert_close(batch.logits[b, :count], alone.logits[0], rtol=1e-4, atol=1e-4)
    again = vlm(xs, ids, mask, allocation=batch.allocation)  # a given list is used as is
    torch.testing.assert_close(again.logits, batch.logits, rtol=0, atol=0)
    assert isinstance(again.allocation, list)
    assert [int(a.lengths) for a in again.allocation] == budgets


def test_bad_lists_of_images_name_the_image() -> None:
    vlm = _vlm()
    ids, mask = prompts(2)
    with pytest.raises(ValueError, match="pixel_values: expected at least one"):
        vlm([], ids[:0], mask[:0])
    with pytest.raises(ValueError, match=r"pixel_values\[1\]: expected 3 channels"):
        vlm([torch.rand(3, 64, 64), torch.rand(1, 64, 64)], ids, mask)
    with pytest.raises(ValueError, match=r"budget: expected one number or one per image \(2\)"):
        vlm([torch.rand(3, 64, 64), torch.rand(3, 32, 64)], ids, mask, budget=[4, 5, 6])
    with pytest.raises(
        ValueError, match=r"each side must be >= max_patch.*\(pixel_values\[1\], 16x64\)"
    ):
        vlm([torch.rand(3, 64, 64), torch.rand(3, 16, 64)], ids, mask)


def test_budget_mode_at_most_rounds_each_row_down_and_is_saved(tmp_path: Path) -> None:
    vlm = _vlm(budget=21, budget_mode="at_most")  # 4 cells: budgets 4 + 3s
    x, (ids, mask) = images(3), prompts(3)
    assert vlm(x, ids, mask).visual_counts.tolist() == [19, 19, 19]
    assert vlm(x, ids, mask, budget=[5, 23, 64]).visual_counts.tolist() == [4, 22, 64]
    vlm.save_pretrained(tmp_path)
    again = MixedResolutionVLM.from_pretrained(tmp_path, tiny_clip(), tiny_llama())
    assert again.budget_mode == "at_most"
    with pytest.raises(ValueError, match=r"budget_mode: expected one of \['exact', 'at_most'"):
        _vlm(budget_mode="nearest")


def test_generate_batch_equals_each_row_alone() -> None:
    vlm = _vlm()
    x, (ids, mask) = images(3), prompts(3)
    batch = vlm.generate(x, ids, mask, budget=[4, 22, 13], max_new_tokens=4, do_sample=False)
    for b, budget in enumerate([4, 22, 13]):
        alone = vlm.generate(
            x[b : b + 1], unpadded(ids, mask, b), budget=budget, max_new_tokens=4, do_sample=False
        )
        assert batch[b, : alone.shape[1]].tolist() == alone[0].tolist()


def test_given_allocation_is_used_and_output_is_typed() -> None:
    vlm = _vlm()
    x = images(2)
    allocation = FrequencyAwareAllocator(7, 8, 32, scorer="blur")(x)
    out = vlm(x, torch.tensor([[1, IMAGE, 5], [2, IMAGE, 6]]), allocation=allocation)
    assert isinstance(out, VLMOutput)
    assert out.allocation is allocation
    assert out.visual_counts.tolist() == [7, 7]


def test_training_reaches_the_projector_and_freeze_stops_the_encoder() -> None:
    vlm = _vlm(freeze=("encoder", "language_model"))
    ids = torch.tensor([[1, IMAGE, 5, 6]])
    vlm(images(1), ids, labels=ids).loss.backward()
    assert all(p.grad is not None for p in vlm.projector.parameters())
    assert all(p.grad is None for p in vlm.vision_model.parameters())
    assert all(p.grad is None for p in vlm.language_model.parameters())


def test_save_and_load_what_pyrtok_owns(tmp_path: Path) -> None:
    vlm = _vlm(budget=13, scorer="entropy", order="morton")
    with torch.no_grad():
        for p in vlm.projector.parameters():
            p.add_(1.0)
    vlm.save_pretrained(tmp_path)
    again = MixedResolutionVLM.from_pretrained(tmp_path, tiny_clip(), tiny_llama())
    assert (again.budget, again.scorer, again.order, again.max_patch) == (
        13,
        "entropy",
        "morton",
        32,
    )
    x, ids = images(2), torch.tensor([[1, IMAGE, 5], [2, IMAGE, 6]])
    torch.testing.assert_close(again(x, ids).logits, vlm(x, ids).logits)
    llava = MixedResolutionVLM.from_llava(tiny_llava(), budget=16, max_patch=16)
    llava.save_pretrained(tmp_path / "llava")
    restored = MixedResolutionVLM.from_pretrained(tmp_path / "llava", tiny_llava())
    assert restored.feature_layer == -2


def test_a_callable_strategy_is_not_written_to_json(tmp_path: Path) -> None:
    vlm = _vlm(strategy=STRATEGIES["optimal"])
    assert vlm(images(1), torch.tensor([[1, IMAGE, 5]])).visual_counts.tolist() == [22]
    with pytest.raises(ValueError, match=r"a custom strategy \(a callable\) cannot be written"):
        vlm.save_pretrained(tmp_path)


def test_a_saved_quantizer_must_be_given_back(tmp_path: Path) -> None:
    vlm = _vlm(quantizer=VectorQuantizer(32, 16))
    vlm.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="quantizer: the saved model has one"):
        MixedResolutionVLM.from_pretrained(tmp_path, tiny_clip(), tiny_llama())
    again = MixedResolutionVLM.from_pretrained(
        tmp_path, tiny_clip(), tiny_llama(), quantizer=VectorQuantizer(32, 16)
    )
    assert again.quantizer is not None
    for key, value in vlm.quantizer.state_dict().items():
        torch.testing.assert_close(again.quantizer.state_dict()[key], value)


def test_bad_input_says_what_to_fix() -> None:
    vlm = _vlm()
    ids = torch.tensor([[1, IMAGE, 5]])
    with pytest.raises(ValueError, match=r"pixel_values: expected images in \[0, 1\]"):
        vlm(images(1) * 255, ids)
    with pytest.raises(ValueError, match="nearest feasible budgets are 22 and 25"):
        vlm(images(1), ids, budget=23)
    with pytest.raises(ValueError, match="allocator: its min_patch 16 must equal"):
        _vlm(allocator=FrequencyAwareAllocator(4, 16, 32))
    with pytest.raises(ValueError, match="allocation: min_patch must equal the vision model's"):
        vlm(images(1), ids, allocation=allocate(images(1), 4, 16, 32))
    with pytest.raises(ValueError, match="allocation: made for 64x64 images, got 96x64"):
        vlm(torch.rand(1, 3, 96, 64), ids, allocation=allocate(images(1), 4, 8, 32))
    with pytest.raises(TypeError, match="allocator: expected it to return an Allocation"):
        _vlm(budget=None, allocator=lambda x, pyramid=None: x)(images(1), ids)
    with pytest.raises(ValueError, match="budget: give one here or to the constructor"):
        _vlm(budget=None)(images(1), ids)
    with pytest.raises(ValueError, match=r"budget: expected one int or one per image \(1\)"):
        vlm(images(1), ids, budget=[4, 7])
