"""The ``laplacian`` scorer's variants on the two things a scorer is for: reconstruction PSNR
and finding a small object (the needle hit rate), side by side.

1. **PSNR** (peak 1.0) of ``detokenize(tokenize(allocate(x)))`` on the 16 evaluation photos of
   ``allocation_quality.py``: (a) centre-cropped and resized to 512 x 512, exact budgets; (b) at
   their native aspect ratio (long side 512, the other side scaled, not rounded), given as a
   list with ``budget_mode="at_most"``, reporting the mean tokens actually used (an image
   whose coarsest allocation exceeds the budget gets its coarsest, and is counted).
2. **Hit rate** on the needle test scenes of ``benchmarks/needle`` (256 x 256, digit 16-32 px,
   plain and distractor, 500 each): the share of scenes where a full-resolution leaf
   (``min_patch`` = 16 px) covers the digit's centre pixel, and where a leaf of at most 32 px
   does (half resolution). Model-free: no training, only the allocation.

Every row is the ``greedy`` strategy unless its label says otherwise (the ``optimal`` rows are
in the PSNR tables only). ``min_patch=16``;
``max_patch=128`` for the photos, 64 for the scenes (the needle model's geometry).

    python benchmarks/scorer_variants.py            # both tables, about a minute on 2 cores
    python benchmarks/scorer_variants.py --quick    # 4 photos, 100 scenes (a smoke run)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from pyrtok.allocation import (
    LaplacianScorer,
    QuadtreeGeometry,
    Scorer,
    allocate,
    detokenize,
    tokenize,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
from allocation_quality import load_images, psnr
from needle.scenes import scenes

VARIANTS: dict[str, tuple[str, str | Scorer]] = {
    "uniform": ("uniform", "laplacian"),
    "laplacian (default: recovered band)": ("greedy", "laplacian"),
    "laplacian bands=all": ("greedy", LaplacianScorer(bands="all")),
    "laplacian bands=(1,) finest": ("greedy", LaplacianScorer(bands=(1.0,))),
    "laplacian bands=(0, 1) mid": ("greedy", LaplacianScorer(bands=(0.0, 1.0))),
    "laplacian surround=1": ("greedy", LaplacianScorer(surround=1.0)),
    "laplacian surround=2": ("greedy", LaplacianScorer(surround=2.0)),
    "laplacian bands=(0, 1) surround=1": (
        "greedy",
        LaplacianScorer(bands=(0.0, 1.0), surround=1.0),
    ),
    "optimal laplacian": ("optimal", "laplacian"),
    "optimal laplacian log": ("optimal", LaplacianScorer(log=True)),
    "entropy": ("greedy", "entropy"),
    "blur": ("greedy", "blur"),
}
PHOTO_BUDGETS = (64, 112, 160, 256)
SCENE_BUDGETS = (16, 31, 49, 79, 145)  # the needle experiment's 16 + 3 s: 16, 32, 48, 80, 144
MIN_PATCH = 16


def table(header: Sequence[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def square_psnr(x: Tensor, budgets: Sequence[int]) -> dict[tuple[str, int], float]:
    g = QuadtreeGeometry.create(x.shape[-2], x.shape[-1], MIN_PATCH, 128)
    out = {}
    for label, (strategy, scorer) in VARIANTS.items():
        for budget in budgets:
            if strategy == "uniform" and budget not in g.uniform_budgets():
                continue
            a = allocate(x, budget, MIN_PATCH, 128, strategy, scorer)
            recon = detokenize(tokenize(x, a).tokens, a).clamp(0, 1)
            out[label, budget] = float(psnr(recon, x).mean())
    return out


def native_psnr(
    xs: list[Tensor], budgets: Sequence[int]
) -> dict[tuple[str, int], tuple[float, float]]:
    """Mean PSNR and mean tokens used per (variant, budget), ``at_most`` on a list of images."""
    floors = [QuadtreeGeometry.create(*x.shape[-2:], MIN_PATCH, 128).min_budget for x in xs]
    out = {}
    for label, (strategy, scorer) in VARIANTS.items():
        if strategy == "uniform":
            continue
        for budget in budgets:
            each = allocate(xs, [max(budget, f) for f in floors], MIN_PATCH, 128, strategy,
                            scorer, budget_mode="at_most")  # fmt: skip
            recon = detokenize(tokenize(xs, each).tokens, each)
            values = [
                float(psnr(r.clamp(0, 1)[None], x[None])) for r, x in zip(recon, xs, strict=True)
            ]
            tokens = [int(a.lengths) for a in each]
            out[label, budget] = (sum(values) / len(values), sum(tokens) / len(tokens))
    return out


def covers(allocation, centres: Tensor, largest: int) -> Tensor:  # type: ignore[no-untyped-def]
    """``(B,)`` bool: a leaf of side ``<= largest`` contains each image's ``centres`` pixel."""
    boxes = allocation.boxes
    y, x = centres[:, 0, None], centres[:, 1, None]
    inside = (boxes[..., 0] <= y) & (y < boxes[..., 0] + boxes[..., 2])
    inside &= (boxes[..., 1] <= x) & (x < boxes[..., 1] + boxes[..., 2])
    return (inside & allocation.mask & (boxes[..., 2] <= largest)).any(dim=1)


