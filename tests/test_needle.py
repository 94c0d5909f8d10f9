"""The needle-in-image experiment (benchmarks/needle): scenes, budgets, and the one command end
to end at smoke size."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("skimage")
pytest.importorskip("sklearn")

NEEDLE = Path(__file__).resolve().parents[1] / "benchmarks" / "needle"
sys.path.insert(0, str(NEEDLE.parent))  # scenes reads installed_photos
sys.path.insert(0, str(NEEDLE))

import model  # noqa: E402
import run  # noqa: E402
import scenes  # noqa: E402
import train  # noqa: E402

from pyrtok.allocation import allocate  # noqa: E402


def test_scenes_are_deterministic_and_seeded() -> None:
    a, label_a, box_a = scenes.scene("train", "plain", 0, 5)
    b, label_b, box_b = scenes.scene("train", "plain", 0, 5)
    c, _, _ = scenes.scene("train", "plain", 1, 5)
    assert (a == b).all()
    assert (label_a, box_a) == (label_b, box_b)
    assert not (a == c).all()
    assert a.shape == (256, 256, 3)
    assert 0 <= a.min() <= a.max() <= 1


def test_train_and_test_share_no_photo_and_no_digit_sample() -> None:
    assert not set(scenes.TRAIN_PHOTOS) & set(scenes.TEST_PHOTOS)
    train_digits, test_digits = scenes.digits("train"), scenes.digits("test")
    assert len(train_digits[0]) + len(test_digits[0]) == 1797
    train_rows = {row.tobytes() for row in train_digits[0]}
    assert sum(row.tobytes() in train_rows for row in test_digits[0]) < 5  # duplicates in the set


@pytest.mark.parametrize("variant", scenes.VARIANTS)
def test_the_digit_is_in_its_box_and_distractors_stay_out(variant: str) -> None:
    rng = scenes._generator("test", variant, 0, 7)
    background = scenes._crop(rng, "test")
    image = background.copy()
    _, box = scenes._paste_digit(rng, image, "test")
    assert scenes.DIGIT_SIZES[0] <= box.side <= scenes.DIGIT_SIZES[1]
    changed = (image != background).any(axis=2)
    rows, cols = changed.nonzero()
    assert box.top <= rows.min() <= rows.max() < box.top + box.side
    assert box.left <= cols.min() <= cols.max() < box.left + box.side
    if variant == "distractor":
        cluttered = image.copy()
        scenes._distract(rng, cluttered, box)
        inside = (slice(box.top, box.top + box.side), slice(box.left, box.left + box.side))
        assert (cluttered != image).any()
        assert (cluttered[inside] == image[inside]).all()


def test_uniform_allocator_is_the_regular_grid_at_grid_budgets_and_spread_between() -> None:
    images = torch.rand(2, 3, 256, 256)
    for splits, leaves in ((0, 16), (16, 64), (80, 256)):
        ours = allocate(images, 16 + 3 * splits, 16, 64, "greedy", model.uniform_scores)
        grid = allocate(images, leaves, 16, 64, "uniform")
        assert torch.equal(ours.boxes, grid.boxes)
    four = allocate(images, 16 + 3 * 4, 16, 64, "greedy", model.uniform_scores)
    split_cells = {tuple(box[:2].tolist()) for box in four.boxes[0] if box[2] == 32}
    assert {(y // 64, x // 64) for y, x in split_cells} == {(0, 0), (2, 2), (0, 2), (2, 0)}


@pytest.mark.parametrize("allocator", model.ALLOCATORS)
def test_budgets_are_met_exactly_and_scales_cut(allocator: str) -> None:
    vlm = model.build(allocator, seed=0, width=32)
    images = (torch.rand(2, 3, 256, 256) * 255).to(torch.uint8)
    for splits in (0, 5, 32):
        model.set_budget(vlm, splits)
        predicted, counts = model.predict(vlm, images)
        assert counts.tolist() == [model.visual_tokens(splits)] * 2
        assert predicted.shape == (2,)
        assert bool(((predicted >= 0) & (predicted < 10)).all())
    model.set_budget(vlm, 32, max_scale=0)
    assert model.predict(vlm, images)[1].tolist() == [16, 16]


def test_prompt_labels_supervise_only_the_answer() -> None:
    ids, targets = model.prompts(torch.tensor([3, 9]))
    assert ids[:, len(model.PROMPT)].tolist() == [3 + model.FIRST_DIGIT, 9 + model.FIRST_DIGIT]
    assert (targets != -100).sum(1).tolist() == [1, 1]


def test_token_targets_mark_the_cells_under_the_digit() -> None:
    boxes = torch.tensor([[0, 0, 32], [100, 200, 24]])
    full = train.token_targets(boxes, grid=16, size=256).reshape(2, 16, 16)
    assert full[0].nonzero().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]  # centre half 8..24
    assert full[1].nonzero().tolist() == [[6, 12], [6, 13], [7, 12], [7, 13]]  # 106..118, 206..218
    half = train.token_targets(boxes, grid=8, size=256).reshape(2, 8, 8)
    assert half[0].nonzero().tolist() == [[0, 0]]


@pytest.mark.slow
def test_the_experiment_runs_end_to_end_at_smoke_size(tmp_path: Path) -> None:
    results = run.main(
        [
            "--quick",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--checkpoints",
            str(tmp_path / "ckpt"),
        ]
    )
    assert [r["variant"] for r in results] == list(scenes.VARIANTS)
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert set(saved["runs"][0]["accuracy"]) == set(model.ALLOCATORS)
    assert (tmp_path / "out" / "accuracy_vs_tokens.png").stat().st_size > 0
    assert (tmp_path / "out" / "allocations.png").stat().st_size > 0
    table = (tmp_path / "out" / "results.md").read_text()
    assert table.count("| laplacian |") == 2
    checkpoint = next((tmp_path / "ckpt").rglob("*-laplacian.pt"))
    assert "scale_embedding" in torch.load(checkpoint, weights_only=True)
