"""Qwen2-VL native: the model's own logits and M-RoPE ids at full detail, budgets below it
(each row equals the row alone), generation, and the bad input of issue #14."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pyrtok.allocation import FrequencyAwareAllocator, QuadtreeGeometry, allocate
from pyrtok.quantize import VectorQuantizer
from pyrtok.vlm import MixedResolutionVLM
from pyrtok.vlm.pixels import CLIP_MEAN, CLIP_STD
from pyrtok.vlm.qwen2_vl import Qwen2VLMixedResolutionVLM
from pyrtok.vlm.testing import tiny_qwen2_vl

IMAGE, VIDEO, START, END = 90, 91, 88, 89


def _images(batch: int, height: int = 112, width: int = 224, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))


def _prompt(
    count: int, before: tuple[int, ...] = (1,), after: tuple[int, ...] = (5, 6)
) -> list[int]:
    """Qwen2-VL's layout: text, vision start, ``count`` image tokens, vision end, text."""
    return [*before, START, *([IMAGE] * count), END, *after]


def _processor() -> Any:
    """Qwen2-VL's own image processor without torchvision (5.x: the PIL one; 4.5x: numpy)."""
    try:
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
            Qwen2VLImageProcessorPil as Processor,
        )
    except ImportError:
        from transformers import Qwen2VLImageProcessor as Processor
    return Processor(image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))


def _theirs(model: Any, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    """The model's own forward on ``x`` patched by its own processor (no resize/rescale)."""
    arrays = [image.numpy().astype(np.float32) for image in x]
    inputs = _processor()(
        images=arrays,
        do_resize=False,
        do_rescale=False,
        return_tensors="pt",
        input_data_format="channels_first",
    )
    kwargs = {
        "input_ids": ids,
        "attention_mask": mask,
        "pixel_values": inputs["pixel_values"],
        "image_grid_thw": inputs["image_grid_thw"],
    }
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        kwargs["mm_token_type_ids"] = (ids == IMAGE).int()
    return model(**kwargs), inputs["image_grid_thw"]


def _rope_index(model: Any, ids: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor) -> Any:
    """``get_rope_index`` under either signature (5.x: ``mm_token_type_ids``)."""
    owner = getattr(model.model, "get_rope_index", None) or model.get_rope_index
    kwargs: dict[str, Any] = {"image_grid_thw": grid, "attention_mask": mask}
    if "mm_token_type_ids" in inspect.signature(owner).parameters:
        kwargs["mm_token_type_ids"] = (ids == IMAGE).int()
    return owner(ids, **kwargs)[0]


@pytest.mark.parametrize(
    ("version", "height", "width", "max_patch"),
    [
        ("2", 112, 224, 112),
        ("2.5", 112, 224, 112),
        ("2.5", 168, 224, 56),
        ("2.5", 224, 224, 28),
        ("2", 140, 196, 56),  # sides multiples of 28, not of max_patch: roots of 28 px
        ("2.5", 140, 196, 56),
        ("2.5", 196, 252, 112),  # roots of 56 and 28 px; windows cut by the border
    ],
)
def test_full_detail_equals_the_models_own_forward_and_rope_index(
    version: str, height: int, width: int, max_patch: int
) -> None:
    model = tiny_qwen2_vl(version=version)
    count = (height // 28) * (width // 28)
    vlm = MixedResolutionVLM.from_qwen2_vl(model, budget=count, max_patch=max_patch)
    x = _images(2, height, width)
    rows = [_prompt(count, (1, 2)), [0, *_prompt(count, (3,), (7, 8))]]  # row 1 left-padded
    ids = torch.tensor(rows)
    mask = (ids != 0).long()
    theirs, grid = _theirs(model, x, ids, mask)
    out = vlm(x, ids, mask)
    assert bool((out.allocation.leaf_level == 0).all())
    assert out.visual_counts.tolist() == [count, count]
    merged, *_ = vlm.merge(x, ids, mask)
    reference = _rope_index(model, ids, grid, mask)
    for row in range(2):  # our rows are right-padded: compare each row's real tokens
        real = mask[row].bool()
        length = int(real.sum())
        ours = out.logits[row, :length]
        torch.testing.assert_close(ours, theirs.logits[row, real], rtol=1e-4, atol=1e-4)
        assert torch.equal(merged.position_ids[:, row, :length], reference[:, row, real].float())


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(4, 12),
    cols=st.integers(4, 12),
    max_patch=st.sampled_from([28, 56, 112]),
    fraction=st.floats(0, 1),
)
def test_every_leaf_and_root_lies_in_one_qwen2_5_window(
    rows: int, cols: int, max_patch: int, fraction: float
) -> None:
    """Roots sit on the grid of their own side, which divides max_patch, which divides the
    112-px window: no node, at any budget, crosses a window border."""
    height, width = 28 * rows, 28 * cols
    geometry = QuadtreeGeometry.create(height, width, 28, max_patch)
    splits = round(fraction * geometry.max_splits)
    budget = geometry.min_budget + 3 * splits
    allocation = allocate(_images(1, height, width), budget, min_patch=28, max_patch=max_patch)
    boxes = allocation.boxes[0]
    first, last = boxes[:, :2] // 112, (boxes[:, :2] + boxes[:, 2:3] - 1) // 112
    assert int(allocation.lengths[0]) == budget
    assert torch.equal(first, last)


def test_qwen2_5_leaves_must_not_cross_its_windows() -> None:
    with pytest.raises(ValueError, match=r"span several of Qwen2\.5-VL's 112-px attention windows"):
        MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(version="2.5"), max_patch=224)


