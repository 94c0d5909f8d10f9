"""The sweep harness: equivalent tokens by hand, determinism, files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pyrtok.eval import SweepModel, as_sample, sweep, write
from pyrtok.vlm.testing import tiny_llava

PROMPT = torch.tensor([1, 63, 5, 6])


def _data(count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.rand(3, 32, 32, generator=g), PROMPT, int(i % 3) + 7) for i in range(count)]


def test_equivalent_tokens_equal_a_hand_count_on_a_two_layer_lm() -> None:
    result = sweep(
        SweepModel(tiny_llava()),
        _data(2),
        ["fastv", "divprune", "pyramid_drop"],
        [10],
        progress=False,
    )
    rows = {r["method"]: r for r in result.rows}
    # 16 ViT tokens; FastV K=1 keeps 4 from layer 1: (16 + 4) / 2 = 10
    assert rows["fastv"]["visual_tokens"] == 16
    assert rows["fastv"]["equivalent_tokens"] == 10
    assert rows["divprune"]["equivalent_tokens"] == rows["divprune"]["visual_tokens"] == 10
    # PyramidDrop on 2 layers: one stage at layer 1 (2 // 4 = 0 is no layer) -> also (16 + 4) / 2
    assert rows["pyramid_drop"]["equivalent_tokens"] == 10


def test_two_runs_with_one_seed_are_identical() -> None:
    methods = ["random", "cls_attention", "visionzip", "fastv", "pyrtok_laplacian"]

    def run() -> list[dict]:
        result = sweep(
            SweepModel(tiny_llava()),
            _data(),
            methods,
            [10, 13],
            batch_size=3,
            seed=4,
            progress=False,
        )
        timeless = ("prefill_ms", "decode_ms_per_token")
        return [{k: v for k, v in s.items() if k not in timeless} for s in result.samples]

    first = run()
    assert first == run()
    assert {s["method"] for s in first} == set(methods)


def test_flops_fall_with_the_budget_and_files_are_written(tmp_path: Path) -> None:
    result = sweep(
        SweepModel(tiny_llava()),
        _data(2),
        ["full", "downsample", "pyrtok_entropy"],
        [4, 16],
        progress=False,
    )
    rows = {(r["method"], r["budget"]): r for r in result.rows}
    assert rows[("downsample", 4)]["lm_prefill_gflops"] < rows[("full", 4)]["lm_prefill_gflops"]
    # pyrtok's encoder runs on the allocated tokens only; the baselines encode the whole grid
    assert rows[("pyrtok_entropy", 4)]["encoder_gflops"] < rows[("downsample", 4)]["encoder_gflops"]
    assert len(result.paired("downsample", 16)) == 2
    write(result, tmp_path)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["samples"]) == 2 * 5
    assert "| downsample | 4 |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "accuracy_vs_tokens.png").stat().st_size > 0


def test_out_of_reach_budgets_are_skipped_with_the_reason() -> None:
    result = sweep(
        SweepModel(tiny_llava()),
        _data(1),
        ["fastv", "random", "downsample"],
        [4, 10, 17],
        progress=False,
    )
    reasons = {(m, b): r for m, b, r in result.skipped}
    assert "FastV (K=1) spans 8..16" in reasons[("fastv", 4)]
    assert "asked for 17 tokens per image but the encoder gives 16" in reasons[("random", 17)]
    assert "gives one of [16, 4, 1] tokens, got 10" in reasons[("downsample", 10)]
    cells = {(r["method"], r["budget"]) for r in result.rows}
    assert ("downsample", 4) in cells
    assert ("downsample", 10) not in cells


def test_merged_and_pooled_tokens_count_as_visual_tokens() -> None:
    result = sweep(
        SweepModel(tiny_llava()), _data(2), ["visionzip", "downsample"], [4, 13], progress=False
    )
    rows = {(r["method"], r["budget"]): r for r in result.rows}
    # visionzip at 13: 11 dominant + 2 contextual; downsample at 4: 2x2 means of the 4x4 grid
    assert rows[("visionzip", 13)]["visual_tokens"] == 13
    assert rows[("visionzip", 13)]["equivalent_tokens"] == 13
    assert rows[("visionzip", 4)]["visual_tokens"] == 4
    assert rows[("downsample", 4)]["visual_tokens"] == 4
    assert (
        rows[("downsample", 4)]["lm_prefill_gflops"] == rows[("visionzip", 4)]["lm_prefill_gflops"]
    )
    assert [(m, b) for m, b, _ in result.skipped] == [("downsample", 13)]


def test_an_item_without_an_answer_is_refused() -> None:
    with pytest.raises(ValueError, match="dataset: item 1 has no answer"):
        sweep(
            SweepModel(tiny_llava()),
            [_data(1)[0], (torch.rand(3, 32, 32), PROMPT)],
            ["random"],
            [4],
            progress=False,
        )
    with pytest.raises(ValueError, match="dataset: item 0 has no answer"):
        as_sample({"image": torch.rand(3, 8, 8), "prompt": PROMPT}, 0)


def test_an_unknown_method_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"no method 'fastest'; expected names from \['full'"):
        sweep(SweepModel(tiny_llava()), _data(1), ["fastest"], [4], progress=False)