def hit_rates(count: int) -> dict[tuple[str, str, int], tuple[float, float]]:
    """Full- and half-resolution hit rates (%) per (variant, scene variant, budget)."""
    out = {}
    for variant in ("plain", "distractor"):
        pixels, _, boxes = scenes("test", variant, seed=0, count=count)
        x = pixels.float() / 255
        centres = boxes[:, :2] + boxes[:, 2:] // 2
        for label, (strategy, scorer) in VARIANTS.items():
            if strategy == "optimal":  # 10x the time of greedy on 500 scenes; PSNR rows only
                continue
            for budget in SCENE_BUDGETS:
                if strategy == "uniform" and budget not in (16, 64, 256):
                    continue
                a = allocate(x, budget, MIN_PATCH, 64, strategy, scorer)
                full = 100 * float(covers(a, centres, MIN_PATCH).float().mean())
                half = 100 * float(covers(a, centres, 2 * MIN_PATCH).float().mean())
                out[label, variant, budget] = (full, half)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 photos and 100 scenes")
    args = parser.parse_args()
    images = load_images()
    names = list(images)[:4] if args.quick else list(images)
    torch.manual_seed(0)
    labels = list(VARIANTS)

    square = square_psnr(torch.stack([images[n] for n in names]), PHOTO_BUDGETS)
    print(f"### Mean PSNR (dB), {len(names)} photos at 512 x 512, exact budgets\n")
    rows = [[label] + [f"{square[label, b]:.2f}" if (label, b) in square else "-"
                       for b in PHOTO_BUDGETS] for label in labels]  # fmt: skip
    print(table(["scorer", *map(str, PHOTO_BUDGETS)], rows))

    natives = load_images(native=True)
    raw = [natives[n] for n in names]
    shapes = sorted({tuple(x.shape[-2:]) for x in raw})
    floors = [QuadtreeGeometry.create(*x.shape[-2:], MIN_PATCH, 128).min_budget for x in raw]
    nat = native_psnr(raw, PHOTO_BUDGETS)
    print(f"\n### Mean PSNR (dB) / mean tokens used, {len(names)} photos at native aspect "
          f"(long side 512; {len(shapes)} sizes), at_most budgets\n")  # fmt: skip
    rows = [[label] + [f"{nat[label, b][0]:.2f} / {nat[label, b][1]:.0f}" for b in PHOTO_BUDGETS]
            for label in labels if (label, PHOTO_BUDGETS[0]) in nat]  # fmt: skip
    print(table(["scorer", *(f"<= {b}" for b in PHOTO_BUDGETS)], rows))
    above = {b: sum(f > b for f in floors) for b in PHOTO_BUDGETS}
    print(f"\nCoarsest allocation (roots) per image: {sorted(floors)}; images whose coarsest "
          f"exceeds the budget (they get their coarsest): {above}")  # fmt: skip

    count = 100 if args.quick else 500
    hits = hit_rates(count)
    for variant in ("plain", "distractor"):
        print(f"\n### Needle hit rate (%), {variant}, {count} test scenes: full-resolution / "
              f"half-resolution leaf on the digit's centre\n")  # fmt: skip
        rows = [[label] + [f"{hits[label, variant, b][0]:.1f} / {hits[label, variant, b][1]:.1f}"
                           if (label, variant, b) in hits else "-" for b in SCENE_BUDGETS]
                for label in labels if (label, variant, SCENE_BUDGETS[0]) in hits]  # fmt: skip
        print(table(["scorer", *map(str, SCENE_BUDGETS)], rows))


if __name__ == "__main__":
    main()