def test_qwen2_5_budgets_per_row_equal_each_row_alone() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(version="2.5"))
    x = _images(2, 224, 224, seed=6)
    ids = torch.tensor([_prompt(1)] * 2)
    out = vlm(x, ids, budget=[7, 31])
    for row, budget in enumerate([7, 31]):
        alone = vlm(x[row : row + 1], ids[row : row + 1], budget=budget).logits[0]
        torch.testing.assert_close(out.logits[row, : alone.shape[0]], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("version", "height", "width"), [("2", 140, 196), ("2.5", 196, 252)])
def test_budgets_on_sides_off_the_cell_grid_equal_each_row_alone(
    version: str, height: int, width: int
) -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(version=version), max_patch=56)
    geometry = QuadtreeGeometry.create(height, width, 28, 56)
    x = _images(2, height, width, seed=7)
    ids = torch.tensor([_prompt(1)] * 2)
    budgets = [geometry.min_budget, geometry.min_budget + 3 * 5]
    out = vlm(x, ids, budget=budgets)
    assert out.visual_counts.tolist() == budgets
    for row, budget in enumerate(budgets):
        alone = vlm(x[row : row + 1], ids[row : row + 1], budget=budget).logits[0]
        torch.testing.assert_close(out.logits[row, : alone.shape[0]], alone, rtol=1e-5, atol=1e-5)


def test_one_placeholder_is_expanded_to_the_leaves() -> None:
    model = tiny_qwen2_vl()
    vlm = MixedResolutionVLM.from_qwen2_vl(model, budget=32)
    x = _images(1)
    expanded = vlm(x, torch.tensor([_prompt(32)])).logits
    single = vlm(x, torch.tensor([_prompt(1)])).logits
    assert torch.equal(expanded, single)


def test_budgets_per_row_equal_each_row_alone() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl())
    x = _images(3, seed=2)
    ids = torch.tensor([_prompt(1, (1,), (5, 6)), _prompt(1, (1, 2), (5,)), _prompt(1)])
    budgets = [2, 11, 20]
    out = vlm(x, ids, budget=budgets)
    assert out.visual_counts.tolist() == budgets
    assert out.allocation.lengths.tolist() == budgets
    for row, budget in enumerate(budgets):
        alone = vlm(x[row : row + 1], ids[row : row + 1], budget=budget).logits[0]
        torch.testing.assert_close(out.logits[row, : alone.shape[0]], alone, rtol=1e-5, atol=1e-5)


def test_coarse_leaves_take_fractional_rope_positions() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=2)  # two 112-px cells
    merged, *_ = vlm.merge(_images(1), torch.tensor([_prompt(1, (1,), (5,))]))
    # text 0, start 1, two cells centred on merge cells 1.5 (rows) and 1.5, 5.5 (cols), end
    # and text continue after max(grid_h, grid_w) = 8 cells
    assert merged.position_ids[:, 0].tolist() == [
        [0.0, 1.0, 2.0, 2.0, 10.0, 11.0],
        [0.0, 1.0, 3.5, 3.5, 10.0, 11.0],
        [0.0, 1.0, 3.5, 7.5, 10.0, 11.0],
    ]


def test_images_of_different_sizes_in_a_list() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=5)
    tall, wide = _images(1, 224, 112)[0], _images(1, 112, 224, seed=3)[0]
    ids = torch.tensor([_prompt(1)] * 2)
    out = vlm([tall, wide], ids)
    assert out.visual_counts.tolist() == [5, 5]
    alone = vlm(wide[None], ids[1:]).logits[0]
    torch.testing.assert_close(out.logits[1, : alone.shape[0]], alone, rtol=1e-5, atol=1e-5)


def test_generate_continues_the_forward_greedily_per_row() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl())
    x = _images(2, seed=4)
    ids = torch.tensor([_prompt(1, (1,), (5, 6, 7)), [0, 0, *_prompt(1, (1,), (5,))]])
    mask = (ids != 0).long()
    new = vlm.generate(x, ids, mask, budget=[5, 14], max_new_tokens=4, eos_token_id=-1)
    assert new.shape == (2, 4)
    for row, budget in enumerate([5, 14]):
        real = mask[row].bool()
        prompt = ids[row : row + 1, real]
        alone = vlm.generate(
            x[row : row + 1], prompt, budget=budget, max_new_tokens=4, eos_token_id=-1
        )
        assert torch.equal(new[row], alone[0])
        sequence = prompt
        for step in range(4):  # greedy by re-running forward on the growing prompt
            logits = vlm(x[row : row + 1], sequence, budget=budget).logits[0, -1]
            assert int(logits.argmax()) == int(new[row, step])
            sequence = torch.cat([sequence, new[row : row + 1, step : step + 1]], dim=1)


