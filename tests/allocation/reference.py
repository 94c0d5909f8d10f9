"""Slow, obviously-correct references for the allocation tests: one image, Python loops."""

from __future__ import annotations

import functools
import heapq
import itertools
import math

import numpy as np
import torch
from torch import Tensor

from pyrtok import laplacian_pyramid, pyr_up
from pyrtok.allocation import QuadtreeGeometry

Node = tuple[int, int, int]  # (depth, row, col) on the depth's node grid


def kids(node: Node) -> list[Node]:
    d, r, c = node
    return [(d + 1, 2 * r + i, 2 * c + j) for i in (0, 1) for j in (0, 1)]


def roots(geometry: QuadtreeGeometry) -> list[Node]:
    return [(0, r, c) for r in range(geometry.cell_rows) for c in range(geometry.cell_cols)]


def heap_greedy(scores: list[Tensor], geometry: QuadtreeGeometry, splits: int) -> set[Node]:
    """Quadformer's loop for image 0: pop the best splittable leaf, push its children."""
    heap = [(-float(scores[0][0, r, c]), 0, r, c) for _, r, c in roots(geometry)]
    heapq.heapify(heap)
    chosen: set[Node] = set()
    while len(chosen) < splits:
        _, d, r, c = heapq.heappop(heap)
        chosen.add((d, r, c))
        if d + 1 < geometry.depth:
            for kd, kr, kc in kids((d, r, c)):
                heapq.heappush(heap, (-float(scores[kd][0, kr, kc]), kd, kr, kc))
    return chosen


def _subtree_options(node: Node, depth: int) -> list[frozenset[Node]]:
    """Every valid split set inside ``node``'s subtree (the empty set included)."""
    if node[0] == depth:
        return [frozenset()]
    below = [_subtree_options(kid, depth) for kid in kids(node)]
    options = [frozenset()]
    for combo in itertools.product(*below):
        options.append(frozenset({node}).union(*combo))
    return options


@functools.cache
def all_trees(geometry: QuadtreeGeometry) -> list[frozenset[Node]]:
    """Every valid split set of the image (product over cells)."""
    per_cell = [_subtree_options(root, geometry.depth) for root in roots(geometry)]
    return [frozenset().union(*combo) for combo in itertools.product(*per_cell)]


def total(scores: list[Tensor], chosen: set[Node] | frozenset[Node]) -> float:
    return math.fsum(float(scores[d][0, r, c]) for d, r, c in chosen)


def best_total(scores: list[Tensor], geometry: QuadtreeGeometry, splits: int) -> float:
    return max(total(scores, tree) for tree in all_trees(geometry) if len(tree) == splits)


def as_set(maps: list[Tensor], image: int = 0) -> set[Node]:
    return {(d, int(r), int(c)) for d, m in enumerate(maps) for r, c in m[image].nonzero().tolist()}


def laplacian_node_scores(image: Tensor, min_patch: int, max_patch: int) -> list[Tensor]:
    """``4**j * E_j`` per node, summing squared band coefficients pixel by pixel (one image
    ``(C, H, W)`` whose sides are multiples of ``max_patch``; every coefficient of level ``j``
    lies in one node because node sides are multiples of ``2**j``)."""
    depth = (max_patch // min_patch).bit_length() - 1
    bands = laplacian_pyramid(image.double(), levels=depth + 1)
    scores = []
    for d in range(depth):
        j = depth - d - 1
        side = (max_patch >> d) >> j  # node side in level-j coefficients
        energy = bands[j].square().sum(0)
        rows, cols = energy.shape[0] // side, energy.shape[1] // side
        out = torch.zeros(rows, cols, dtype=torch.float64)
        for r in range(rows):
            for c in range(cols):
                out[r, c] = energy[r * side : (r + 1) * side, c * side : (c + 1) * side].sum()
        scores.append(out * 4**j)
    return scores


def entropy_of(values: np.ndarray, bins: int) -> float:
    index = np.clip(np.floor(values * bins), 0, bins - 1).astype(int)
    counts = np.bincount(index.ravel(), minlength=bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def decode_patch(patch: Tensor, level: int) -> Tensor:
    for _ in range(level):
        patch = pyr_up(patch)
    return patch
