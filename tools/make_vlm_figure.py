"""Regenerate docs/guide/img/vlm_tokens.png: the tokens one image sends to the LM.

A ``MixedResolutionVLM`` with LLaVA-1.5's geometry (a 336 x 336 image, 14 px patches: 576
tokens at full detail) runs on the embedded astronaut photo at three budgets; each panel draws
the allocation of that forward (``out.allocation``) over the image, leaves coloured by pyramid
level. The vision and language models are tiny random ones: the allocation does not depend on
their weights, only on the image and the patch size.

Usage: ``python tools/make_vlm_figure.py [output.png]`` (needs matplotlib, the ``dev`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import Patch
from torch.nn import functional

from pyrtok.data import load_sample
from pyrtok.viz import LEVEL_COLOURS, allocation_overlay
from pyrtok.vlm import MixedResolutionVLM
from pyrtok.vlm.testing import tiny_clip, tiny_llama

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "guide" / "img" / "vlm_tokens.png"
SIZE, PATCH = 336, 14  # LLaVA-1.5: CLIP ViT-L/14 at 336 px
BUDGETS = (72, 144, 288)  # 36 cells of 56 px + 3 per split; full detail is 576


def main(output: Path = OUTPUT) -> Path:
    image = load_sample("astronaut")[None]
    image = functional.interpolate(
        image, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False
    ).clamp(0, 1)
    vlm = MixedResolutionVLM(
        tiny_clip(image_size=SIZE, patch_size=PATCH), tiny_llama(), image_token_id=63
    ).eval()
    prompt = torch.tensor([[1, 63, 5, 6]])
    full = (SIZE // PATCH) ** 2
    fig, axes = plt.subplots(1, len(BUDGETS), figsize=(4.2 * len(BUDGETS), 5.2), dpi=100)
    for ax, budget in zip(axes, BUDGETS, strict=True):
        with torch.no_grad():
            out = vlm(image, prompt, budget=budget)
        counts = out.allocation.level_counts()[0].tolist()
        sent = int(out.visual_counts[0])
        ax.imshow(allocation_overlay(image[0], out.allocation, tint=0.3).permute(1, 2, 0))
        ax.set_title(
            f"{sent} tokens into the LM ({sent / full:.0%} of {full})\n"
            + " + ".join(f"{n} x {PATCH << k} px" for k, n in enumerate(counts)),
            fontsize=11,
        )
        ax.set_axis_off()
    fig.legend(
        handles=[
            Patch(color=rgb, label=f"level {k}: {PATCH << k} px leaf = one {PATCH} px patch")
            for k, (_, rgb) in enumerate(LEVEL_COLOURS[:3])
        ],
        loc="lower center",
        ncol=3,
        frameon=False,
        fontsize=10,
    )
    fig.suptitle(
        f"MixedResolutionVLM on a {SIZE} x {SIZE} photo, {PATCH} px patches "
        "(LLaVA-1.5 geometry): the tokens the ViT and the LM see",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.94))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output)
    plt.close(fig)
    return output


if __name__ == "__main__":
    print(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUTPUT))
