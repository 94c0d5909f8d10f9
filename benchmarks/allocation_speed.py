"""Allocation speed for a batch of 512x512 images: scorer, selection, and the whole call.

The batch is the embedded sample photos (``pyrtok.data``), centre-cropped and resized to
512x512 and repeated to ``--batch`` images. For every strategy/scorer pair it times the whole
:func:`~pyrtok.allocation.allocate` call, the scorer alone, and the selection alone (strategy +
building the padded leaf tensors from given scores). The anchor is the obvious implementation of
the greedy selection: Quadformer's priority-queue loop in Python, one image at a time, on the
same scores (it returns split sets only, so it does less work than the selection it is compared
with). Times are the best of ``--repeat`` runs; the scorer column is the scorer timed on its own
(for threshold, plus the seed's cell weights).

    python benchmarks/allocation_speed.py                 # 256 images, budget 256
    python benchmarks/allocation_speed.py --batch 64 --budget 64 --threads 1
"""

from __future__ import annotations

import argparse
import heapq
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from pyrtok.allocation import QuadtreeGeometry, allocate
from pyrtok.allocation.allocation import allocation_from_splits
from pyrtok.allocation.optimal import optimal_splits
from pyrtok.allocation.scorers import SCORERS, threshold_weights
from pyrtok.allocation.strategies import greedy_splits, proportional_splits, uniform_splits
from pyrtok.data import list_samples, load_sample

PAIRS = [
    ("greedy", "laplacian"),
    ("greedy", "entropy"),
    ("greedy", "blur"),
    ("optimal", "laplacian"),
    ("proportional", "laplacian"),
    ("threshold", "laplacian"),
    ("uniform", "laplacian"),
]


def batch_of(size: int, count: int) -> Tensor:
    photos = []
    for name in list_samples():
        x = load_sample(name)
        side = min(x.shape[1:])
        top, left = (x.shape[1] - side) // 2, (x.shape[2] - side) // 2
        square = x[None, :, top : top + side, left : left + side]
        photos.append(F.interpolate(square, size=(size, size), mode="bilinear", antialias=True))
    stacked = torch.cat(photos).clamp(0, 1)
    return stacked.repeat(-(-count // len(photos)), 1, 1, 1)[:count].contiguous()


def best_time(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def heap_greedy(scores: list[Tensor], geometry: QuadtreeGeometry, splits: int) -> list[set]:
    """Quadformer's loop, per image: pop the best leaf, split it, push its children."""
    maps = [s.tolist() for s in scores]
    result = []
    for b in range(scores[0].shape[0]):
        heap = [
            (-maps[0][b][r][c], 0, r, c)
            for r in range(geometry.cell_rows)
            for c in range(geometry.cell_cols)
        ]
        heapq.heapify(heap)
        chosen = set()
        while len(chosen) < splits:
            _, d, r, c = heapq.heappop(heap)
            chosen.add((d, r, c))
            if d + 1 < geometry.depth:
                for i in (0, 1):
                    for j in (0, 1):
                        kr, kc = 2 * r + i, 2 * c + j
                        heapq.heappush(heap, (-maps[d + 1][b][kr][kc], d + 1, kr, kc))
        result.append(chosen)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--budget", type=int, default=256)
    parser.add_argument("--min-patch", type=int, default=16)
    parser.add_argument("--max-patch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x = batch_of(args.size, args.batch)
    g = QuadtreeGeometry.create(args.size, args.size, args.min_patch, args.max_patch)
    splits = g.splits_for(args.budget)
    print(
        f"{args.batch} x 3 x {args.size} x {args.size} float32, budget {args.budget} "
        f"(min_patch {args.min_patch}, max_patch {args.max_patch}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, best of {args.repeat}\n"
    )

    scores = {name: SCORERS[name](x, args.min_patch, args.max_patch) for name in SCORERS}
    weights = threshold_weights(x, args.min_patch, args.max_patch)
    device = x.device

    def select(strategy: str, scorer: str) -> Callable[[], object]:
        s = scores[scorer]

        def run() -> object:
            if strategy == "greedy":
                maps = greedy_splits(s, g, splits)
            elif strategy == "optimal":
                maps = optimal_splits(s, g, splits)
            elif strategy == "proportional":
                maps = proportional_splits(s, g, splits)
            elif strategy == "threshold":
                maps = proportional_splits(s, g, splits, weights)
            else:
                maps = uniform_splits(x.shape[0], g, g.uniform_depth(args.budget), device)
            return allocation_from_splits(maps, g, x.shape[0], device)

        return run

    scorer_seconds = {
        name: best_time(lambda n=name: SCORERS[n](x, args.min_patch, args.max_patch), args.repeat)
        for name in SCORERS
    }
    scorer_seconds["threshold"] = best_time(
        lambda: threshold_weights(x, args.min_patch, args.max_patch), args.repeat
    )
    rows = []
    for strategy, scorer in PAIRS:
        if strategy == "uniform" and args.budget not in g.uniform_budgets():
            continue
        whole = best_time(
            lambda s=strategy, c=scorer: allocate(
                x, args.budget, args.min_patch, args.max_patch, s, c
            ),
            args.repeat,
        )
        scoring = 0.0 if strategy == "uniform" else scorer_seconds[scorer]
        if strategy == "threshold":
            scoring += scorer_seconds["threshold"]
        selection = best_time(select(strategy, scorer), args.repeat)
        rows.append((f"{strategy}+{scorer}", whole, scoring, selection))

    anchor = best_time(lambda: heap_greedy(scores["laplacian"], g, splits), 1)
    print("| strategy+scorer | allocate() (s) | scorer (s) | selection (s) | per image (ms) |")
    print("|---|---|---|---|---|")
    for name, whole, scoring, selection in rows:
        print(
            f"| {name} | {whole:.3f} | {scoring:.3f} | {selection:.4f} | "
            f"{1000 * whole / args.batch:.2f} |"
        )
    greedy_selection = next(r[3] for r in rows if r[0] == "greedy+laplacian")
    print(
        f"\nAnchor: Python priority-queue greedy on the same laplacian scores, one image at a "
        f"time: {anchor:.3f} s for {args.batch} images; the batched greedy selection takes "
        f"{greedy_selection:.4f} s ({anchor / greedy_selection:.0f}x faster)."
    )


if __name__ == "__main__":
    main()
