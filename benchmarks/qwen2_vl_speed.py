"""Qwen2-VL native: what the allocation saves end to end against Qwen2-VL's own forward.

Question: on a small Qwen2-VL (random weights) at 448 x 448 (256 LM visual tokens, 1024
patches through the tower at full detail), how long do the encoder (allocation on the one
pyramid, leaf tokens, the tower on exactly those leaves, merger) and the whole forward (the LM
prefill included) take per image at 25 % / 50 % / 100 % of full detail, against
``Qwen2VLForConditionalGeneration``'s own forward on the image patched by its own layout (tower
alone and whole forward)? Minima over ``--repeats`` interleaved runs after one warm-up round,
batch 1, one torch thread by default. The 50 % budget is the largest feasible one at or below
128 (``budget_mode="at_most"``). At full detail the logits equal the model's own (the table
prints the largest difference).

Run: ``python benchmarks/qwen2_vl_speed.py`` (prints a markdown table and the load average).
"""

from __future__ import annotations

import argparse
import inspect
import os
import time
from collections.abc import Callable
from typing import Any

import torch
from einops import rearrange
from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

from pyrtok.vlm import MixedResolutionVLM
from pyrtok.vlm.pixels import CLIP_MEAN, CLIP_STD

IMAGE, START, END = 900, 901, 902
SIZE = 448


def build() -> Any:
    torch.manual_seed(0)
    text = {
        "vocab_size": 1000,
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        "max_position_embeddings": 4096,
        "rope_scaling": {"type": "mrope", "mrope_section": [4, 6, 6]},
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    vision = {"depth": 4, "embed_dim": 128, "hidden_size": 256, "num_heads": 4, "mlp_ratio": 4}
    config = Qwen2VLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=IMAGE,
        vision_start_token_id=START,
        vision_end_token_id=END,
        attn_implementation="sdpa",
    )
    return Qwen2VLForConditionalGeneration(config).eval()


def qwen_patches(x: torch.Tensor) -> torch.Tensor:
    """Qwen2-VL's processor layout of normalised ``(1, 3, H, W)``: merge groups row-major,
    2 x 2 sub-patches inside, each ``(C, T=2, 14, 14)``."""
    mean = torch.tensor(CLIP_MEAN)[:, None, None]
    std = torch.tensor(CLIP_STD)[:, None, None]
    patches = rearrange(
        (x[0] - mean) / std, "c (gh mh p) (gw mw q) -> (gh gw mh mw) c p q", mh=2, mw=2, p=14, q=14
    )
    return patches[:, :, None].expand(-1, -1, 2, -1, -1).flatten(1)


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (shared CPUs: 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    model = build()
    grid = SIZE // 28
    full = grid * grid
    x = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    text = [1, 2, 3, START]
    question = [END, *range(10, 42)]
    ids = torch.tensor([[*text, IMAGE, *question]])
    expanded = torch.tensor([[*text, *([IMAGE] * full), *question]])
    thw = torch.tensor([[1, 2 * grid, 2 * grid]])
    pixels = qwen_patches(x)
    own: dict[str, Any] = {"image_grid_thw": thw}
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:  # transformers 5
        own["mm_token_type_ids"] = (expanded == IMAGE).int()
    visual = getattr(model.model, "visual", None) or model.visual
    vlm = MixedResolutionVLM.from_qwen2_vl(model, budget_mode="at_most")
    budgets = {"25 %": full // 4, "50 %": full // 2, "100 % (full detail)": full}
    runs: dict[str, Callable[[], Any]] = {
        "qwen tower": lambda: visual(pixels, grid_thw=thw),
        "qwen forward": lambda: model(input_ids=expanded, pixel_values=pixels, **own),
    }
    for name, budget in budgets.items():
        runs[f"{name} encoder"] = lambda b=budget: vlm.encode_images(x, budget=b)
        runs[f"{name} forward"] = lambda b=budget: vlm(x, ids, budget=b)
    best = {name: float("inf") for name in runs}
    for round_ in range(args.repeats + 1):
        for name, fn in runs.items():
            ms = timed(fn)
            if round_:  # round 0 warms up
                best[name] = min(best[name], ms)
    theirs = model(input_ids=expanded, pixel_values=pixels, **own).logits
    ours = vlm(x, ids, budget=full).logits
    diff = float((ours - theirs).abs().max())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {SIZE}x{SIZE}")
    print("| budget | LM visual tokens | encoder ms | forward ms | forward vs Qwen2-VL's own |")
    print("|---|---:|---:|---:|---:|")
    for name, budget in budgets.items():
        count = int(vlm(x, ids, budget=budget).visual_counts[0])
        forward = best[f"{name} forward"]
        ratio = best["qwen forward"] / forward
        print(
            f"| {name} | {count} | {best[f'{name} encoder']:.1f} | {forward:.1f} | "
            f"{ratio:.2f}x faster |"
        )
    print(
        f"| Qwen2-VL's own forward | {full} | {best['qwen tower']:.1f} (tower) | "
        f"{best['qwen forward']:.1f} | 1.00x |"
    )
    print(f"\nfull detail: max abs logit difference to Qwen2-VL's own forward {diff:.1e}")
    print(f"load average (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