def test_generate_at_full_detail_equals_qwen2_vls_own_generate() -> None:
    model = tiny_qwen2_vl()
    vlm = MixedResolutionVLM.from_qwen2_vl(model, budget=32)
    x = _images(1, seed=5)
    ids = torch.tensor([_prompt(32, (1, 2), (5,))])
    inputs = _processor()(
        images=[x[0].numpy()],
        do_resize=False,
        do_rescale=False,
        return_tensors="pt",
        input_data_format="channels_first",
    )
    kwargs = {"pixel_values": inputs["pixel_values"], "image_grid_thw": inputs["image_grid_thw"]}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        kwargs["mm_token_type_ids"] = (ids == IMAGE).int()
    theirs = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=5,
        do_sample=False,
        eos_token_id=None,
        **kwargs,
    )[:, ids.shape[1] :]
    ours = vlm.generate(x, ids, max_new_tokens=5, eos_token_id=-1)
    assert torch.equal(ours, theirs)


def test_save_pretrained_then_from_pretrained_gives_the_same_logits(tmp_path: Path) -> None:
    model = tiny_qwen2_vl(version="2.5")
    settings = {"max_patch": 56, "scorer": "entropy", "order": "morton", "budget_mode": "at_most"}
    vlm = MixedResolutionVLM.from_qwen2_vl(
        model, budget=20, quantizer=VectorQuantizer(64, 8), **settings
    )
    vlm.eval()  # the quantizer's codebook: EMA updates only in training
    x, ids = _images(2, 140, 196, seed=8), torch.tensor([_prompt(1)] * 2)
    vlm(x, ids)
    vlm.save_pretrained(tmp_path)
    again = Qwen2VLMixedResolutionVLM.from_pretrained(
        tmp_path, model, quantizer=VectorQuantizer(64, 8)
    ).eval()
    assert isinstance(again, Qwen2VLMixedResolutionVLM)
    assert {name: getattr(again, name) for name in settings} == settings
    assert again.budget == 20
    out = again(x, ids)
    assert out.visual_counts.tolist() == [20, 20]  # at most 20: 17 roots + 3 * 1
    assert torch.equal(out.logits, vlm(x, ids).logits)
    fresh = MixedResolutionVLM.from_qwen2_vl(
        model, budget=20, quantizer=VectorQuantizer(64, 8), **settings
    ).eval()
    assert not torch.allclose(fresh(x, ids).logits, out.logits)  # the codebook was loaded
    with pytest.raises(TypeError, match="leave language_model out"):
        Qwen2VLMixedResolutionVLM.from_pretrained(
            tmp_path, model, torch.nn.Linear(1, 1), quantizer=VectorQuantizer(64, 8)
        )


def test_allocator_min_patch_must_be_a_merge_group() -> None:
    wrong = FrequencyAwareAllocator(budget=8, min_patch=14, max_patch=56)
    with pytest.raises(ValueError, match=r"min_patch must be patch_size \* spatial_merge_size"):
        MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), allocator=wrong)
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), max_patch=56)
    x = _images(1, 56, 56)
    with pytest.raises(ValueError, match="min_patch must equal the vision model's patch size 28"):
        vlm(x, torch.tensor([_prompt(1)]), allocation=allocate(x, 4, min_patch=14, max_patch=28))


def test_images_smaller_than_a_merge_group_and_off_grid_sizes() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=1, max_patch=28)
    ids = torch.tensor([_prompt(1)])
    with pytest.raises(ValueError, match="smaller than one merge group"):
        vlm(torch.rand(1, 3, 20, 56), ids)
    with pytest.raises(ValueError, match="not a whole number of 28-px merge groups"):
        vlm(torch.rand(1, 3, 42, 56), ids)
    coarse = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=1, max_patch=112)
    with pytest.raises(ValueError, match="each side must be >= max_patch=112"):
        coarse(torch.rand(1, 3, 84, 140), ids)


def test_videos_are_refused() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=2)
    with pytest.raises(ValueError, match="still images only"):
        vlm(torch.rand(1, 2, 3, 112, 224), torch.tensor([_prompt(1)]))
    with pytest.raises(ValueError, match="video token"):
        vlm(_images(1), torch.tensor([[1, START, VIDEO, END, IMAGE, 5]]))


def test_budget_above_full_detail() -> None:
    vlm = MixedResolutionVLM.from_qwen2_vl(tiny_qwen2_vl(), budget=35)
    with pytest.raises(ValueError, match="exceeds full detail"):
        vlm(_images(1), torch.tensor([_prompt(1)]))


def test_sampling_says_what_to_use_instead() -> None:
    vlm = Qwen2VLMixedResolutionVLM(tiny_qwen2_vl(), budget=2)
    with pytest.raises(ValueError, match="greedily only"):
        vlm.generate(_images(1), torch.tensor([_prompt(1)]), do_sample=True)
