"""benchmarks/train_needle_llava.py and benchmarks/budget_sweep.py: the token targets, the
prompt both use, a 2-step training run at smoke size, and the sweep reading the trained
checkpoint exactly as training's forward does."""

from __future__ import annotations

import doctest
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

pytest.importorskip("skimage")
pytest.importorskip("sklearn")
pytest.importorskip("scipy")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import budget_sweep
import train_needle_llava as training
from transformers import LlavaForConditionalGeneration

from pyrtok.eval import SweepModel, sweep

SMOKE = ["--steps", "2", "--encoder-steps", "1", "--batch", "2", "--heldout", "2", "--log", "0"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("llava")
    return out, training.main([*SMOKE, "--out", str(out)])


@pytest.mark.parametrize("module", [training, budget_sweep])
def test_doctests(module: Any) -> None:
    assert doctest.testmod(module).failed == 0


def test_token_targets_mark_patches_the_box_covers_by_a_quarter() -> None:
    boxes = torch.tensor([[0, 0, 8], [0, 0, 7], [8, 8, 16], [0, 40, 48]])
    targets = training.token_targets(boxes, torch.tensor([3, 4, 5, 6]), 64).view(4, 4, 4)
    assert targets[0, 0, 0] == 3  # 64 / 256 px: a quarter
    assert (targets[0].flatten()[1:] == 10).all()
    assert (targets[1] == 10).all()  # 49 / 256 px: under a quarter
    assert (targets[2, :2, :2] == 5).all()  # 8 x 8 px in each
    assert (targets[2, 2:] == 10).all()
    assert (targets[3, :3, 2:] == 6).all()
    assert (targets[3, 3:] == 10).all()
    assert (targets[3, :, :2] == 10).all()  # column 2 holds 8 px of the box's width: 1/2


def test_training_prompt_is_the_sweep_prompt_expanded() -> None:
    ids = training.prompt_ids(2, 256)
    assert ids.shape == (2, 260)
    image = ids[0] == budget_sweep.IMAGE
    assert int(image.sum()) == 256
    collapsed = torch.unique_consecutive(ids[0]).tolist()
    assert tuple(collapsed) == budget_sweep.PROMPT


def test_training_records_and_saves_a_plain_llava(trained: tuple[Path, dict[str, Any]]) -> None:
    out, record = trained
    assert (record["steps"], record["samples"]) == (2, 4)
    assert json.loads((out / "train.json").read_text())["steps"] == 2
    assert record["heldout_train_split"]["scenes"] == 2
    assert record["heldout_train_split"]["small"] is None  # every scene large by default
    model = LlavaForConditionalGeneration.from_pretrained(out / "model")
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert model.config.text_config.num_hidden_layers == 4


def test_training_is_deterministic(tmp_path: Path, trained: tuple[Path, dict[str, Any]]) -> None:
    training.main([*SMOKE, "--out", str(tmp_path)])
    first = LlavaForConditionalGeneration.from_pretrained(trained[0] / "model").state_dict()
    again = LlavaForConditionalGeneration.from_pretrained(tmp_path / "model").state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_sweep_reads_the_checkpoint_as_training_does(
    trained: tuple[Path, dict[str, Any]],
) -> None:
    model = LlavaForConditionalGeneration.from_pretrained(trained[0] / "model").eval()
    items = budget_sweep.needle_items(3, "plain", seed=0)
    images = torch.stack([(image * 255).round().to(torch.uint8) for image, _, _ in items])
    with torch.no_grad():
        predicted = training.Trainer.build(model).logits(images).argmax(-1)
    data = [(image, prompt, int(p)) for (image, prompt, _), p in zip(items, predicted, strict=True)]
    result = sweep(SweepModel(model), data, ["full"], [64], batch_size=3, progress=False)
    assert result.rows[0]["accuracy"] == 1.0


def test_sweep_runs_on_the_checkpoint(tmp_path: Path, trained: tuple[Path, dict[str, Any]]) -> None:
    args = ["--llava", str(trained[0] / "model"), "--samples", "2", "--batch", "2"]
    budget_sweep.main(
        [*args, "--methods", "full", "fastv", "--budgets", "128", "--out", str(tmp_path)]
    )
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["config"]["model"] == str(trained[0] / "model")
    assert [r["method"] for r in saved["rows"]] == ["full", "fastv"]
    assert "| fastv | 128 |" in (tmp_path / "paired.md").read_text()


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--steps", "2", "--encoder-steps", "2"], "encoder steps < steps"),
        (["--batch", "0"], "batch"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, flags: list[str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        training.main([*flags, "--out", str(tmp_path)])


def test_init_continues_from_a_run(tmp_path: Path, trained: tuple[Path, dict[str, Any]]) -> None:
    record = training.main(
        [*SMOKE, "--seed", "1", "--init", str(trained[0]), "--out", str(tmp_path)]
    )
    assert record["settings"]["init"] == str(trained[0])
    start = LlavaForConditionalGeneration.from_pretrained(trained[0] / "model").state_dict()
    fresh = training.needle_llava(1).state_dict()
    after = LlavaForConditionalGeneration.from_pretrained(tmp_path / "model").state_dict()
    name = next(k for k in start if k.endswith("layers.0.mlp.up_proj.weight"))
    step = (after[name] - start[name]).abs().max()
    assert 0 < step < (after[name] - fresh[name]).abs().max()  # moved a little from the start
